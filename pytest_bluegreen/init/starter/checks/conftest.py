"""Fixtures and hooks of this check suite.

pytest-bluegreen's own fixtures come with the plugin: ``color`` (a check taking it runs once
per color, ``test_health[green]``), ``environment`` (that color's settings), ``http`` (a
requests session on the color's own URL, ``colors.<color>.api_url``), ``routed_http`` (the
routed URL, whatever color is live), ``haproxy`` (the Runtime API client), ``live_color`` and
``bluegreen_settings``. Run the gate with:

    pytest checks --env green -m quick --switch --dry-run   # what would happen
    pytest checks --env green -m quick --switch             # verify green, then switch to it
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.testing import Settings


@pytest.fixture(scope="session")
def health_path(bluegreen_settings: Settings) -> str:
    """The path the checks ask each color for: ``verify_path`` in bluegreen.toml, which the
    switch also requests through the routed URL to see the new color answer."""
    return bluegreen_settings.switching.verify_path


# A veto: return a reason and the switch does not happen (exit 7, nothing changed). For example
# a change freeze:
#
# def pytest_bluegreen_before_switch(
#     config: pytest.Config, plan: object, decision: object
# ) -> str | None:
#     if Path("/etc/bluegreen/freeze").exists():
#         return "change freeze: /etc/bluegreen/freeze exists"
#     return None
