"""The --env color through HAProxy's public side, before any user reaches it.

    pytest checks --env green -m quick             # includes these

HAProxy's preview route (``haproxy/haproxy.cfg``: ``BG_PREVIEW_KEY``) sends a request that names
a color and carries the route's key to that color whatever the weights, through the same
frontend users hit (``preview_url``: the demo's is ``:443``, so TLS and its headers too). The
``preview_http`` session sends both (the key is ``PREVIEW_KEY`` in secrets.env) and refuses an
answer from the other color. These checks find what the direct port cannot show: a route,
header rule or TLS setting that breaks the new build on the public path. A deployment without
the route skips them, saying so.
"""

from __future__ import annotations

import uuid

import pytest

from pytest_bluegreen.testing import ColorSession, Settings

from .support import error_text, json_body


@pytest.mark.quick
def test_the_public_path_reaches_this_color(
    preview_http: ColorSession, http: ColorSession, color: str, bluegreen_settings: Settings
) -> None:
    response = preview_http.get("/health")
    assert response.status_code == 200, f"{color} through the public path: {error_text(response)}"
    assert json_body(response).get("status") == "ok", f"{color} /health: {response.text[:200]}"
    server = bluegreen_settings.topology.server_header
    assert response.headers.get(server), (
        f"{color}'s answer through {preview_http.base_url} has no {server}: HAProxy's routing "
        "did not handle it"
    )
    if preview_http.base_url.startswith("https://"):
        assert "Strict-Transport-Security" in response.headers, (
            f"{preview_http.base_url} answers {color} without Strict-Transport-Security"
        )
    # the same build answers on the public path as on the color's own port
    direct = json_body(http.get("/version")).get("version")
    public = json_body(preview_http.get("/version")).get("version")
    assert public == direct, f"{color}: {public} on the public path, {direct} on its own port"


@pytest.mark.quick
def test_the_api_round_trip_through_the_public_path(preview_http: ColorSession, color: str) -> None:
    name = f"preview-{uuid.uuid4().hex[:12]}"
    created = preview_http.post("/api/items", json={"name": name})
    assert created.status_code in (200, 201), f"{color} POST /api/items: {error_text(created)}"
    item_id = json_body(created).get("id")
    assert item_id is not None, f"{color} created no item: {created.text[:200]}"
    read = preview_http.get(f"/api/items/{item_id}")
    assert read.status_code == 200, f"{color} GET /api/items/{item_id}: {error_text(read)}"
    assert json_body(read).get("name") == name, f"read back {read.text!r}, created {name!r}"
