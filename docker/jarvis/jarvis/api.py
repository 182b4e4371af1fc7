"""jarvis-api: the backend API on port 8000.

    GET  /health            200 {"status":"ok","color","version",
                                 "checks":{"postgres":"ok","redis":"ok"}}
                            503 when a check fails (the check's value is the error text)
    GET  /version           {"version","color","role"}
    GET  /metrics           Prometheus metrics: jarvis_http_requests_total{method,endpoint,code,
                            color,version} and jarvis_http_request_duration_seconds (histogram)
    GET  /api/items         the 20 newest items
    POST /api/items         {"name": "..."} -> 201 {"id","name","color","version",...}
    GET  /api/items/<id>    the item, "source": "redis" (cache) or "postgres"
    POST /api/tasks         {"kind": "echo"|"sleep", "payload": ...} -> 202, queued for this
                            color's agents worker
    GET  /api/tasks/<id>    {"id","status": "queued"|"running"|"done"|"failed",...}
    GET  /api/events        a long-lived stream (Server-Sent Events): {"color","version","n"}
                            a second until the connection is closed
    POST /api/ask           {"prompt": "..."} -> 200 {"answer","model"}: asks Ollama
                            (OLLAMA_HOST:OLLAMA_PORT, model OLLAMA_MODEL); 502 when Ollama
                            cannot answer (no such model, unreachable)

Every response carries X-Bluegreen-Color and X-Bluegreen-Version. Faults injected from the
environment at deploy time (jarvis.faults.InjectedFaults; bluegreen drill --power deploys them):
JARVIS_FAULT_LATENCY_MS adds that much latency to a JARVIS_FAULT_LATENCY_SHARE (default 1: all)
of the /api/* requests, JARVIS_FAULT_ERROR_RATE answers 500 on that share of them, each spread
evenly (of the first n requests, round(n * share)); a value that is none stops the API at
start. A *-degrading
build answers 500 on every JARVIS_DEGRADE_EVERY-th /api/* request (default 5: 20%) once
JARVIS_DEGRADE_AFTER_S seconds (default 3) have passed since its first routed request
(HAProxy marks those with X-Bluegreen-Route: routed). The drill's known-bad builds
(jarvis.build_fault()): "slow" adds 300 ms to every /api/* request, "flaky" answers 500 on every
20th, "tail" adds 150 ms to every 10th (a regression in the tail only: the median and the
absolute p(95)<250 stay as they were), "nomodel" asks Ollama for a model that is not there;
"3pct" is a build inside the tolerance: every /api/* answer waits 3% of the time it took to make.
"routedflaky" answers 500 on every 20th /api/* request HAProxy routed to it (X-Bluegreen-Route:
routed; jarvis.faults): direct and preview requests never fail and are not counted, so the
checks before a switch pass and only a canary on routed traffic catches it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg2
import redis

from jarvis import app_version, build_fault, deployment_color, is_degrading_build, metrics
from jarvis.common import Handler, env_int, serve, setup
from jarvis.faults import ROUTE_HEADER, InjectedFaults, RoutedFlaky
from jarvis.store import Store

log = logging.getLogger("jarvis.api")
ROLE = "jarvis-api"
ITEM_PATH = re.compile(r"^/api/items/(\d{1,18})$")
TASK_PATH = re.compile(r"^/api/tasks/(\d{1,18})$")
TASK_KINDS = ("echo", "sleep")
SLOW_BUILD_DELAY_S = 0.3  # what a "-slow" build adds to every /api/* request
FLAKY_BUILD_EVERY = 20  # a "-flaky" build answers 500 on every 20th /api/* request (5%)
TAIL_BUILD_EVERY = 10  # a "-tail" build is slower on every 10th /api/* request (10%) ...
TAIL_BUILD_DELAY_S = 0.15  # ... by this much: its p95 moves, its median does not
MISSING_MODEL = "jarvis-missing-model"  # what a "-nomodel" build asks Ollama for
EVENTS_EVERY_S = 1.0  # /api/events: one event a second


class ApiHandler(Handler):
    role = ROLE
    store: Store  # set in main()
    faults = InjectedFaults()  # from the environment, in main()
    degrade_after_s = 3.0
    degrade_every = 5
    first_routed: float | None = None  # when a degrading build first took routed traffic
    api_calls = 0
    tail_calls = 0
    routed_flaky_fault = RoutedFlaky()

    def degraded(self) -> bool:
        """A *-degrading build's fault: after it has taken routed traffic for a while."""
        if not is_degrading_build():
            return False
        if self.headers.get(ROUTE_HEADER) == "routed" and ApiHandler.first_routed is None:
            ApiHandler.first_routed = time.monotonic()
            log.warning("first routed request: degrading in %.0fs", self.degrade_after_s)
        started = ApiHandler.first_routed
        if started is None or time.monotonic() - started < self.degrade_after_s:
            return False
        ApiHandler.api_calls += 1
        return ApiHandler.api_calls % self.degrade_every == 0

    def flaky(self) -> bool:
        """A "-flaky" build's fault: every FLAKY_BUILD_EVERY-th /api/* request fails."""
        if build_fault() != "flaky":
            return False
        ApiHandler.api_calls += 1
        return ApiHandler.api_calls % FLAKY_BUILD_EVERY == 0

    def routed_flaky(self) -> bool:
        """A "-routedflaky" build's fault: every 20th routed /api/* request fails (faults.py)."""
        if build_fault() != "routedflaky":
            return False
        return self.routed_flaky_fault.fails(self.headers.get(ROUTE_HEADER))

    def tail(self) -> bool:
        """A "-tail" build's fault: every TAIL_BUILD_EVERY-th /api/* request is slower."""
        if build_fault() != "tail":
            return False
        ApiHandler.tail_calls += 1
        return ApiHandler.tail_calls % TAIL_BUILD_EVERY == 0

    def do_HEAD(self) -> None:
        self.do_GET()

    # -- /metrics: every request counted and timed (jarvis.metrics) ---------------------------
    request_started = 0.0
    status_sent = 0

    def parse_request(self) -> bool:
        self.request_started = time.monotonic()
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status_sent = code
        super().send_response(code, message)

    def handle_one_request(self) -> None:
        self.status_sent = 0
        super().handle_one_request()
        if self.status_sent and getattr(self, "command", None):
            metrics.observe(
                self.command, self.path, self.status_sent, time.monotonic() - self.request_started
            )

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.send_body(200, metrics.exposition(), metrics.CONTENT_TYPE_LATEST)
        elif path == "/health":
            self.health()
        elif path == "/version":
            self.send_json(
                200,
                {
                    "version": app_version(),
                    "color": deployment_color(),
                    "role": ROLE,
                    "hostname": socket.gethostname(),
                },
            )
        elif path == "/api/events":
            self.events()
        elif path.startswith("/api/"):
            self.api("GET", path)
        else:
            self.send_json(404, {"error": f"no route for GET {path}"})

    # -- /api/events: a long-lived stream ------------------------------------------------------
    def events(self) -> None:
        """Server-Sent Events: one a second ({"color","version","n"}) until the client or
        HAProxy closes the connection (at most JARVIS_EVENTS_MAX_S, default an hour). A switch
        lets such a stream flow from the old color until its drain ends, then closes it; the
        client reconnects (an EventSource does so by itself) and lands on the new color."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Bluegreen-Color", deployment_color())
        self.send_header("X-Bluegreen-Version", app_version())
        self.end_headers()
        self.close_connection = True
        until = time.monotonic() + float(os.environ.get("JARVIS_EVENTS_MAX_S", "3600"))
        n = 0
        while time.monotonic() < until:
            data = json.dumps({"color": deployment_color(), "version": app_version(), "n": n})
            try:
                self.wfile.write(f"id: {n}\ndata: {data}\n\n".encode())
                self.wfile.flush()
            except OSError:  # the client, or HAProxy at the end of a drain, closed it
                return
            n += 1
            time.sleep(EVENTS_EVERY_S)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/"):
            self.api("POST", path)
        else:
            self.read_body()
            self.send_json(404, {"error": f"no route for POST {path}"})

    # -- /health -----------------------------------------------------------------------------
    def health(self) -> None:
        checks = {"postgres": self.store.check_postgres(), "redis": self.store.check_redis()}
        ok = all(v == "ok" for v in checks.values())
        age = self.store.agents_heartbeat_age() if checks["redis"] == "ok" else None
        self.send_json(
            200 if ok else 503,
            {
                "status": "ok" if ok else "error",
                "color": deployment_color(),
                "version": app_version(),
                "checks": checks,
                "agents": {"heartbeat_age_s": age},
            },
        )

    # -- /api/* ------------------------------------------------------------------------------
    api_started: float | None = None

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        started, self.api_started = self.api_started, None  # one /api/* request's start
        if started is not None and build_fault() == "3pct":
            time.sleep(0.03 * (time.monotonic() - started))
        super().send_json(status, payload, headers)

    def api(self, method: str, path: str) -> None:
        self.api_started = time.monotonic()
        delay = self.faults.delay()
        if delay:
            time.sleep(delay)
        if build_fault() == "slow":
            time.sleep(SLOW_BUILD_DELAY_S)
        if self.tail():
            time.sleep(TAIL_BUILD_DELAY_S)
        try:
            body = self.read_json() if method == "POST" else None
        except ValueError as exc:
            self.send_json(400, {"error": f"invalid JSON body: {exc}"})
            return
        if self.degraded() or self.flaky() or self.routed_flaky() or self.faults.fails():
            self.send_json(500, {"error": "degraded", "version": app_version()})
            return
        try:
            self.store.require_release_schema()
            self.route(method, path, body)
        except (psycopg2.Error, redis.RedisError) as exc:
            log.error("%s %s failed: %s", method, path, str(exc).strip())
            self.send_json(500, self.error_body(exc))
        except Exception as exc:
            log.exception("%s %s failed", method, path)
            self.send_json(500, self.error_body(exc))

    def error_body(self, exc: Exception) -> dict[str, Any]:
        return {
            "error": str(exc).strip() or type(exc).__name__,
            "type": type(exc).__name__,
            "color": deployment_color(),
            "version": app_version(),
        }

    def route(self, method: str, path: str, body: Any) -> None:
        if path == "/api/items" and method == "POST":
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name.strip() or len(name) > 200:
                self.send_json(400, {"error": '"name" must be a non-empty string (max 200)'})
                return
            self.send_json(201, self.store.create_item(name.strip()))
        elif path == "/api/items" and method == "GET":
            self.send_json(200, {"items": self.store.list_items()})
        elif (m := ITEM_PATH.match(path)) and method == "GET":
            item = self.store.get_item(int(m.group(1)))
            if item is None:
                self.send_json(404, {"error": f"item {m.group(1)} not found"})
            else:
                self.send_json(200, item)
        elif path == "/api/ask" and method == "POST":
            self.ask(body.get("prompt") if isinstance(body, dict) else None)
        elif path == "/api/tasks" or TASK_PATH.match(path):
            self.route_task(method, path, body)
        else:
            self.send_json(404, {"error": f"no route for {method} {path}"})

    def route_task(self, method: str, path: str, body: Any) -> None:
        if path == "/api/tasks" and method == "POST":
            body = body if isinstance(body, dict) else {}
            kind = body.get("kind", "echo")
            if kind not in TASK_KINDS:
                self.send_json(400, {"error": f'"kind" must be one of {", ".join(TASK_KINDS)}'})
                return
            self.send_json(202, self.store.enqueue_task(kind, body.get("payload")))
        elif (m := TASK_PATH.match(path)) and method == "GET":
            task = self.store.get_task(m.group(1))
            if task is None:
                self.send_json(404, {"error": f"task {m.group(1)} not found"})
            else:
                self.send_json(200, task)
        else:
            self.send_json(404, {"error": f"no route for {method} {path}"})

    def ask(self, prompt: object) -> None:
        """One non-streamed answer from Ollama's /api/generate with this color's model."""
        if not isinstance(prompt, str) or not prompt.strip():
            self.send_json(400, {"error": '"prompt" must be a non-empty string'})
            return
        model = MISSING_MODEL if build_fault() == "nomodel" else os.environ.get("OLLAMA_MODEL")
        model = model or "tinyllama"
        url = (
            f"http://{os.environ.get('OLLAMA_HOST', 'sutazai-ollama')}:"
            f"{os.environ.get('OLLAMA_PORT', '11434')}/api/generate"
        )
        request = urllib.request.Request(
            url,
            data=json.dumps({"model": model, "prompt": prompt, "stream": False}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                data = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            self.send_json(502, {"error": f"ollama: HTTP {exc.code}: {detail}", "model": model})
            return
        except (OSError, ValueError) as exc:
            self.send_json(502, {"error": f"ollama: {exc}", "model": model})
            return
        self.send_json(200, {"answer": data.get("response", ""), "model": model})


def main(argv: list[str] | None = None) -> int:
    setup(ROLE)
    try:
        ApiHandler.faults = InjectedFaults.from_environ(os.environ)
    except ValueError as exc:
        log.error("not starting: %s", exc)
        return 2
    if ApiHandler.faults.any:
        log.warning("injected faults: %s", ApiHandler.faults.describe())
    ApiHandler.store = Store()
    ApiHandler.degrade_after_s = max(0, env_int("JARVIS_DEGRADE_AFTER_S", 3))
    ApiHandler.degrade_every = max(1, env_int("JARVIS_DEGRADE_EVERY", 5))
    try:
        ApiHandler.store.db.ensure_schema()
    except psycopg2.Error as exc:
        log.warning("schema not created yet (retried on first use): %s", str(exc).strip())
    return serve(ApiHandler, env_int("PORT", 8000), ROLE)


if __name__ == "__main__":
    sys.exit(main())
