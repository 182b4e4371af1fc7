"""Checks through HAProxy's preview route (the ``preview_http`` fixture) in a real gate: they
reach the idle color through the public path before any user does, a failure only that path
shows blocks the switch, a route that answers with the live color is never a pass, and the
route's key (``PREVIEW_KEY`` in secrets.env) reaches no output."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.haproxy.answers import AdminState, ServerRef
from tests.support.gate import history, output, run_gate
from tests.support.stack import Stack, StackFactory, wait_for

KEY = "pr3view-k3y-0f-the-gate-tests-4567"

PREVIEW_CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http):
    assert http.get("/health").status_code == 200


@pytest.mark.quick
def test_the_public_path(preview_http, color):
    response = preview_http.get("/api/echo")
    assert response.status_code == 200, response.text
    assert response.json()["color"] == color
    assert response.json()["heard"]["X-Bluegreen-Route"] == "preview"
"""


@pytest.fixture
def preview_stack(stack_factory: StackFactory) -> Stack:
    """Blue live, green idle, HAProxy's preview route on with KEY."""
    return stack_factory(env={"BG_PREVIEW_KEY": KEY})


def secrets_file(pytester: pytest.Pytester, key: str | None = KEY) -> str:
    path = pytester.path / "secrets.env"
    path.write_text("POSTGRES_PASSWORD=unused-password\n" + (f"PREVIEW_KEY={key}\n" if key else ""))
    return str(path)


def gate_green(
    pytester: pytest.Pytester,
    stack: Stack,
    *args: str,
    checks: str = PREVIEW_CHECKS,
    key: str | None = KEY,
    **settings: Any,
) -> pytest.RunResult:
    """A gate of green (``--env green`` and ``args``) with ``checks`` and ``key`` as
    PREVIEW_KEY in its secrets file."""
    return run_gate(
        pytester,
        stack,
        "--env",
        "green",
        *args,
        checks=checks,
        secrets_file=secrets_file(pytester, key=key),
        **settings,
    )


def everything_written(pytester: pytest.Pytester, stack: Stack, result: pytest.RunResult) -> str:
    """The run's output and every file it and HAProxy wrote (not secrets.env, which holds it)."""
    found = [*pytester.path.rglob("*"), *stack.workdir.rglob("*")]
    files = [p for p in found if p.is_file() and p.name != "secrets.env"]
    texts = [p.read_text(errors="replace") for p in files]
    return "\n".join([output(result), *texts])


def test_a_preview_check_reaches_the_idle_color_and_the_gate_switches(
    pytester: pytest.Pytester, preview_stack: Stack
) -> None:
    result = gate_green(pytester, preview_stack, "--switch", "-m", "quick", "-rA")
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*PASSED*test_the_public_path*green*"])
    assert preview_stack.served_color() == "green"
    assert [e["outcome"] for e in history(preview_stack)] == ["switched"]
    assert KEY not in everything_written(pytester, preview_stack, result)


def test_a_failure_only_the_public_path_shows_blocks_the_switch(
    pytester: pytest.Pytester, preview_stack: Stack
) -> None:
    preview_stack.green.control(routed_status=500)  # its direct port answers well
    result = gate_green(pytester, preview_stack, "--switch", "-m", "quick")
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(
        [
            "*bluegreen: FAILED: checks failed (green: 1 passed, 1 failed)*",
            "*traffic stays on blue*",
        ]
    )
    assert preview_stack.served_color() == "blue"
    assert [e["outcome"] for e in history(preview_stack)] == ["failed"]
    # the failed exchange is in the report; the key is not
    assert KEY not in everything_written(pytester, preview_stack, result)


@pytest.mark.parametrize("haproxy_key", [None, KEY[::-1]], ids=["route-off", "other-key"])
def test_the_live_color_answering_the_preview_is_never_a_pass(
    pytester: pytest.Pytester, stack_factory: StackFactory, haproxy_key: str | None
) -> None:
    stack = stack_factory(env={"BG_PREVIEW_KEY": haproxy_key} if haproxy_key else {})
    checks = PREVIEW_CHECKS.replace('assert response.json()["color"] == color\n', "").replace(
        'assert response.json()["heard"]["X-Bluegreen-Route"] == "preview"\n', ""
    )
    result = gate_green(pytester, stack, "--switch", "-m", "quick", checks=checks)
    assert result.ret != 0, output(result)
    result.stdout.fnmatch_lines(
        [
            "*the preview route at http://127.0.0.1:*answered as blue, not green*",
            "*traffic stays on blue*",
        ]
    )
    assert stack.served_color() == "blue"
    assert KEY not in output(result)


def test_without_a_key_the_preview_checks_are_skipped_saying_why(
    pytester: pytest.Pytester, preview_stack: Stack
) -> None:
    result = gate_green(pytester, preview_stack, "-m", "quick", "-rs", key=None)
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no preview route in this deployment: set PREVIEW_KEY*"])


@pytest.mark.parametrize(
    "bad", ["short-key", "a key with spaces in it", "k;ey=with,separators0123"], ids=str
)
def test_a_key_that_cannot_be_sent_is_one_line_and_nothing_moves(
    pytester: pytest.Pytester, preview_stack: Stack, bad: str
) -> None:
    result = gate_green(pytester, preview_stack, "--switch", key=bad)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    errors = [line for line in result.errlines if line.strip()]
    assert errors == [
        "ERROR: PREVIEW_KEY in secrets.env: 16 to 256 of the characters A-Z a-z 0-9 . _ ~ - (it is "
        "sent in a header and a cookie; make one with: openssl rand -hex 24)"
    ], errors
    assert bad not in output(result)
    assert preview_stack.served_color() == "blue"
    assert history(preview_stack) == []


def test_the_preview_url_and_ca_settings_take_the_checks_through_tls(
    pytester: pytest.Pytester, preview_stack: Stack, tls_cert: Path
) -> None:
    checks = PREVIEW_CHECKS.replace(
        "def test_the_public_path(preview_http, color):\n",
        "def test_the_public_path(preview_http, color):\n"
        "    assert preview_http.base_url.startswith('https://')\n",
    )
    https = f"https://127.0.0.1:{preview_stack.ports['https']}"
    result = gate_green(
        pytester,
        preview_stack,
        "-m",
        "quick",
        checks=checks,
        preview_url=https,
        preview_ca=str(tls_cert),
    )
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=2)
    # without the CA, the certificate does not verify: the route never answers, never a pass
    untrusted = gate_green(
        pytester, preview_stack, "-m", "quick", checks=checks, preview_url=https, verify_timeout=1
    )
    assert untrusted.ret == 1, output(untrusted)
    untrusted.stdout.fnmatch_lines(["*CERTIFICATE_VERIFY_FAILED*"])


def green_direct_stat(stack: Stack) -> int:
    """The 5xx answers of the preview route's backend for green's API so far."""
    [row] = [
        r for r in stack.api().show_stat() if (r.backend, r.server) == ("green_direct", "BACKEND")
    ]
    return int(row.raw.get("hrsp_5xx") or 0)


def test_the_fixture_waits_for_haproxy_to_count_the_color_up(
    pytester: pytest.Pytester, preview_stack: Stack
) -> None:
    """Right after a deploy HAProxy may still count the color's servers DOWN (its health
    checks' rise): the route answers 503 itself. preview_http waits, within verify_timeout,
    until it answers from the color; a route that never does is an INFRA-ERROR."""
    # the test stack's direct URLs go through the same HAProxy backend: the preview check alone
    checks = PREVIEW_CHECKS.replace(
        "@pytest.mark.quick\ndef test_health(http):\n"
        '    assert http.get("/health").status_code == 200\n',
        "",
    )
    assert "test_health" not in checks
    api = preview_stack.api()
    green_direct = ServerRef("green_direct", "green-api-direct")
    api.set_state(green_direct, AdminState.MAINT)
    # never back: an INFRA-ERROR after verify_timeout, nothing switched
    result = gate_green(
        pytester, preview_stack, "--switch", "-m", "quick", checks=checks, verify_timeout=1
    )
    assert result.ret != 0, output(result)
    result.stdout.fnmatch_lines(
        ["*does not answer from green: GET /health answers HTTP 503 naming no color*"]
    )
    assert preview_stack.served_color() == "blue"
    # back UP once the fixture has met HAProxy's 503: handed out then, and the gate switches
    seen = green_direct_stat(preview_stack)

    def back_up_once_refused() -> None:
        wait_for(lambda: green_direct_stat(preview_stack) > seen, 60, "the fixture's first try")
        api.set_state(green_direct, AdminState.READY)

    waker = threading.Thread(target=back_up_once_refused)
    waker.start()
    try:
        result = gate_green(
            pytester, preview_stack, "--switch", "-m", "quick", checks=checks, verify_timeout=30
        )
    finally:
        waker.join(60)
    assert result.ret == 0, output(result)
    assert preview_stack.served_color() == "green"


def test_a_redirect_elsewhere_is_followed_without_the_key(
    pytester: pytest.Pytester, preview_stack: Stack
) -> None:
    """The color sends the check on to another origin (a login page, a CDN): the redirect is
    followed, but the route's key and color go to HAProxy's public side only."""
    heard: list[dict[str, str]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            heard.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    with ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        elsewhere = f"http://localhost:{server.server_port}/login"
        checks = PREVIEW_CHECKS + (
            "\n\n@pytest.mark.quick\n"
            "def test_sent_on(preview_http):\n"
            f"    response = preview_http.get('/api/redirect?to={elsewhere}')\n"
            f"    assert response.url == {elsewhere!r}, response.url\n"
            "    assert response.status_code == 200\n"
            "    again = preview_http.get('/api/echo')  # its own origin: the key still goes\n"
            "    assert again.json()['color'] == 'green'\n"
        )
        result = gate_green(pytester, preview_stack, "-m", "quick", checks=checks)
        server.shutdown()
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=3)
    assert len(heard) == 1, heard
    assert KEY not in str(heard), heard
    assert not any(name.lower().startswith("x-bluegreen-preview") for name in heard[0]), heard
