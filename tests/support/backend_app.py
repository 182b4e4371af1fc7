"""A tiny HTTP backend standing in for one color's API in the plugin's own tests.

Run: ``python backend_app.py --color blue --version v1``; prints ``READY <port>`` once listening.
Answers ``/health``, ``/version``, ``/api/echo`` (GET and POST) and ``/`` with its color in the
``X-Bluegreen-Color`` header and the JSON body (a GET of ``/api/*`` also says the routing headers it
heard: ``X-Bluegreen-Route``, the preview route's and ``Cookie``); ``/api/redirect?to=URL`` answers
302 to URL. ``POST /_control`` with a JSON
object changes its behaviour at run time (used to inject faults): ``health_status`` (int),
``claim_color`` (str), ``api_status`` (int), ``delay_ms`` (a number: added latency), ``jitter`` (the
sigma of a lognormal factor on ``delay_ms``, for a realistic spread), ``error_every`` (every N-th
/api/ request answers 500), ``tail_ms`` (added to a share of the /api/ requests only: a regression
in the tail) with ``tail_every`` (every N-th of them) or ``tail_share`` (each with that
probability), ``routed_status`` (int: the status of an /api/ request that came through HAProxy's
routing, which marks it ``X-Bluegreen-Route``: a fault only the public path shows),
``routed_error_every`` (every N-th such routed /api/ request answers 500: a partial fault only
real users' traffic meets, what a canary is for),
``metrics_status`` (int: ``/metrics`` answers that instead), ``hold`` (true: every /api/ request
waits, up to a minute, until ``{"release": true}`` or a reset). ``/metrics`` is a Prometheus text
page: the requests it answered, by path class and status, and a histogram of the /api/
requests' durations by route (``routed``: HAProxy marked it; ``direct``); and every request
counted as the Jarvis API counts them (``jarvis_http_requests_total{method,endpoint,code,color,
version}``, ``jarvis_http_request_duration_seconds``: docker/jarvis/jarvis/metrics.py), so a
Prometheus scraping these stand-ins has the series the dashboard draws by default.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

FAULTS: dict[str, Any] = {}
_LOCK = threading.Lock()
# each restarted when its setting is set: the N-th request counts from the next one on, whatever
# an earlier test sent this session-wide stand-in
_API_CALLS = [itertools.count(1)]  # /api/ requests, for error_every
_TAIL_CALLS = [itertools.count(1)]  # for tail_every
_ROUTED_CALLS = [itertools.count(1)]  # routed /api/ requests, for routed_error_every
_ANSWERED: Counter[tuple[str, int]] = Counter()  # (path class, status) -> requests, /metrics
# /api/ requests' durations by route (routed: HAProxy marked it), a Prometheus histogram
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
_DURATIONS: dict[str, list[int]] = {}  # route -> count per bucket (the last: +Inf)
_SUMS: dict[str, float] = {}
# as the Jarvis API: (method, endpoint, code) -> requests; (method, endpoint) -> bucket counts
JARVIS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_JARVIS_ANSWERED: Counter[tuple[str, str, int]] = Counter()
_JARVIS_DURATIONS: dict[tuple[str, str], list[int]] = {}
_JARVIS_SUMS: dict[tuple[str, str], float] = {}
_RELEASED = threading.Event()  # what held /api/ requests wait for
_RELEASED.set()
HOLD_AT_MOST = 60.0
EVENTS_AT_MOST = 60.0


def make_handler(color: str, version: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any] | str, ctype: str = "") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            with _LOCK:
                claimed = FAULTS.get("claim_color", color)
                kind = "api" if self.path.startswith("/api/") else self.path.strip("/") or "root"
                _ANSWERED[(kind, status)] += 1
                if kind == "api":
                    took = time.monotonic() - getattr(self, "began", time.monotonic())
                    route = "routed" if self.headers.get("X-Bluegreen-Route") else "direct"
                    counts = _DURATIONS.setdefault(route, [0] * (len(BUCKETS) + 1))
                    counts[bisect.bisect_left(BUCKETS, took)] += 1
                    _SUMS[route] = _SUMS.get(route, 0.0) + took
                endpoint = self.path.split("?", 1)[0]
                if endpoint != "/_control":
                    took = time.monotonic() - getattr(self, "began", time.monotonic())
                    key = (self.command, endpoint)
                    _JARVIS_ANSWERED[(*key, status)] += 1
                    counts = _JARVIS_DURATIONS.setdefault(key, [0] * (len(JARVIS_BUCKETS) + 1))
                    counts[bisect.bisect_left(JARVIS_BUCKETS, took)] += 1
                    _JARVIS_SUMS[key] = _JARVIS_SUMS.get(key, 0.0) + took
            self.send_response(status)
            self.send_header("Content-Type", ctype or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Bluegreen-Color", claimed)
            self.send_header("X-Bluegreen-Version", version)
            self.end_headers()
            self.wfile.write(data)

        def _heard(self) -> dict[str, str | None]:
            """The request headers HAProxy's routing adds or must take out, as received."""
            names = (
                "X-Bluegreen-Route",
                "X-Bluegreen-Preview",
                "X-Bluegreen-Preview-Key",
                "Cookie",
            )
            return {name: self.headers.get(name) for name in names}

        def _faults(self) -> dict[str, Any]:
            self.began = time.monotonic()  # the request's duration, for the histogram
            with _LOCK:
                faults = dict(FAULTS)
            delay = float(faults.get("delay_ms", 0))
            if delay and not self.path.startswith("/_control"):
                jitter = float(faults.get("jitter", 0))
                factor = random.lognormvariate(0, jitter) if jitter else 1.0
                time.sleep(delay * factor / 1000)
            tail = float(faults.get("tail_ms", 0))
            if tail and self.path.startswith("/api/"):
                tail_every = int(faults.get("tail_every", 0))
                if tail_every:
                    slow = next(_TAIL_CALLS[0]) % tail_every == 0
                else:
                    slow = random.random() < float(faults.get("tail_share", 0))
                if slow:
                    time.sleep(tail / 1000)
            if faults.get("hold") and self.path.startswith("/api/"):
                _RELEASED.wait(HOLD_AT_MOST)
            routed = int(faults.get("routed_status", 0))
            if routed and self.path.startswith("/api/") and self.headers.get("X-Bluegreen-Route"):
                faults["api_status"] = routed
            routed_every = int(faults.get("routed_error_every", 0))
            if (
                routed_every
                and self.path.startswith("/api/")
                and self.headers.get("X-Bluegreen-Route") == "routed"
                and next(_ROUTED_CALLS[0]) % routed_every == 0
            ):
                faults["api_status"] = 500
            every = int(faults.get("error_every", 0))
            if every and self.path.startswith("/api/") and next(_API_CALLS[0]) % every == 0:
                faults["api_status"] = 500
            return faults

        def _events(self, claimed: str) -> None:
            """``/api/events``: Server-Sent Events, one every 50 ms naming the color, until the
            client or HAProxy closes the connection (at most EVENTS_AT_MOST seconds)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.send_header("X-Bluegreen-Color", claimed)
            self.end_headers()
            self.close_connection = True
            until = time.monotonic() + EVENTS_AT_MOST
            for n in itertools.count():
                if time.monotonic() > until:
                    return
                try:
                    self.wfile.write(f"id: {n}\ndata: {claimed}\n\n".encode())
                    self.wfile.flush()
                except OSError:  # the connection is gone: the client or HAProxy closed it
                    return
                time.sleep(0.05)

        def do_GET(self) -> None:
            faults = self._faults()
            claimed = faults.get("claim_color", color)
            if self.path == "/api/events":
                self._events(claimed)
            elif self.path == "/health":
                status = int(faults.get("health_status", 200))
                ok = "ok" if status == 200 else "failing"
                self._send(status, {"status": ok, "color": claimed, "version": version})
            elif self.path == "/version":
                self._send(200, {"version": version, "color": claimed})
            elif self.path.startswith("/api/redirect?to="):  # an app sending its client on
                self.send_response(302)
                self.send_header("Location", unquote(self.path.removeprefix("/api/redirect?to=")))
                self.send_header("Content-Length", "0")
                self.send_header("X-Bluegreen-Color", claimed)
                self.end_headers()
            elif self.path.startswith("/api/"):
                status = int(faults.get("api_status", 200))
                self._send(status, {"color": claimed, "path": self.path, "heard": self._heard()})
            elif self.path == "/":
                self._send(200, f"<html><body>{claimed} {version}</body></html>", "text/html")
            elif self.path == "/metrics":
                status = int(faults.get("metrics_status", 200))
                self._send(status, _metrics(claimed, version), "text/plain; version=0.0.4")
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/_control":
                update = json.loads(raw or b"{}")
                with _LOCK:
                    if update.get("reset") or update.get("release"):
                        FAULTS.pop("hold", None)
                        _RELEASED.set()
                    if update.get("reset"):
                        FAULTS.clear()
                    if update.get("hold"):
                        _RELEASED.clear()
                    FAULTS.update(
                        {k: v for k, v in update.items() if k not in ("reset", "release")}
                    )
                    for setting, calls in (
                        ("error_every", _API_CALLS),
                        ("tail_every", _TAIL_CALLS),
                        ("routed_error_every", _ROUTED_CALLS),
                    ):
                        if setting in update:  # counted from the next /api/ request on
                            calls[0] = itertools.count(1)
                self._send(200, {"faults": FAULTS})
                return
            faults = self._faults()
            status = int(faults.get("api_status", 200))
            claimed = faults.get("claim_color", color)
            self._send(status, {"color": claimed, "received": len(raw)})

    return Handler


def _metrics(color: str, version: str) -> str:
    """The requests answered so far, as Prometheus' text format."""
    with _LOCK:
        answered = sorted(_ANSWERED.items())
        durations = {route: list(counts) for route, counts in _DURATIONS.items()}
        sums = dict(_SUMS)
        jarvis = sorted(_JARVIS_ANSWERED.items())
        jarvis_durations = {key: list(counts) for key, counts in _JARVIS_DURATIONS.items()}
        jarvis_sums = dict(_JARVIS_SUMS)
    lines = ["# TYPE backend_requests_total counter"]
    lines += [
        f'backend_requests_total{{color="{color}",path="{kind}",code="{status}"}} {count}'
        for (kind, status), count in answered
    ]
    lines.append("# TYPE backend_request_duration_seconds histogram")
    for route, counts in sorted(durations.items()):
        labels = f'color="{color}",route="{route}"'
        total = 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
            total += count
            lines.append(
                f'backend_request_duration_seconds_bucket{{{labels},le="{bound}"}} {total}'
            )
        lines.append(f"backend_request_duration_seconds_sum{{{labels}}} {sums[route]}")
        lines.append(f"backend_request_duration_seconds_count{{{labels}}} {total}")
    return (
        "\n".join([*lines, *_jarvis_lines(color, version, jarvis, jarvis_durations, jarvis_sums)])
        + "\n"
    )


def _jarvis_lines(
    color: str,
    version: str,
    answered: list[tuple[tuple[str, str, int], int]],
    durations: dict[tuple[str, str], list[int]],
    sums: dict[tuple[str, str], float],
) -> list[str]:
    """The requests as the Jarvis API exports them (its names, labels and buckets)."""
    own = f'color="{color}",version="{version}"'
    lines = ["# TYPE jarvis_http_requests_total counter"]
    lines += [
        f'jarvis_http_requests_total{{method="{method}",endpoint="{endpoint}",code="{code}",'
        f"{own}}} {count}"
        for (method, endpoint, code), count in answered
    ]
    lines.append("# TYPE jarvis_http_request_duration_seconds histogram")
    for (method, endpoint), counts in sorted(durations.items()):
        labels = f'method="{method}",endpoint="{endpoint}",{own}'
        total = 0
        for bound, count in zip((*map(str, JARVIS_BUCKETS), "+Inf"), counts, strict=True):
            total += count
            lines.append(
                f'jarvis_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {total}'
            )
        lines.append(
            f"jarvis_http_request_duration_seconds_sum{{{labels}}} {sums[(method, endpoint)]}"
        )
        lines.append(f"jarvis_http_request_duration_seconds_count{{{labels}}} {total}")
    return lines


class QuietServer(ThreadingHTTPServer):
    """HAProxy's health checks close their connections early; that is not an error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--color", required=True)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    args = parser.parse_args()
    server = QuietServer((args.host, args.port), make_handler(args.color, args.version))
    server.daemon_threads = True
    sys.stdout.write(f"READY {server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
