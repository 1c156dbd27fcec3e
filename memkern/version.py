"""The version of memkern (one place: the package, the CLI, the servers and cube files read it)."""

__version__ = "0.1.0"
