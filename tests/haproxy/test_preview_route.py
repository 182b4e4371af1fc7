"""The shipped haproxy.cfg's preview route, on a real HAProxy: a request naming a color and
carrying the shared key reaches that color through every public frontend (:443, the routed
API, the routed frontend), by header or cookie, whatever the weights; without the key, with a
wrong one, from an address outside ``BG_PREVIEW_SOURCES`` or with the route off it is an
ordinary request to the live color; the key never reaches a color; a previewed color that is
down answers 503, never the live color in its place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.stack import Stack, StackFactory, wait_for

KEY = "k3y-of-the-preview-route-0123456789"
COLOR = "X-Bluegreen-Color"


@pytest.fixture
def http(tls_cert: Path) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        session.verify = str(tls_cert)
        yield session


@pytest.fixture
def preview_stack(stack_factory: StackFactory) -> Stack:
    """Blue live, green idle, the preview route on."""
    return stack_factory(env={"BG_PREVIEW_KEY": KEY})


def entries(stack: Stack) -> dict[str, str]:
    """Each public frontend, with a path it sends to the API and one it sends to the frontend."""
    return {
        "https-api": f"https://127.0.0.1:{stack.ports['https']}/api/echo",
        "https-frontend": f"https://127.0.0.1:{stack.ports['https']}/",
        "routed-api": f"http://127.0.0.1:{stack.ports['api']}/api/echo",
        "routed-frontend": f"http://127.0.0.1:{stack.ports['frontend']}/",
    }


def answered(http: requests.Session, url: str, **kwargs: Any) -> str:
    response = http.get(url, timeout=5, **kwargs)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response.headers[COLOR]


def preview(color: str, key: str = KEY) -> dict[str, str]:
    return {"X-Bluegreen-Preview": color, "X-Bluegreen-Preview-Key": key}


def test_the_header_and_key_reach_the_idle_color_through_every_frontend(
    preview_stack: Stack, http: requests.Session
) -> None:
    for name, url in entries(preview_stack).items():
        assert answered(http, url) == "blue", name  # the live color, for everybody else
        assert answered(http, url, headers=preview("green")) == "green", name
        assert answered(http, url, headers=preview("blue")) == "blue", name


def test_the_cookies_reach_the_idle_color_too(preview_stack: Stack, http: requests.Session) -> None:
    cookies = {"bluegreen_preview": "green", "bluegreen_preview_key": KEY}
    for name, url in entries(preview_stack).items():
        assert answered(http, url, cookies=cookies) == "green", name


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Bluegreen-Preview": "green"},  # no key
        preview("green", KEY[:-1]),  # a wrong key
        preview("green", KEY.upper()),  # compared exactly
        preview("green", KEY + "x"),
        preview("green", ""),
        preview("purple"),  # not a color
        {"X-Bluegreen-Preview-Key": KEY},  # no color
    ],
    ids=["no-key", "short-key", "upper-key", "long-key", "empty-key", "no-such-color", "no-color"],
)
def test_without_the_right_key_and_color_it_is_an_ordinary_request(
    preview_stack: Stack, http: requests.Session, headers: dict[str, str]
) -> None:
    for name, url in entries(preview_stack).items():
        assert answered(http, url, headers=headers) == "blue", name
    cookies = {
        "bluegreen_preview": headers.get("X-Bluegreen-Preview", ""),
        "bluegreen_preview_key": headers.get("X-Bluegreen-Preview-Key", ""),
    }
    for name, url in entries(preview_stack).items():
        assert answered(http, url, cookies=cookies) == "blue", name


def test_the_route_is_off_without_a_key(stack: Stack, http: requests.Session) -> None:
    for name, url in entries(stack).items():
        assert answered(http, url, headers=preview("green")) == "blue", name
        assert answered(http, url, headers=preview("green", "")) == "blue", name


def test_sources_restrict_the_route(stack_factory: StackFactory, http: requests.Session) -> None:
    outside = stack_factory(
        "outside", env={"BG_PREVIEW_KEY": KEY, "BG_PREVIEW_SOURCES": "10.0.0.0/8 192.0.2.7"}
    )
    for name, url in entries(outside).items():
        assert answered(http, url, headers=preview("green")) == "blue", name
    inside = stack_factory(
        "inside", env={"BG_PREVIEW_KEY": KEY, "BG_PREVIEW_SOURCES": "10.0.0.0/8 127.0.0.0/8"}
    )
    for name, url in entries(inside).items():
        assert answered(http, url, headers=preview("green")) == "green", name


def test_the_key_never_reaches_a_color(preview_stack: Stack, http: requests.Session) -> None:
    for name in ("https-api", "routed-api"):
        url = entries(preview_stack)[name]
        by_header = http.get(url, headers=preview("green"), timeout=5).json()["heard"]
        assert by_header["X-Bluegreen-Preview-Key"] is None, name
        assert by_header["X-Bluegreen-Route"] == "preview", name
        for cookies in (
            f"a=1; bluegreen_preview_key={KEY}; bluegreen_preview=green; b=2",
            f"bluegreen_preview_key={KEY}; bluegreen_preview=green",
            f"bluegreen_preview=green;bluegreen_preview_key={KEY}",
        ):
            response = http.get(url, headers={"Cookie": cookies}, timeout=5)
            assert response.headers[COLOR] == "green", (name, cookies)
            heard = response.json()["heard"]
            assert KEY not in str(heard), (name, cookies, heard)
            assert "bluegreen_preview=green" in heard["Cookie"], (name, cookies, heard)
            assert ("a=1" in heard["Cookie"]) == ("a=1" in cookies), (name, heard)
            assert ("b=2" in heard["Cookie"]) == ("b=2" in cookies), (name, heard)
        # an ordinary request is told it was routed, as before
        plain = http.get(url, timeout=5).json()["heard"]
        assert plain["X-Bluegreen-Route"] == "routed", name


def test_a_previewed_color_that_is_down_answers_503_not_the_live_one(
    preview_stack: Stack, http: requests.Session
) -> None:
    api = preview_stack.api()

    def green_servers_down(down: bool) -> bool:
        rows = [r for r in api.show_stat() if r.server.startswith("green-")]
        return bool(rows) and all(r.status.startswith("DOWN") == down for r in rows)

    preview_stack.green.control(health_status=500)
    wait_for(lambda: green_servers_down(True), 10, "every green server DOWN")
    for name, url in entries(preview_stack).items():
        response = http.get(url, headers=preview("green"), timeout=5)
        assert response.status_code == 503, (name, response.status_code)
        assert COLOR not in response.headers, name
        assert answered(http, url) == "blue", name
    preview_stack.green.reset()
    wait_for(lambda: green_servers_down(False), 10, "every green server UP again")
