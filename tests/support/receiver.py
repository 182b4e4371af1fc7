"""A webhook receiver on 127.0.0.1: a real HTTP server that records every request it gets and
answers each with the next of its answers: a status, headers (``Retry-After``, a redirect's
``Location``), or a misbehaviour (no answer at all, an answer cut off by a connection reset, an
answer that trickles in and never ends)."""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .stack import wait_for

HANG = "hang"  # an answer: none at all, until the receiver is closed


@dataclass(frozen=True)
class Answer:
    """One answer: ``status`` with ``headers``; ``reset``: the connection is reset (RST) after
    ``reset`` of the answer was sent ("line": nothing but the start of the status line,
    "headers": the status line and headers, "body": part of the body); ``trickle``: the status
    line, then one byte of a header every 50 ms until the receiver is closed; ``body``: what the
    answer carries (64 bytes of "ok" and blanks unless given)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    reset: str | None = None
    trickle: bool = False
    body: bytes = b"ok" + b" " * 62


def redirect(location: str, status: int = 307) -> Answer:
    return Answer(status, {"Location": location})


def retry_after(value: str | float, status: int = 503) -> Answer:
    return Answer(status, {"Retry-After": str(value)})


RESET = Answer(reset="headers")
TRICKLE = Answer(trickle=True)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.monotonic() when it arrived

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def _answer(given: int | str | Answer) -> Answer | str:
    if isinstance(given, Answer) or given == HANG:
        return given
    return Answer(int(given))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        receiver = self.server.receiver
        request = Received(self.path, dict(self.headers.items()), body, time.monotonic())
        answer = receiver.take(request)
        self.close_connection = True
        if answer == HANG:
            receiver.released.wait(60)
            return
        assert isinstance(answer, Answer)
        if answer.trickle:
            self._trickle(answer, receiver.released)
            return
        if answer.reset == "line":
            self.wfile.write(b"HTTP/1.")
            self._reset()
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        # said, as it closes after each answer: else a client's next request may go out on
        # the kept-alive connection as it closes ("Remote end closed connection")
        self.send_header("Connection", "close")
        self.end_headers()
        if answer.reset == "headers":
            self._reset()
            return
        self.wfile.write(answer.body[:2])
        if answer.reset == "body":
            self._reset()
            return
        self.wfile.write(answer.body[2:])

    do_GET = do_POST  # an API's answer to a query (Prometheus'), as to a webhook

    def _trickle(self, answer: Answer, released: threading.Event) -> None:
        self.wfile.write(f"HTTP/1.1 {answer.status} OK\r\nX-Trickle: ".encode())
        self.wfile.flush()
        while not released.wait(0.05):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def _reset(self) -> None:
        """Close with a reset (RST), not an orderly FIN: what a crashing proxy does."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a reset of our own making, a client that gave up: not news


class Receiver:
    """Answers each request with the next of ``answers`` (an HTTP status, :data:`HANG` or an
    :class:`Answer`), then with 200."""

    def __init__(self, answers: Sequence[int | str | Answer] = ()) -> None:
        self.answers = [_answer(a) for a in answers]
        self.received: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}{path}"

    def take(self, request: Received) -> Answer | str:
        with self._lock:
            self.received.append(request)
            return self.answers.pop(0) if self.answers else Answer()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json() for r in self.received]

    def gaps(self) -> list[float]:
        """Seconds between one request and the next."""
        with self._lock:
            times = [r.at for r in self.received]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The events, once ``count`` have arrived."""
        wait_for(lambda: len(self.received) >= count, timeout, f"{count} request(s)")
        return self.events()

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
