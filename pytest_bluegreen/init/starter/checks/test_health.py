"""Each color answers its health path on its own URL (``colors.<color>.api_url``).

pytest checks --env green -m quick
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.testing import ColorSession, Settings


@pytest.mark.quick
def test_health(
    http: ColorSession, color: str, health_path: str, bluegreen_settings: Settings
) -> None:
    response = http.get(health_path)
    assert response.ok, (
        f"{color} is not healthy: GET {response.url} answers HTTP {response.status_code}: "
        f"{response.text[:200]!r}"
    )
    # a service that names its color (X-Bluegreen-Color, or "color" in a JSON body) must name
    # this one: else the color's URL reaches the other color
    who = bluegreen_settings.topology.answered_by(response).color
    assert who in (None, color), f"{http.base_url} answers as {who}, not as {color}"
