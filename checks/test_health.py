"""HTTP endpoint checks of one color, run before its traffic switch.

pytest checks --env green -m quick            # verify green
pytest checks --env green -m quick --switch   # verify, then switch traffic to green
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.fixtures import ColorSession
from pytest_bluegreen.haproxy import RuntimeApi


@pytest.mark.quick
def test_health(http: ColorSession, color: str) -> None:
    response = http.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["color"] == color, f"{http.base_url} answers as {body['color']}"


@pytest.mark.quick
def test_api_round_trip(http: ColorSession, color: str) -> None:
    created = http.post("/api/items", json={"name": f"smoke-{color}"})
    assert created.status_code in (200, 201), f"create: HTTP {created.status_code} {created.text}"
    item = created.json()
    read = http.get(f"/api/items/{item['id']}")
    assert read.status_code == 200, f"read back: HTTP {read.status_code} {read.text}"
    assert read.json()["name"] == f"smoke-{color}"


@pytest.mark.quick
@pytest.mark.shared
def test_haproxy_answers(haproxy: RuntimeApi) -> None:
    info = haproxy.show_info()
    assert info["Version"].startswith("2."), info["Version"]
