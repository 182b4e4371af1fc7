"""The shipped haproxy/haproxy.cfg: validated by ``haproxy -c``, then exercised through a started
``stack`` (stats page, HTTP -> HTTPS redirect, TLS, routing, health checks, rate limit, socket)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.answers import AdminState, ServerRef, StatRow
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from tests.support.stack import HAPROXY_CFG, Stack, free_ports, wait_for

BLUE_API = ServerRef("api_backend", "blue-api")
GREEN_API = ServerRef("api_backend", "green-api")
COLOR = "X-Bluegreen-Color"
HSTS = "max-age=31536000"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        yield session


def stat_row(api: RuntimeApi, backend: str, server: str) -> StatRow:
    [row] = [r for r in api.show_stat() if (r.backend, r.server) == (backend, server)]
    return row


def make_green_live(stack: Stack) -> None:
    api = stack.api()
    for backend in ("api", "frontend"):
        api.set_weight(ServerRef(f"{backend}_backend", f"green-{backend}"), 100)
        api.set_weight(ServerRef(f"{backend}_backend", f"blue-{backend}"), 0)
    assert stack.served_color() == "green"


# -- haproxy -c -------------------------------------------------------------------------------
def check_config(binary: str, tmp_path: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    names = ("STATS", "HTTP", "HTTPS", "API", "FRONTEND", "BLUE_DIRECT", "GREEN_DIRECT")
    ports = free_ports(len(names) + 1)
    env = {
        **os.environ,
        **{
            f"BG_{name}_BIND": f"127.0.0.1:{port}" for name, port in zip(names, ports, strict=False)
        },
        "BG_RUNTIME_SOCKET": str(tmp_path / "admin.sock"),
        "BG_RUNTIME_TCP_PORT": str(ports[-1]),
        "BG_SERVER_STATE_FILE": str(tmp_path / "server-state"),
        "BG_TLS_CERT": str(cert),
        "BG_CHECK_INTER": "100ms",
        "BG_RATE_LIMIT": "20",
    }
    return subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_config_is_valid_with_test_settings(
    haproxy_available: str, tls_cert: Path, tmp_path: Path
) -> None:
    result = check_config(haproxy_available, tmp_path, tls_cert)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    assert "[ALERT]" not in result.stderr


def test_config_check_names_a_missing_certificate(haproxy_available: str, tmp_path: Path) -> None:
    missing = tmp_path / "certs" / "missing.pem"
    result = check_config(haproxy_available, tmp_path, missing)
    assert result.returncode != 0
    assert "Configuration file is valid" not in result.stdout
    assert f"unable to stat SSL certificate from file '{missing}'" in result.stderr
    assert "No such file or directory" in result.stderr


# -- monitoring and entry points ------------------------------------------------------------
def test_stats_page(stack: Stack, http: requests.Session) -> None:
    response = http.get(f"http://127.0.0.1:{stack.ports['stats']}/stats", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    for name in ("api_backend", "frontend_backend", "blue-api", "green-api"):
        assert name in response.text
    healthz = http.get(f"http://127.0.0.1:{stack.ports['stats']}/healthz", timeout=5)
    assert (healthz.status_code, healthz.text) == (200, "ok\n")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text page (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        names, _, value = line[len(name) + 1 :].rpartition("} ")
        found = dict(pair.split("=", 1) for pair in names.split(","))
        if {k: v.strip('"') for k, v in found.items()} == labels:
            return float(value)
    raise AssertionError(f"no {name}{labels} in the exporter's page")


def test_prometheus_exporter(stack: Stack, http: requests.Session) -> None:
    """HAProxy's built-in exporter on the stats frontend: each server's state and weight."""
    url = f"http://127.0.0.1:{stack.ports['stats']}/metrics"
    response = http.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    page = response.text
    server = {"proxy": "api_backend", "server": "blue-api"}
    assert metric(page, "haproxy_server_status", **server, state="UP") == 1
    assert metric(page, "haproxy_server_status", **server, state="DOWN") == 0
    assert metric(page, "haproxy_server_uweight", **server) == 100
    green = {"proxy": "api_backend", "server": "green-api"}
    assert metric(page, "haproxy_server_uweight", **green) == 0
    make_green_live(stack)
    stack.green.control(health_status=500)
    try:
        stack.wait_down("green")
        page = http.get(url, timeout=5).text
    finally:
        stack.green.reset()
    assert metric(page, "haproxy_server_uweight", **green) == 100
    assert metric(page, "haproxy_server_status", **green, state="DOWN") == 1
    assert metric(page, "haproxy_server_uweight", **server) == 0
    # the stats page itself is still where it was
    assert http.get(f"http://127.0.0.1:{stack.ports['stats']}/stats", timeout=5).status_code == 200


def test_http_redirects_to_https(stack: Stack, http: requests.Session) -> None:
    response = http.get(
        f"http://127.0.0.1:{stack.ports['http']}/health?probe=1", allow_redirects=False, timeout=5
    )
    assert response.status_code == 301
    location = response.headers["Location"]
    assert location.startswith("https://")
    assert location.endswith("/health?probe=1")  # path and query are kept
    assert COLOR not in response.headers  # answered by HAProxy, no backend involved


def test_https_serves_the_generated_certificate(stack: Stack, tls_cert: Path) -> None:
    context = ssl.create_default_context(cafile=str(tls_cert))
    with (
        socket.create_connection(("127.0.0.1", stack.ports["https"]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        peer = tls.getpeercert()
        der = tls.getpeercert(binary_form=True)
        version = tls.version()
    assert peer is not None
    assert der is not None
    assert (("commonName", "localhost"),) in peer["subject"]
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert ("DNS", "localhost") in peer["subjectAltName"]
    assert version in {"TLSv1.2", "TLSv1.3"}
    served = ssl.DER_cert_to_PEM_cert(der)
    assert served.strip() in tls_cert.read_text()


def test_https_is_not_trusted_without_the_certificate(stack: Stack, http: requests.Session) -> None:
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        http.get(f"https://127.0.0.1:{stack.ports['https']}/health", timeout=5)


@pytest.mark.parametrize("live", ["blue", "green"])
def test_https_routes_to_the_live_color_with_hsts(
    stack: Stack, http: requests.Session, tls_cert: Path, live: str
) -> None:
    if live == "green":
        make_green_live(stack)
    base = f"https://127.0.0.1:{stack.ports['https']}"
    for path in ("/health", "/version", "/api/echo", "/"):  # api_backend, then frontend_backend
        response = http.get(f"{base}{path}", verify=str(tls_cert), timeout=5)
        assert response.status_code == 200, path
        assert response.headers[COLOR] == live, path
        assert response.headers["Strict-Transport-Security"] == HSTS, path
    assert http.get(f"{base}/health", verify=str(tls_cert), timeout=5).json()["color"] == live


def test_hsts_also_on_responses_haproxy_generates(
    stack: Stack, http: requests.Session, tls_cert: Path
) -> None:
    api = stack.api()
    api.set_state(BLUE_API, AdminState.MAINT)
    api.set_state(GREEN_API, AdminState.MAINT)
    response = http.get(
        f"https://127.0.0.1:{stack.ports['https']}/health", verify=str(tls_cert), timeout=5
    )
    assert response.status_code == 503
    assert COLOR not in response.headers  # HAProxy's own answer
    assert response.headers.get("Strict-Transport-Security") == HSTS


@pytest.mark.parametrize("live", ["blue", "green"])
def test_direct_ports_answer_for_their_color_only(
    stack: Stack, http: requests.Session, live: str
) -> None:
    if live == "green":
        make_green_live(stack)
    for _ in range(3):  # round robin would show a mix within a few requests
        for color in ("blue", "green"):
            response = http.get(f"{stack.direct_url(color)}/health", timeout=5)
            assert response.status_code == 200
            assert response.headers[COLOR] == color
        routed = http.get(f"{stack.routed_url}/health", timeout=5)
        assert routed.headers[COLOR] == live


# -- health checks ----------------------------------------------------------------------------
def test_failing_health_endpoint_marks_green_down_and_back_up(
    stack: Stack, http: requests.Session
) -> None:
    api = stack.api()
    assert stat_row(api, "api_backend", "green-api").status == "UP"
    stack.green.control(health_status=503)
    stack.wait_down("green")
    green = stat_row(api, "api_backend", "green-api")
    assert green.status == "DOWN"
    assert (green.check_status, green.raw["check_code"]) == ("L7STS", "503")
    assert not green.is_up
    assert stat_row(api, "api_backend", "blue-api").status == "UP"
    assert stack.served_color() == "blue"
    # the direct backend checks /health as well: green's direct port has no server left
    wait_for(
        lambda: stat_row(api, "green_direct", "green-api-direct").status == "DOWN",
        10,
        "green's direct server DOWN",
    )
    assert http.get(f"{stack.direct_url('green')}/health", timeout=5).status_code == 503

    stack.green.reset()
    stack.wait_up("green")
    assert stat_row(api, "api_backend", "green-api").check_status == "L7OK"


# -- rate limiting ----------------------------------------------------------------------------
def test_rate_limit_answers_429_after_the_limit(stack: Stack, http: requests.Session) -> None:
    stack.restart_haproxy(set_env={"BG_RATE_LIMIT": "20"})
    started = time.monotonic()
    codes: list[int] = []
    for _ in range(60):  # bounded: stop at the first 429, never more than 60 requests
        codes.append(http.get(f"{stack.routed_url}/health", timeout=5).status_code)
        if codes[-1] == 429:
            break
    assert time.monotonic() - started < 10  # all within one 10 s window
    assert codes == [200] * 20 + [429]
    again = http.get(f"{stack.routed_url}/health", timeout=5)
    assert again.status_code == 429
    assert COLOR not in again.headers  # denied by HAProxy, the backend never saw it
    # the counter is per client address and shared by the routed frontends
    frontend = http.get(f"http://127.0.0.1:{stack.ports['frontend']}/", timeout=5)
    assert frontend.status_code == 429


def test_default_test_limit_does_not_throttle(stack: Stack, http: requests.Session) -> None:
    codes = {http.get(f"{stack.routed_url}/health", timeout=5).status_code for _ in range(30)}
    assert codes == {200}


# -- runtime socket ---------------------------------------------------------------------------
def test_admin_unix_socket_is_owner_only(stack: Stack) -> None:
    mode = os.stat(stack.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
