"""Each color through HAProxy's public side, by the preview route: the same frontend, TLS and
header rules as users, before any user reaches the color (``haproxy-preview.cfg``, which
``bluegreen init`` wrote next to bluegreen.toml, says what to add to HAProxy).

    pytest checks --env green -m quick

It skips until the route's key is set: ``PREVIEW_KEY`` in secrets.env, and the same value as
``BG_PREVIEW_KEY`` in HAProxy's environment. An answer from the other color (the route off in
HAProxy, or another key there) is an infrastructure error, never a pass.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.testing import ColorSession, Settings


@pytest.mark.quick
def test_preview_route(
    preview_http: ColorSession, color: str, health_path: str, bluegreen_settings: Settings
) -> None:
    response = preview_http.get(health_path)
    assert response.ok, (
        f"{color} does not answer through the public side: GET {response.url} (preview route) "
        f"answers HTTP {response.status_code}: {response.text[:200]!r}"
    )
    who = bluegreen_settings.topology.answered_by(response).color
    assert who in (None, color), f"{response.url} answers as {who}, not as {color}"
