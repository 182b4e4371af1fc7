"""The API's own Prometheus metrics (``GET /metrics``, prometheus-client): requests by method,
endpoint and status code, and their latency, so Prometheus can judge one color against the
other. Endpoints are the route templates (``/api/items/{id}``), never raw paths, to keep the
label set small.
"""

from __future__ import annotations

import re

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from jarvis import app_version, deployment_color

__all__ = ["CONTENT_TYPE_LATEST", "endpoint_of", "exposition", "observe"]

REQUESTS = Counter(
    "jarvis_http_requests_total",
    "HTTP requests answered, by method, endpoint (route template) and status code",
    ["method", "endpoint", "code", "color", "version"],
)
LATENCY = Histogram(
    "jarvis_http_request_duration_seconds",
    "time from reading the request line to the response sent, by method and endpoint",
    ["method", "endpoint", "color", "version"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_ROUTES = (
    (re.compile(r"^/api/items/[^/]+$"), "/api/items/{id}"),
    (re.compile(r"^/api/tasks/[^/]+$"), "/api/tasks/{id}"),
)
# /api/events is a stream: its "latency" is how long a client stayed, kept apart from the rest
_KNOWN = {
    "/health",
    "/version",
    "/metrics",
    "/api/items",
    "/api/tasks",
    "/api/ask",
    "/api/events",
}


def endpoint_of(path: str) -> str:
    path = path.split("?", 1)[0]
    if path in _KNOWN:
        return path
    for pattern, template in _ROUTES:
        if pattern.match(path):
            return template
    return "other"


def observe(method: str, path: str, code: int, seconds: float) -> None:
    endpoint = endpoint_of(path)
    color, version = deployment_color(), app_version()
    REQUESTS.labels(method, endpoint, str(code), color, version).inc()
    LATENCY.labels(method, endpoint, color, version).observe(seconds)


def exposition() -> bytes:
    return bytes(generate_latest())
