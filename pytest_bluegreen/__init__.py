"""pytest-bluegreen: health and smoke checks as gates for blue/green deployments behind HAProxy."""

from __future__ import annotations

from .gate import EXIT_CODES, Decision, Verdict
from .haproxy import (
    RuntimeApi,
    RuntimeApiError,
    RuntimeApiPermissionError,
    RuntimeApiUnreachable,
    ServerRef,
)
from .settings import Settings, SettingsError

__version__ = "0.1.0"

__all__ = [
    "EXIT_CODES",
    "Decision",
    "RuntimeApi",
    "RuntimeApiError",
    "RuntimeApiPermissionError",
    "RuntimeApiUnreachable",
    "ServerRef",
    "Settings",
    "SettingsError",
    "Verdict",
    "__version__",
]
