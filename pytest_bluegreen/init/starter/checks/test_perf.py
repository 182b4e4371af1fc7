"""Each color under a bounded load, judged by k6-style thresholds (not part of ``-m quick``).

    pytest checks --env green -m perf

One check per endpoint of ``[thresholds]`` in bluegreen.toml, e.g.

    [thresholds]
    "/health" = ["p(95)<300", "rate<0.01"]

sending ``perf_requests`` keep-alive GETs (at most ``perf_duration`` seconds) to the color's
own URL. While the table is empty, the health path is measured and reported, and the check
skips: it judges nothing until you set the limits.
"""

from __future__ import annotations

import pytest

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "endpoint" in metafunc.fixturenames:
        settings = settings_of(metafunc.config)
        endpoints = list(settings.checks.thresholds) or [settings.switching.verify_path]
        metafunc.parametrize("endpoint", endpoints, ids=endpoints)


def summary(result: LoadResult) -> str:
    """``p50=1.2ms p95=2.0ms p99=3.1ms, 850 req/s, errors=0/400``"""
    latency = " ".join(f"p{p}={result.latency_ms(p):.1f}ms" for p in (50, 95, 99))
    return f"{latency}, {result.throughput:.0f} req/s, errors={len(result.failed)}/{result.count}"


def test_latency_thresholds(
    endpoint: str, environment: ColorEnvironment, bluegreen_settings: Settings, http: ColorSession
) -> None:
    checks, topology = bluegreen_settings.checks, bluegreen_settings.topology
    url = environment.api_url + endpoint
    result = run_load(
        url,
        total=checks.perf_requests,
        duration=checks.perf_duration,
        concurrency=checks.perf_concurrency,
        kinds=("keepalive-get",),
        timeout=checks.http_timeout,
        color_header=topology.color_header,
        version_header=topology.version_header,
        server_header=topology.server_header,
    )
    http.note_answers(result.samples)  # which build answered, for the gate
    first = result.failed[0] if result.failed else None
    if not any(sample.status is not None for sample in result.samples):  # down, not slow
        raise InfrastructureError(
            f"GET {url}: no request was answered ({first.error if first else 'none sent'})"
        )
    assert first is None or len(result.failed) < result.count, (
        f"{environment.name} GET {url}: no request succeeded (first: HTTP {first.status})"
    )
    limits = checks.thresholds.get(endpoint)
    if not limits:
        pytest.skip(
            f"{environment.name} GET {url}: {summary(result)}; no limits yet: set them in "
            "[thresholds] of bluegreen.toml"
        )
    problems = [str(v) for v in evaluate_thresholds(endpoint, limits, result)]
    if problems:
        pytest.fail(
            f"{environment.name} GET {url}: thresholds missed: {'; '.join(problems)} "
            f"(measured {summary(result)})",
            pytrace=False,
        )
