"""After the switch: what users of the live color do, through the routed URL. The bake
(``pytest --switch --bake 60``) runs these every interval; the run before the switch leaves
them out.

    pytest checks --env green -m quick --switch --bake 60
"""

from __future__ import annotations

import uuid

import pytest

from pytest_bluegreen.testing import ColorSession

from .support import error_text, json_body


@pytest.mark.post
def test_the_live_api_stores_and_returns_an_item(routed_http: ColorSession) -> None:
    name = f"bake-{uuid.uuid4().hex[:12]}"
    created = routed_http.post("/api/items", json={"name": name})
    assert created.status_code in (200, 201), (
        f"the live color cannot create an item: POST /api/items {error_text(created)}"
    )
    item_id = json_body(created).get("id")
    read = routed_http.get(f"/api/items/{item_id}")
    assert read.status_code == 200, f"GET /api/items/{item_id} {error_text(read)}"
    assert json_body(read).get("name") == name, f"item {item_id} came back as {read.text[:200]}"
