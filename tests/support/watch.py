"""A bounded load on every instance's routed URL that also watches each switch: one process,
one keep-alive connection per instance, each request sent once the last one was answered.

Between switches each connection waits ``pause`` after an answer (a trickle: two cores keep
HAProxy's health checks on time); :meth:`Watch.arm`, called right before a switch's first
change, makes every connection ask again after ``armed_pause`` only, until its instance has
answered from the switch's target, then it trickles again. So the first answer from the
target through every instance is seen within about a round trip whatever the number of
instances, and the requests stay bounded by count (``total``) and by time (``duration``).

One process (selectors, no thread per connection): N instances cost N sockets, not N
interpreters, and the switch's own process shares no GIL with its watch.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from pytest_bluegreen.judge.headers import COLOR_HEADER, VERSION_HEADER
from pytest_bluegreen.judge.load import LoadResult, Sample

__all__ = ["Watch"]

KIND = "keepalive-get"
ARMED_AT_MOST = 10.0  # s: an arming never seen on every instance is given up (said by the caller)
STOP_WAIT = 2.0  # s: the answers in flight awaited once stopped
READ_SIZE = 65536


@dataclass
class _Conn:
    """One instance's keep-alive connection and the request in flight on it."""

    index: int
    host: str
    port: int
    request: bytes
    sock: socket.socket | None = None
    sent: float | None = None  # when the request in flight was sent; None: idle
    due: float = 0.0  # when the next request goes (idle)
    buffer: bytearray = field(default_factory=bytearray)

    @classmethod
    def to(cls, index: int, url: str) -> _Conn:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: bluegreen-watch\r\n\r\n"
        ).encode()
        return cls(index, host, port, request)


def _response(buffer: bytearray) -> tuple[int, dict[str, str], int] | None:
    """(status, headers, length of the whole response) once ``buffer`` holds all of it."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = end + 4 + int(headers.get("content-length", "0"))
    return (int(lines[0].split()[1]), headers, length) if len(buffer) >= length else None


class _Loop:
    """The watch's side: the connections, the arming, the samples (in the watch process)."""

    def __init__(
        self, watch: Watch, urls: list[str], total: int, pause: float, armed: float
    ) -> None:
        self.watch = watch
        self.conns = [_Conn.to(index, url) for index, url in enumerate(urls)]
        self.results = [LoadResult() for _ in urls]
        self.total, self.pause, self.armed = total, pause, armed
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()  # again in run()
        self.selector.close()  # the watch process makes its own
        self.sent = 0
        self.target: str | None = None  # armed: the color every instance must answer from
        self.arming = 0
        self.armed_at = 0.0
        self.waiting: set[int] = set()  # armed: the instances not seen on the target yet
        self.stopping: float | None = None  # asked to stop: the answers in flight awaited

    def run(self, orders: Connection, duration: float) -> list[LoadResult]:
        self.selector = selectors.DefaultSelector()
        self.selector.register(orders, selectors.EVENT_READ, None)
        started = time.monotonic()
        deadline = started + duration
        while not self._over(deadline):
            now = time.monotonic()
            if self.target is not None and now - self.armed_at > ARMED_AT_MOST:
                self._settle()
            sending = self.stopping is None and now < deadline
            idle = [c for c in self.conns if c.sent is None]
            for conn in idle:
                if sending and conn.due <= now and self.sent < self.total:
                    self._send(conn)
            wake = min([c.due for c in idle if sending] + [now + 0.05])
            for key, _ in self.selector.select(max(0.0, wake - now)):
                if key.data is None:
                    self._order(orders)
                else:
                    self._readable(key.data)
        for conn in self.conns:
            if conn.sent is not None:
                self._fail(conn, "Stopped: no answer before the watch's end")
            self._drop(conn)
        finished = time.monotonic()
        for result in self.results:
            result.started, result.finished = started, finished
        return self.results

    def _over(self, deadline: float) -> bool:
        now = time.monotonic()
        in_flight = any(conn.sent is not None for conn in self.conns)
        if self.stopping is not None:
            return not in_flight or now > self.stopping + STOP_WAIT
        if self.sent >= self.total:
            return not in_flight
        return now >= deadline + (STOP_WAIT if in_flight else 0.0)

    def _order(self, orders: Connection) -> None:
        try:
            order, color, number, count = orders.recv()
        except EOFError:  # the benchmark is gone
            order, color, number, count = "stop", "", 0, None
        if order == "stop":
            self.selector.unregister(orders)
            self.stopping = time.monotonic()
            return
        self.target, self.arming, self.armed_at = color, number, time.monotonic()
        self.waiting = set(range(len(self.conns) if count is None else count))
        for conn in self.conns[: len(self.waiting)]:
            conn.due = min(conn.due, self.armed_at)

    def _settle(self) -> None:
        self.target = None
        self.watch.settled.value = self.arming

    def _record(self, conn: _Conn, sample: Sample) -> None:
        self.results[conn.index].samples.append(sample)
        with self.watch.answered.get_lock():
            self.watch.answered.value += 1
        if self.target is not None and sample.color == self.target:
            self.waiting.discard(conn.index)
            if not self.waiting:
                self._settle()
        armed = self.target is not None and conn.index in self.waiting
        conn.due = sample.end + (self.armed if armed else self.pause)

    def _drop(self, conn: _Conn) -> None:
        if conn.sock is not None:
            self.selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        conn.buffer.clear()

    def _fail(self, conn: _Conn, error: str) -> None:
        began = conn.sent if conn.sent is not None else time.monotonic()
        conn.sent = None
        self._drop(conn)
        self._record(conn, Sample(KIND, began, time.monotonic() - began, None, None, error))

    def _send(self, conn: _Conn) -> None:
        conn.sent = time.monotonic()
        self.sent += 1
        try:
            if conn.sock is None:
                conn.sock = socket.create_connection((conn.host, conn.port), timeout=2)
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sock.setblocking(False)
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            conn.sock.send(conn.request)  # a few dozen bytes: the socket's buffer takes them
        except OSError as exc:
            self._fail(conn, f"{type(exc).__name__}: {exc}")

    def _readable(self, conn: _Conn) -> None:
        if conn.sock is None:
            return
        try:
            data = conn.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if conn.sent is None and exc.errno == errno.ECONNRESET:
                self._drop(conn)  # an idle keep-alive connection closed: no request lost
            else:
                self._fail(conn, f"{type(exc).__name__}: {exc}")
            return
        if not data:
            if conn.sent is None:
                self._drop(conn)  # HAProxy closed an idle keep-alive connection
            else:
                self._fail(conn, "ConnectionClosed: closed before the whole response")
            return
        conn.buffer += data
        parsed = _response(conn.buffer)
        if parsed is None or conn.sent is None:
            return
        status, headers, length = parsed
        del conn.buffer[:length]
        began, conn.sent = conn.sent, None
        ok = 200 <= status < 400
        color = headers.get(COLOR_HEADER.lower()) if ok else None
        version = headers.get(VERSION_HEADER.lower())
        latency = time.monotonic() - began
        self._record(conn, Sample(KIND, began, latency, status, color, None, version))
        if headers.get("connection", "").lower() == "close":
            self._drop(conn)


class Watch:
    """The watching load (see the module's docstring) in a process of its own."""

    def __init__(
        self,
        urls: list[str],
        *,
        total: int,
        duration: float,
        pause: float,
        armed_pause: float = 0.001,
    ) -> None:
        context = multiprocessing.get_context("fork")
        self.answered = context.Value("i", 0)  # answers so far, every instance
        self.settled = context.Value("i", 0)  # the last arming answered everywhere (or given up)
        receive, self._orders = context.Pipe(duplex=False)
        self._results: multiprocessing.Queue[list[LoadResult]] = context.Queue()
        self.result: list[LoadResult] | None = None
        self.armings = 0
        loop = _Loop(self, urls, total, pause, armed_pause)
        self.process = context.Process(
            target=self._run, args=(loop, receive, duration), daemon=True, name="bluegreen-watch"
        )
        self.process.start()

    def arm(self, target: str, count: int | None = None) -> int:
        """Every instance (or the first ``count``) asked at once until it answers from
        ``target``; the arming's number (:meth:`seen` says when it is done)."""
        self.armings += 1
        self._orders.send(("arm", target, self.armings, count))
        return self.armings

    def seen(self, arming: int) -> bool:
        """Every instance answered from the target of ``arming`` (or the watch gave up)."""
        return int(self.settled.value) >= arming

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def finish(self, timeout: float = 30) -> list[LoadResult]:
        """The load stopped, its result per instance (the same when asked again)."""
        if self.result is None:
            with contextlib.suppress(OSError):  # it ended already (its bounds): result queued
                self._orders.send(("stop", "", 0, None))
            self.result = self._results.get(timeout=timeout)
            self.process.join(timeout)
        return self.result

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def _run(self, loop: _Loop, orders: Connection, duration: float) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the benchmark's to handle
        self._results.put(loop.run(orders, duration))
