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
import importlib.util
import sys
from types import ModuleType

from .errors import UsageError

__all__ = ["MissingExtra", "installed", "require"]


class MissingExtra(UsageError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise MissingExtra naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(extra, feature, str(exc)) from None


def installed(module: str, extra: str, feature: str) -> None:
    """Raise MissingExtra (as :func:`require` would) when ``module`` is not installed, without
    importing it: for a client made only when a command first needs it. A module imported
    already counts, as require() takes it: find_spec raises for one made in code (no
    ``__spec__``), and None in sys.modules is "not installed" for both."""
    if sys.modules.get(module) is not None:
        return
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        raise _missing(extra, feature, str(exc)) from None
    if not found:
        raise _missing(extra, feature, f"No module named {module!r}")


def _missing(extra: str, feature: str, why: str) -> MissingExtra:
    return MissingExtra(
        f"{feature} needs the '{extra}' extra: pip install 'pytest-bluegreen[{extra}]' ({why})"
    )
