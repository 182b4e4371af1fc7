"""What the three Jarvis roles share: logging, process naming, the HTTP server base."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jarvis import app_version, deployment_color

log = logging.getLogger("jarvis")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        log.warning("ignoring %s=%r (not an integer), using %d", name, raw, default)
        return default


def setup(role: str) -> None:
    """Name the process after its role and configure logging to stderr."""
    set_process_name(role)
    level_name = os.environ.get("LOG_LEVEL", "info").upper()
    tag = f"{role}[{deployment_color()} {app_version()}]"
    logging.basicConfig(
        level=getattr(logging, level_name, logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {tag} %(message)s",
    )


def set_process_name(name: str) -> None:
    """Set the kernel's process name (``ps -o comm``, ``ps -C``) to ``name`` (max 15 bytes).

    The command line already names the role (``/usr/local/bin/jarvis-api``); this makes
    ``comm`` match too, so ``ps -C jarvis-api`` and testinfra's ``process.filter(comm=...)`` work.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-request is routine: one line, no traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("client %s: %s", client_address, exc)
        else:
            log.exception(
                "error while serving %s", client_address
            )  # listen backlog (the default 5 drops bursts of connections)


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler: JSON helpers, color/version headers on every response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    server_version = "jarvis"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    role = "jarvis"

    # -- responses ---------------------------------------------------------------------------
    def end_headers(self) -> None:
        self.send_header("X-Bluegreen-Color", deployment_color())
        self.send_header("X-Bluegreen-Version", app_version())
        super().end_headers()

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode() + b"\n"
        self.send_body(
            status,
            body,
            "application/json",
            {"Cache-Control": "no-store", **(headers or {})},
        )

    # -- requests ----------------------------------------------------------------------------
    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1_000_000:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def read_json(self) -> Any:
        raw = self.read_body()
        if not raw.strip():
            return {}
        return json.loads(raw)

    # -- logging: access log at INFO, except health checks (DEBUG) --------------------------
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        quiet = self.path.split("?", 1)[0] in ("/health", "/healthz")
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            '%s "%s" %s',
            self.address_string(),
            self.requestline,
            code,
        )

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.address_string(), format % args)


def serve(handler: type[Handler], port: int, role: str) -> int:
    """Serve on 0.0.0.0:port until SIGTERM/SIGINT; returns the exit status."""
    # all addresses inside the container; compose publishes the port on 127.0.0.1 only
    server = Server(("0.0.0.0", port), handler)  # noqa: S104

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        # shutdown() blocks until serve_forever() returns: call it off the serving thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s listening on 0.0.0.0:%d", role, port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0
