"""The package's version, in a module of its own: the modules that send it (the webhooks'
User-Agent, the Allure environment) import it without importing the public face."""

from __future__ import annotations

__version__ = "0.1.0"
