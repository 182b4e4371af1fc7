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
def test_api_accepts_writes(http: ColorSession) -> None:
    response = http.post("/api/items", json={"name": "smoke"})
    assert response.status_code == 200, response.text


@pytest.mark.quick
@pytest.mark.shared
def test_haproxy_answers(haproxy: RuntimeApi) -> None:
    info = haproxy.show_info()
    assert info["Version"].startswith("2."), info["Version"]
