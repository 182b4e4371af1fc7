"""``bluegreen dashboard``'s HTTP server against hostile and unlucky clients, on real sockets
on 127.0.0.1, in this process: a page of another site that reached it by DNS rebinding (its
own name in the Host header), a client that never finishes its request, a GET with a body.
Its Prometheus refuses connections (the page's error: test_dashboard.py); the charting
library is a stand-in (the page is not drawn here)."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_bluegreen.report.dashboard import (
    LIBRARY,
    DashboardServer,
    HostCheck,
    bind,
    exposure,
    listen_address,
)
from pytest_bluegreen.report.snapshot import Source
from pytest_bluegreen.settings.judging import DashboardSettings
from tests.support.stack import free_ports, wait_for

STAND_IN = dict.fromkeys(LIBRARY, b"// the charting library's stand-in\n")


@contextmanager
def serving(prometheus: str, state_file: Path) -> Iterator[DashboardServer]:
    """The dashboard on a free port, drawing ``prometheus``, in a thread of this process."""
    source = Source(prometheus, DashboardSettings(), state_file, ("blue", "green"), timeout=10)
    server = bind(f"127.0.0.1:{free_ports(1)[0]}", source, STAND_IN, idle=1.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DashboardServer]:
    [nobody] = free_ports(1)  # nothing listens there: Prometheus refuses
    with serving(f"http://127.0.0.1:{nobody}", tmp_path / "state.json") as started:
        yield started


def where(server: DashboardServer) -> tuple[str, int]:
    """The server's (host, port), as a client connects to it."""
    address, port = server.server_address[:2]
    return str(address), int(port)


def get(server: DashboardServer, path: str, host: str | None) -> tuple[int, bytes]:
    """``GET path`` with ``host`` as its Host header (None: none at all)."""
    address, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(address), port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


# --- DNS rebinding: a page of another site never reads the dashboard ----------------------


@pytest.mark.parametrize("path", ["/api/snapshot", "/", "/dashboard.js"])
def test_a_page_of_another_site_that_reached_it_by_its_own_name_is_refused(
    server: DashboardServer, path: str
) -> None:
    port = server.server_address[1]
    status, body = get(server, path, f"rebind.example:{port}")
    assert status == 403
    assert b"not this dashboard's address" in body
    assert b"blue" not in body  # nothing of the snapshot


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost"])
def test_the_names_of_this_machine_it_listens_on_are_served(
    server: DashboardServer, name: str
) -> None:
    status, body = get(server, "/api/snapshot", f"{name}:{server.server_address[1]}")
    assert status == 200
    assert b"does not answer" in body  # the snapshot: its Prometheus refuses


@dataclass(frozen=True)
class Given:
    listen: str
    port: int
    host: str | None
    allowed: bool


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(Given("127.0.0.1", 10201, "127.0.0.1:10201", True), id="loopback"),
        pytest.param(Given("127.0.0.1", 10201, "localhost:10201", True), id="localhost"),
        pytest.param(Given("127.0.0.1", 10201, "[::1]:10201", True), id="loopback-v6"),
        pytest.param(Given("127.0.0.1", 10201, "127.0.0.1:10202", False), id="other-port"),
        pytest.param(Given("127.0.0.1", 10201, "127.0.0.1", False), id="no-port-is-80"),
        pytest.param(Given("127.0.0.1", 80, "localhost", True), id="port-80"),
        pytest.param(Given("127.0.0.1", 10201, "evil.example:10201", False), id="rebound"),
        pytest.param(Given("127.0.0.1", 10201, "localhost.evil:10201", False), id="suffix"),
        pytest.param(Given("127.0.0.1", 10201, "127.0.0.1:10201:1", False), id="garbage"),
        pytest.param(Given("127.0.0.1", 10201, "", False), id="empty"),
        pytest.param(Given("127.0.0.1", 10201, None, True), id="none-not-a-browser"),
        pytest.param(Given("::1", 10201, "[::1]:10201", True), id="v6"),
        pytest.param(Given("0.0.0.0", 10201, "192.0.2.7:10201", True), id="any-v4-by-ip"),
        pytest.param(Given("::", 10201, "[2001:db8::1]:10201", True), id="any-v6-by-ip"),
        pytest.param(Given("0.0.0.0", 10201, "evil.example:10201", False), id="any-rebound"),
        pytest.param(Given("192.0.2.7", 10201, "192.0.2.7:10201", True), id="lan"),
        pytest.param(Given("192.0.2.7", 10201, "192.0.2.8:10201", False), id="lan-other"),
        pytest.param(Given("192.0.2.7", 10201, "localhost:10201", False), id="lan-localhost"),
    ],
)
def test_a_host_header_names_the_listen_address(given: Given) -> None:
    assert HostCheck.of(given.listen, given.port).allows(given.host) is given.allowed


def test_this_machines_name_is_allowed_when_it_listens_everywhere() -> None:
    check = HostCheck.of("0.0.0.0", 10201)
    assert check.allows(f"{socket.gethostname()}:10201")


@pytest.mark.parametrize(
    ("listen", "warned"),
    [
        ("127.0.0.1:10201", False),
        ("[::1]:10201", False),
        ("localhost:10201", False),
        ("0.0.0.0:10201", True),
        ("[::]:10201", True),
        ("192.0.2.7:10201", True),
        ("dashboard.example:10201", True),
    ],
)
def test_an_address_other_machines_reach_is_said_when_it_listens(listen: str, warned: bool) -> None:
    said = exposure(*listen_address(listen))
    if warned:
        assert said is not None
        assert said.startswith(f"warning: {listen} is reachable from other machines")
        assert "no login" in said
    else:
        assert said is None


# --- clients that hold a connection, or send what a GET does not have ---------------------


def closed_by_the_server(connection: socket.socket) -> bool:
    """The server closed ``connection`` (what it sent before is read and dropped)."""
    try:
        return connection.recv(65536) == b""
    except TimeoutError:
        return False


def test_a_client_that_never_finishes_its_request_is_let_go(server: DashboardServer) -> None:
    """One thread per connection: a client that sends half a request and waits (slowloris)
    must not hold its thread for ever; every other client is served meanwhile."""
    with socket.create_connection(where(server), timeout=0.2) as slow:
        slow.sendall(b"GET /api/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        status, _ = get(server, "/-/ready", None)
        assert status == 200
        wait_for(lambda: closed_by_the_server(slow), 10, "the server to close the idle client")


def test_a_get_with_a_body_is_refused_and_its_body_never_read_as_a_request(
    server: DashboardServer,
) -> None:
    hidden = b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(hidden),
        hidden,
    )
    with socket.create_connection(where(server), timeout=5) as client:
        client.sendall(request)
        answered = b""
        while chunk := client.recv(65536):  # until the server closes the connection
            answered += chunk
    assert answered.startswith(b"HTTP/1.1 400 ")
    assert answered.count(b"HTTP/1.1 ") == 1  # the body was not a second request
    assert b"ready" not in answered


# --- a browser that leaves before its answer ----------------------------------------------


def handlers() -> list[threading.Thread]:
    """The server's threads that handle a connection, running now."""
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


def test_a_client_gone_before_its_answer_is_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tab closed while Prometheus was being asked: the answer has nowhere to go, and that is
    no error to print (the dashboard's log is the operator's)."""
    with socket.create_server(("127.0.0.1", free_ports(1)[0])) as prometheus:
        prometheus.settimeout(10)
        url = f"http://127.0.0.1:{prometheus.getsockname()[1]}"
        with serving(url, tmp_path / "state.json") as server:
            client = socket.create_connection(where(server), timeout=10)
            client.sendall(b"GET /api/snapshot HTTP/1.1\r\n\r\n")  # no Host: no browser
            asked, _ = prometheus.accept()  # the dashboard asks Prometheus: the answer waits
            with asked:
                while b"\r\n\r\n" not in asked.recv(65536):
                    pass
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # reset: the tab is gone
                asked.sendall(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
            wait_for(lambda: not handlers(), 20, "the dashboard to be done with the request")
    assert "Traceback" not in capsys.readouterr().err
