"""A webhook receiver on 127.0.0.1: a real HTTP server that records every request it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .stack import wait_for

HANG = "hang"  # an answer: none at all, until the receiver is closed


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        receiver = self.server.receiver
        answer = receiver.take(Received(self.path, dict(self.headers.items()), body))
        if answer == HANG:
            receiver.released.wait(60)
            return
        self.send_response(int(answer))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class Receiver:
    """Answers each request with the next of ``answers`` (an HTTP status, or :data:`HANG`),
    then with 200."""

    def __init__(self, answers: Sequence[int | str] = ()) -> None:
        self.answers = list(answers)
        self.received: list[Received] = []
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}{path}"

    def take(self, request: Received) -> int | str:
        with self._lock:
            self.received.append(request)
            return self.answers.pop(0) if self.answers else 200

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.json() for r in self.received]

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The events, once ``count`` have arrived."""
        wait_for(lambda: len(self.received) >= count, timeout, f"{count} request(s)")
        return self.events()

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
