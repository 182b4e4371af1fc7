"""A long-lived client: a Server-Sent Events stream (the stand-in's ``/api/events``) read on
its own thread, with when each event came and when the connection ended."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from .stack import wait_for


@dataclass
class Stream:
    """``GET /api/events`` through ``host:port``; ``events``: (monotonic time, color)."""

    port: int
    host: str = "127.0.0.1"
    events: list[tuple[float, str]] = field(default_factory=list)
    ended: float | None = None  # when the connection was closed under it
    status: str = ""
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls, port: int) -> Stream:
        """Connected, with its first event read (so HAProxy counts its session)."""
        stream = cls(port)
        sock = socket.create_connection((stream.host, port), timeout=10)
        sock.sendall(
            b"GET /api/events HTTP/1.1\r\nHost: bluegreen\r\nAccept: text/event-stream\r\n\r\n"
        )
        stream._sock = sock
        stream._thread = threading.Thread(target=stream._read, daemon=True)
        stream._thread.start()
        wait_for(lambda: stream.events or stream.ended, 10, "the stream's first event")
        return stream

    def _read(self) -> None:
        assert self._sock is not None
        reader = self._sock.makefile("rb")
        try:
            self.status = reader.readline().decode(errors="replace").strip()
            for raw in reader:
                line = raw.decode(errors="replace").strip()
                if line.startswith("data: "):
                    self.events.append((time.monotonic(), line.removeprefix("data: ")))
        except OSError:
            pass
        self.ended = time.monotonic()

    @property
    def colors(self) -> set[str]:
        return {color for _, color in self.events}

    def events_after(self, moment: float) -> int:
        return sum(1 for at, _ in self.events if at > moment)

    def wait_ended(self, timeout: float) -> float:
        return wait_for(lambda: self.ended, timeout, "the stream to be closed")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(10)
