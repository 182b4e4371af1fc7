"""The pre-switch checks of this service (pytest-bluegreen); started by ``bluegreen init``."""
