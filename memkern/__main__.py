"""``python -m memkern``: the same command line as the ``memkern`` script, for an environment
whose scripts directory is not on ``PATH``."""

from memkern.cli.main import app

if __name__ == "__main__":
    app(prog_name="memkern")
