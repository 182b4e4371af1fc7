"""Performance checks of one color: a bounded load per endpoint, judged by k6-style thresholds.

pytest checks --env green -m perf

For each endpoint of the ``[thresholds]`` table in bluegreen.toml, e.g.

    [thresholds]
    "/health" = ["p(95)<300", "rate<0.01"]

the check sends ``perf_requests`` keep-alive GETs (at most ``perf_duration`` seconds, over
``perf_concurrency`` connections) to the color's direct URL (``colors.<c>.api_url``, not the
routed one: the numbers are the color's own) and fails on every threshold it misses. Latencies
are in ms and computed here, client-side (p50/p95/p99 nearest-rank over the successful
requests); ``rate`` is the share of failed requests (refused, reset, timed out, 4xx or 5xx).

Not marked ``quick``: a load of a few hundred requests is not part of the fast pre-switch gate.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.contrib.services import tls_ca_of
from pytest_bluegreen.testing import (
    ColorEnvironment,
    ColorSession,
    InfrastructureError,
    LoadResult,
    Settings,
    evaluate_thresholds,
    run_load,
    settings_of,
)

pytestmark = pytest.mark.perf

# Persistent connections only: what HAProxy's pooled connections to a color look like, and what
# the latency thresholds are about. Add "new-get" to also pay a TCP handshake per request.
LOAD_KINDS = ("keepalive-get",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per endpoint of the thresholds table (the plugin adds the color)."""
    if "endpoint" in metafunc.fixturenames:
        endpoints = list(settings_of(metafunc.config).checks.thresholds)
        metafunc.parametrize("endpoint", endpoints, ids=endpoints)


def summary(result: LoadResult) -> str:
    """``p50=1.2ms p95=2.0ms p99=3.1ms, 850 req/s, errors=0/400 in 0.47s``"""
    if len(result.failed) < result.count:
        latency = " ".join(f"p{p}={result.latency_ms(p):.1f}ms" for p in (50, 95, 99))
    else:
        latency = "p50/p95/p99 n/a (no request succeeded)"
    return (
        f"{latency}, {result.throughput:.0f} req/s, "
        f"errors={len(result.failed)}/{result.count} in {result.wall:.2f}s"
    )


def first_error(result: LoadResult) -> str:
    """The first failed request's error (``ConnectionResetError: ...``) or status (``HTTP 500``)."""
    for sample in result.failed:
        return sample.error or f"HTTP {sample.status}"
    return "none"


# http: this folder's session (conftest.py), which first waits until the color itself answers,
# so a color still coming UP is not measured as a burst of 503s; it also notes which build the
# load's answers came from, for the gate
def test_latency_thresholds(
    endpoint: str, environment: ColorEnvironment, bluegreen_settings: Settings, http: ColorSession
) -> None:
    settings = bluegreen_settings
    url = environment.api_url + endpoint
    result = run_load(
        url,
        total=settings.checks.perf_requests,
        duration=settings.checks.perf_duration,
        concurrency=settings.checks.perf_concurrency,
        kinds=LOAD_KINDS,
        timeout=settings.checks.http_timeout,
        color_header=settings.topology.color_header,
        version_header=settings.topology.version_header,
        server_header=settings.topology.server_header,
        tls_ca=tls_ca_of(settings),  # an https:// color: a failed handshake is an INFRA-ERROR
    )
    http.note_answers(result.samples)

    # No answer at all is "the color is down", not "the color is slow": the plugin reports it
    # as INFRA-ERROR.
    if not any(sample.status is not None for sample in result.samples):
        raise InfrastructureError(f"GET {url}: no request was answered ({first_error(result)})")

    violations = evaluate_thresholds(endpoint, settings.checks.thresholds[endpoint], result)
    problems = [str(v) for v in violations]
    if len(result.failed) == result.count:
        # percentiles are over successful requests: with none, they would read 0 ms and pass
        problems.append(f"{endpoint}: no request succeeded, latencies cannot be measured")
    if problems:
        lines = [
            f"{environment.name} GET {url}: thresholds missed",
            *(f"  {p}" for p in problems),
            f"  measured: {summary(result)}",
        ]
        if result.failed:
            lines.append(f"  first error: {first_error(result)}")
        pytest.fail("\n".join(lines), pytrace=False)
