"""Relative thresholds: a color judged against the live color, side by side.

pytest checks --env green -m perf

For each endpoint of the ``[compare]`` table, e.g.

    [compare]
    "/api/items" = ["p(95) <= live * 1.10", "rate <= live + 0.005"]

the color is loaded side by side with the live color (``compare_baseline``), the requests
interleaved between the two (``compare_requests`` each, same concurrency), and each rule is
judged with statistics on the statistic it names (a confidence interval for the difference of
the two percentiles for ``p(N)``/``med``, of the means for ``avg``, of the error rates for
``rate``; the ``stats`` extra): it fails only when the color is worse beyond the tolerance at
``compare_confidence``; too few samples of the color is
inconclusive (a failure of the check that says how many are needed); too few successful
answers from the live color skips the check (a failing live color is no yardstick, and must
not block the build that fixes it). The table of both colors' p50/p95/p99,
every rule's decision and a plot of both latency distributions go on the Allure result.

Marked ``perf``, not ``quick``, like the absolute thresholds in test_perf.py.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.contrib.services import tls_ca_of
from pytest_bluegreen.testing import (
    InfrastructureError,
    Settings,
    measure_side_by_side,
    settings_of,
)

pytestmark = pytest.mark.perf


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per endpoint of the compare table (the plugin adds the color)."""
    if "compared_endpoint" in metafunc.fixturenames:
        endpoints = list(settings_of(metafunc.config).checks.compare)
        if endpoints:
            metafunc.parametrize("compared_endpoint", endpoints, ids=endpoints)
        else:
            skip = pytest.mark.skip(reason="no [compare] rules in the settings")
            metafunc.parametrize(
                "compared_endpoint", [pytest.param("", marks=skip)], ids=["no-rules"]
            )


@pytest.mark.usefixtures("http")
def test_compared_with_the_live_color(
    compared_endpoint: str,
    color: str,
    baseline_color: str | None,
    bluegreen_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    settings = bluegreen_settings
    if baseline_color is None:
        pytest.skip("no single color takes traffic: nothing to compare with")
    if baseline_color == color:
        pytest.skip(f"{color} is the baseline (live) color: nothing to compare it with")
    colors, checks = settings.topology.color, settings.checks
    result = measure_side_by_side(
        compared_endpoint,
        checks.compare[compared_endpoint],
        ((color, colors[color].api_url), (baseline_color, colors[baseline_color].api_url)),
        requests=checks.compare_requests,
        duration=checks.perf_duration * 2,  # two colors' worth of requests
        concurrency=checks.perf_concurrency,
        timeout=checks.http_timeout,
        color_header=settings.topology.color_header,
        confidence=checks.compare_confidence,
        min_samples=checks.compare_min_samples,
        tls_ca=tls_ca_of(settings),  # an https:// color: a failed handshake is an INFRA-ERROR
    )
    request.node.user_properties.append(("bluegreen_compare", result.as_dict()))  # JUnit XML
    result.attach(request.config)
    print(result.text())  # shown with -rP; the Allure result has it too
    if not result.new.total or not result.live.total:
        raise InfrastructureError(f"{compared_endpoint}: no request was answered")
    live_ok = result.live.total - result.live.errors
    if live_ok < checks.compare_min_samples <= result.new.total - result.new.errors:
        # a failing live color is no yardstick, and must not block the build that fixes it
        pytest.skip(
            f"the live color {baseline_color} answered {live_ok} of {result.live.total} "
            f"requests to {compared_endpoint} successfully: too few to compare {color} with "
            f"(needs {checks.compare_min_samples}); the other checks judge {color}"
        )
    if result.failed or result.inconclusive:
        worse = "is worse than" if result.failed else "could not be judged against"
        lines = [
            f"{color} {worse} {baseline_color} on {compared_endpoint}:",
            *(f"  {c.line()}" for c in (*result.failed, *result.inconclusive)),
            *(f"  {line}" for line in result.table().splitlines()),
        ]
        pytest.fail("\n".join(lines), pytrace=False)
