"""Hooks users implement in a ``conftest.py`` or plugin. Called with keyword arguments only.

Example, a change freeze::

    def pytest_bluegreen_before_switch(config, plan, decision):
        if freeze_active():
            return "change freeze until Monday"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .gate.decision import Decision
    from .switch.outcome import SwitchPlan, SwitchResult


@pytest.hookspec(firstresult=True)
def pytest_bluegreen_before_switch(
    config: pytest.Config, plan: SwitchPlan, decision: Decision
) -> str | None:
    """Called on the controller just before traffic moves (also before a rollback).

    Return a non-empty reason to veto: nothing is switched, the session exits 7 and the
    reason is shown. Return None to let the switch go ahead. Not called on a dry run.
    """
    return None


@pytest.hookspec
def pytest_bluegreen_after_switch(config: pytest.Config, result: SwitchResult) -> None:
    """Called after traffic moved to ``result.plan.target`` and was verified."""


@pytest.hookspec
def pytest_bluegreen_after_rollback(
    config: pytest.Config, from_color: str | None, to_color: str, reason: str
) -> None:
    """Called after traffic returned to ``to_color``: by ``--rollback``, or because the
    checks of the live color failed under ``--switch``."""


@pytest.hookspec
def pytest_bluegreen_settings_groups() -> list[type[Any]]:
    """Return settings groups (frozen dataclasses of ``settings.setting()`` fields) that a
    plugin adds; they are resolved with the core settings, from the same layers, and read
    with ``bluegreen_settings.extension(Group)``. Called once, in ``pytest_configure``."""
    return []


@pytest.hookspec
def pytest_bluegreen_switch_step(config: pytest.Config, step: str, plan: SwitchPlan) -> None:
    """Called on the controller before each step of a switch (``switch.STEPS``: promote,
    drain, verify, wait-drained, idle, confirm, save-state), e.g. to log or time them.

    An exception here before the point of no return (promote, drain, verify) fails the switch
    at that step: every server's prior state is restored (exit 8). After it (wait-drained,
    idle, confirm, save-state) the target was verified: the exception is reported and the
    switch is completed. Signals are deferred while it runs.
    """
