"""Skips for missing real parts, turned into failures by ``--strict-infra`` (CI)."""

from __future__ import annotations

import pytest


def require_infra(config: pytest.Config, available: bool, reason: str) -> None:
    """Skip with ``reason`` when a real part is missing, or fail under --strict-infra."""
    if available:
        return
    if config.getoption("--strict-infra"):
        pytest.fail(f"--strict-infra: {reason}", pytrace=False)
    pytest.skip(reason)
