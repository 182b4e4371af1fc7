"""Optional dependencies, imported when a feature needs them, with a one-line error naming the
extra to install when they are missing. The bare install needs only pytest, xdist and requests.

| extra    | brings                                   | for                                    |
|----------|------------------------------------------|----------------------------------------|
| docker   | docker (SDK), python-on-whales           | ``--deploy``, container checks, status |
| allure   | allure-pytest                            | Allure results                         |
| checks   | psycopg, redis, pytest-testinfra, docker | the shipped service checks (contrib)   |
| stats    | scipy, numpy                             | comparing colors (``[compare]`` rules) |
| plot     | matplotlib                               | the comparison's plot in Allure        |
| metrics  | prometheus-client                        | the gate's metrics (``[metrics]``)     |
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UsageError

__all__ = ["MissingExtra", "require"]


class MissingExtra(UsageError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise MissingExtra naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{feature} needs the '{extra}' extra: pip install 'pytest-bluegreen[{extra}]' ({exc})"
        ) from None
