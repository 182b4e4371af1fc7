"""``bluegreen dashboard``'s server: the standard library's HTTP server, serving one page
(``dashboard.html`` and its script ``dashboard.js``, beside this module), the charting library
from its installed folder (``dashboard_library``: Chart.js and its annotation plugin, from
npm), and ``/api/snapshot?range=15m|1h|6h``: the panels' range queries asked of Prometheus
here (the browser needs the dashboard's origin only) and the gate runs' markers
(report/snapshot.py). ``/-/ready`` answers 200 once it serves (as Prometheus' does).

The page's Content-Security-Policy allows its own origin only: nothing is loaded from outside
the machine. A request whose Host header is not the dashboard's address (:class:`HostCheck`)
is refused: a page of another site whose name was made to point at this machine (DNS
rebinding) would otherwise read the snapshot as its own origin's. SIGTERM and Ctrl-C stop the
server cleanly.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from pytest_bluegreen.errors import UsageError

if TYPE_CHECKING:
    from .snapshot import Source

__all__ = [
    "DEFAULT_LISTEN",
    "LIBRARY",
    "DashboardError",
    "DashboardServer",
    "HostCheck",
    "bind",
    "exposure",
    "library_files",
    "listen_address",
    "serve",
]

DEFAULT_LISTEN = "127.0.0.1:10201"  # the guide's Grafana port, beside Prometheus' 10200
REFRESH_SECONDS = 5
# a connection that sends nothing for this long is closed: its thread is let go (a client that
# never finishes its request); a browser opens another when it asks again
IDLE_SECONDS = 30.0
HERE = Path(__file__).parent
# what the page loads, and where npm puts it under the library's folder (its --prefix)
LIBRARY = {
    "/chart.js": "node_modules/chart.js/dist/chart.umd.js",
    "/chartjs-plugin-annotation.js": (
        "node_modules/chartjs-plugin-annotation/dist/chartjs-plugin-annotation.min.js"
    ),
}
PAGE = {"/": ("dashboard.html", "text/html"), "/dashboard.js": ("dashboard.js", "text/javascript")}
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; frame-ancestors 'none'"
)


class DashboardError(UsageError):
    """``bluegreen dashboard`` cannot serve: a bad ``--listen`` or ``--prometheus``, an address
    it cannot listen on, the charting library not installed (one line, exit 4)."""


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:10201`` for IPv6) as a host and a port."""
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise DashboardError(f"--listen expects HOST:PORT (e.g. {DEFAULT_LISTEN}), got {text!r}")
    return host, int(port)


def library_files(folder: Path) -> dict[str, bytes]:
    """The charting library's files the page loads, read from ``folder``."""
    files = {}
    for path, name in LIBRARY.items():
        try:
            files[path] = (folder / name).read_bytes()
        except OSError:
            raise DashboardError(
                f"the charting library is not installed in {folder} (dashboard_library): run "
                "scripts/install-chartjs, or npm install --prefix "
                f"{folder} chart.js@4 chartjs-plugin-annotation@3"
            ) from None
    return files


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    return name == "localhost" or (_is_ip(name) and ipaddress.ip_address(name).is_loopback)


def _is_any(name: str) -> bool:
    return _is_ip(name) and ipaddress.ip_address(name).is_unspecified


def exposure(host: str, port: int) -> str | None:
    """What to tell the operator of a listen address other machines may reach (every address
    of this machine, a network's, a name that is not ``localhost``): the page asks no login.
    None for a loopback address."""
    if _is_loopback(host):
        return None
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (
        f"warning: {shown} is reachable from other machines: whoever reaches it sees the "
        "charts and the gate runs (the page asks no login); --listen 127.0.0.1:PORT keeps "
        "it on this machine (an SSH tunnel reaches it from another)"
    )


@dataclass(frozen=True)
class HostCheck:
    """Which Host headers name the dashboard listening on ``host:port``: a browser sends the
    name it reached the server by, so a page of another site whose name was made to resolve
    to this machine (DNS rebinding) sends its own, and is refused. Allowed, with the port:
    the listen address; a loopback one's ``localhost`` and loopback addresses; when listening
    on every address (``0.0.0.0``, ``::``), any IP address and this machine's name. No Host
    header at all is no browser's request: allowed."""

    names: frozenset[str]
    port: int
    any_ip: bool

    @classmethod
    def of(cls, host: str, port: int) -> HostCheck:
        names = {host.lower()}
        if _is_loopback(host):
            names |= {"localhost", "127.0.0.1", "::1"}
        if _is_any(host):
            names |= {"localhost", socket.gethostname().lower()}
        return cls(frozenset(names), port, _is_any(host))

    def allows(self, header: str | None) -> bool:
        if header is None:
            return True
        try:
            parts = urlsplit(f"//{header}")
            name, port = parts.hostname, parts.port or 80
        except ValueError:  # a port that is no number
            return False
        if not name or port != self.port or parts.netloc != header or "@" in header:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))


class DashboardServer(ThreadingHTTPServer):
    """The server and what it serves: the page, the library's files, ``source``'s data."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        source: Source,
        library: dict[str, bytes],
        idle: float = IDLE_SECONDS,
    ) -> None:
        self.source = source
        self.hosts = HostCheck.of(*address)
        self.idle = idle
        if ":" in address[0]:  # an IPv6 address
            self.address_family = socket.AF_INET6
        self.files = dict(library)
        for path, (name, _) in PAGE.items():
            self.files[path] = (HERE / name).read_bytes()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the browser left before its answer (a tab closed): no news
        super().handle_error(request, client_address)  # a bug's traceback, on stderr

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{f'[{name}]' if ':' in name else name}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle)  # each read and write of it

    def log_message(self, format: str, *args: Any) -> None:
        return  # a request is no news; a failure is the page's to show

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        hosts = self.headers.get_all("Host") or []
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0") != "0":
            # a body is never read: on a kept connection it would be taken for the next request
            self.close_connection = True
            self._send(400, b"a GET has no body\n", "text/plain")
        elif len(hosts) > 1 or not self.server.hosts.allows(hosts[0] if hosts else None):
            said = f"Host {', '.join(hosts)!r} is not this dashboard's address\n"
            self._send(403, said.encode(), "text/plain")
        elif parts.path == "/api/snapshot":
            self._snapshot(parse_qs(parts.query).get("range", ["15m"])[0])
        elif parts.path == "/-/ready":
            self._send(200, b"ready\n", "text/plain")
        elif parts.path in PAGE:
            self._send(200, self.server.files[parts.path], PAGE[parts.path][1])
        elif parts.path in LIBRARY:
            self._send(200, self.server.files[parts.path], "text/javascript")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _snapshot(self, chosen: str) -> None:
        # imported on the first request: the bluegreen command imports this module for its
        # DEFAULT_LISTEN, and the snapshot's Prometheus client, requests, is a tenth of a second
        from .snapshot import RANGES, snapshot  # noqa: PLC0415

        seconds = RANGES.get(chosen)
        if seconds is None:
            body = {"error": f"range must be one of {', '.join(RANGES)}, got {chosen!r}"}
            self._send(400, json.dumps(body).encode(), "application/json")
            return
        document = {**snapshot(self.server.source, seconds), "refresh": REFRESH_SECONDS}
        self._send(200, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def bind(
    listen: str, source: Source, library: dict[str, bytes], idle: float = IDLE_SECONDS
) -> DashboardServer:
    """The server, listening on ``listen`` (``HOST:PORT``); a connection idle for ``idle``
    seconds is closed."""
    address = listen_address(listen)
    try:
        return DashboardServer(address, source, library, idle)
    except OSError as exc:
        raise DashboardError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def serve(server: DashboardServer) -> None:
    """Serve until SIGTERM or Ctrl-C (the main thread's), then close the server."""

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return: from another thread, not this one
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
