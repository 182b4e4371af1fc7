"""The shipped haproxy.cfg's preview route, on a real HAProxy: a request naming a color and
carrying the shared key reaches that color through every public frontend (:443, the routed
API, the routed frontend), by header or cookie, whatever the weights; without the key, with a
wrong one, from an address outside ``BG_PREVIEW_SOURCES`` or with the route off it is an
ordinary request to the live color; the key never reaches a color; a previewed color that is
down answers 503, never the live color in its place."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_bluegreen.haproxy.preview import preview_headers
from tests.support.preview import entries, raw_get
from tests.support.stack import HAPROXY_CFG, Stack, StackFactory, wait_for

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


def answered(http: requests.Session, url: str, **kwargs: Any) -> str:
    response = http.get(url, timeout=5, **kwargs)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response.headers[COLOR]


def preview(color: str, key: str = KEY) -> dict[str, str]:
    return preview_headers(color, key)  # as the preview_http fixture sends them


def sent_raw(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
    """One HTTP/1.1 request with ``headers`` exactly as given (a name twice, in this order):
    the color that answered and the routing headers it heard."""
    status, color, body = raw_get(port, path, headers)
    assert status == "200", (status, body[:200])
    assert color is not None, body[:200]
    return color, json_heard(body)


def json_heard(body: str) -> dict[str, Any]:
    import json  # noqa: PLC0415

    heard: dict[str, Any] = json.loads(body)["heard"]
    return heard


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


def test_a_key_may_begin_with_a_dash(stack_factory: StackFactory, http: requests.Session) -> None:
    """The checks take any key of ``A-Z a-z 0-9 . _ ~ -`` (a base64url token begins with "-"
    one time in 64): HAProxy must not read it as an ACL flag and refuse the configuration."""
    key = "-i-" + KEY
    dashed = stack_factory("dashed", env={"BG_PREVIEW_KEY": key})
    for name, url in entries(dashed).items():
        assert answered(http, url, headers=preview("green", key)) == "green", name
        assert answered(http, url, headers=preview("green", KEY)) == "blue", name


@pytest.mark.parametrize("variable", ["BG_PREVIEW_KEY", "BG_PREVIEW_SOURCES"])
def test_set_but_empty_is_a_configuration_error(
    variable: str, haproxy_available: str, tls_cert: Path, tmp_path: Path
) -> None:
    """An empty key would turn the route off, an empty source list would let no client use
    it: either is a mistake HAProxy refuses to start with, saying which."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BG_")},
        "BG_TLS_CERT": str(tls_cert),
        "BG_RUNTIME_SOCKET": str(tmp_path / "admin.sock"),
        "BG_SERVER_STATE_FILE": str(tmp_path / "server-state"),
        "BG_PREVIEW_KEY": KEY,
    }
    valid = subprocess.run(
        [haproxy_available, "-c", "-f", str(HAPROXY_CFG)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert valid.returncode == 0, valid.stdout + valid.stderr
    checked = subprocess.run(
        [haproxy_available, "-c", "-f", str(HAPROXY_CFG)],
        env={**env, variable: ""}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    said = checked.stdout + checked.stderr
    assert checked.returncode != 0, said
    assert f"{variable} is set but empty" in said, said


@pytest.mark.parametrize(
    ("sent", "reaches"),
    [
        ([("X-Bluegreen-Preview", "green"), ("X-Bluegreen-Preview", "purple")], "blue"),
        ([("X-Bluegreen-Preview", "purple"), ("X-Bluegreen-Preview", "green")], "green"),
        ([("Cookie", "bluegreen_preview=green; bluegreen_preview=purple")], "blue"),
        ([("Cookie", "bluegreen_preview=purple; bluegreen_preview=green")], "green"),
        ([("X-Bluegreen-Preview", "purple"), ("Cookie", "bluegreen_preview=green")], "green"),
    ],
    ids=["header-last-not-a-color", "header-last-green", "cookie-last-not-a-color",
         "cookie-last-green", "header-not-a-color-cookie-green"],
)  # fmt: skip
def test_a_color_named_twice_counts_by_its_last_value(
    preview_stack: Stack, sent: list[tuple[str, str]], reaches: str
) -> None:
    """With the key, the color is the last value sent; a request that names no color there is
    an ordinary one, and only a request a color's own backend takes is marked ``preview``
    (the color hears how it was reached: the stack's degrading build counts ``routed`` ones)."""
    for port in (preview_stack.ports["api"], preview_stack.ports["frontend"]):
        color, heard = sent_raw(port, "/api/echo", [("X-Bluegreen-Preview-Key", KEY), *sent])
        assert color == reaches, (port, sent)
        assert heard["X-Bluegreen-Route"] == ("preview" if reaches == "green" else "routed")


def test_a_key_cookie_sent_twice_never_reaches_a_color(preview_stack: Stack) -> None:
    for name in ("api", "frontend"):
        for cookies in (
            [("Cookie", f"bluegreen_preview_key={KEY}; bluegreen_preview=green; "
                        f"bluegreen_preview_key={KEY}")],
            [("Cookie", f"bluegreen_preview_key={KEY}; bluegreen_preview_key=other-0123456789; "
                        "bluegreen_preview=green")],
            [("Cookie", f"bluegreen_preview=green; bluegreen_preview_key={KEY}"),
             ("Cookie", f"a=1; bluegreen_preview_key={KEY}")],
        ):  # fmt: skip
            color, heard = sent_raw(preview_stack.ports[name], "/api/echo", cookies)
            assert color == "green", (name, cookies)
            assert "bluegreen_preview_key" not in str(heard), (name, cookies, heard)


@pytest.mark.parametrize("claimed", ["preview", "routed", "direct"])
@pytest.mark.parametrize("route", ["on", "off"])
def test_a_client_cannot_say_how_it_was_routed(
    stack_factory: StackFactory, http: requests.Session, claimed: str, route: str
) -> None:
    """Every public frontend sets ``X-Bluegreen-Route`` itself (a color reached by the preview
    route hears ``preview``, any other request ``routed``); the direct ports take it out."""
    stack = stack_factory(env={"BG_PREVIEW_KEY": KEY} if route == "on" else {})
    https = f"https://127.0.0.1:{stack.ports['https']}/api/echo"
    spoof = {"X-Bluegreen-Route": claimed}
    for port in ("api", "frontend"):
        url = f"http://127.0.0.1:{stack.ports[port]}/api/echo"
        heard = http.get(url, headers=spoof, timeout=5).json()["heard"]
        assert heard["X-Bluegreen-Route"] == "routed", (port, claimed)
    assert http.get(https, headers=spoof, timeout=5).json()["heard"]["X-Bluegreen-Route"] == (
        "routed"
    )
    for color in ("blue", "green"):
        heard = http.get(f"{stack.direct_url(color)}/api/echo", headers=spoof, timeout=5).json()
        assert heard["heard"]["X-Bluegreen-Route"] is None, color
