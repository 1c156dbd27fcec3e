"""memkern's command line: ``memkern --help``. The app lives in :mod:`memkern.cli.main`."""
