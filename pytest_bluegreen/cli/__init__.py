"""The ``bluegreen`` command."""
