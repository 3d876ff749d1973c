"""The ``keyplane`` command line."""
