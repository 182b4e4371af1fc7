"""Prometheus: it is up and scrapes what it should, and the PromQL checks of the settings.

pytest checks --env green

- ``test_prometheus_scrapes_its_targets`` (``shared``): Prometheus (``prometheus_url``)
  answers and every target that is not a color's (HAProxy's exporter, ...) is up;
- ``test_prometheus_scrapes_the_color``: the targets labelled ``color="<color>"`` (each color's
  own ``/metrics``, see monitoring/prometheus.yml) are up; none labelled so: skipped;
- ``test_promql`` (per color) and ``test_promql_shared`` (``shared``): each entry of the
  ``[prometheus_checks]`` table, e.g.

      [prometheus_checks.error_rate]
      query = '''
        sum(rate(haproxy_server_http_responses_total{server=~"{color}-api.*",code="5xx"}[1m]))
        / sum(rate(haproxy_server_http_responses_total{server=~"{color}-api.*"}[1m]))'''
      thresholds = ["value<0.01"]

  judged against its k6-style thresholds (``value``, ``avg``, ``med``, ``min``, ``max``,
  ``p(N)``; ``range = "5m"`` makes it a range query). A query with ``{color}`` runs once per
  color, one without it once (``shared``). Every series must meet every threshold. A result
  with no series, or NaN (a rate over no request), *could not be judged*: the check fails
  saying so, never passes (an empty result is not zero). Prometheus not answering is an
  INFRA-ERROR, never a pass.

- ``test_promql_compared`` (per color): each entry of ``[compare_prometheus]``, the color's
  number judged against the live color's (``compare_baseline``), asked at the same instant:

      [compare_prometheus.error_ratio]
      query = '''
        sum(rate(haproxy_server_http_responses_total{server=~"{color}-api.*",code="5xx"}[5m]))
        / sum(rate(haproxy_server_http_responses_total{server=~"{color}-api.*"}[5m]))'''
      rules = ["value <= live + 0.005"]

  No statistics (Prometheus already aggregated; the tolerance is the margin for noise); no
  series or NaN for either color could not be judged: the check fails saying so. The window
  must hold traffic of both colors (the live one's users; the new one's checks and loads).

A target just re-created (a color deployed a moment ago) may show its last failed scrape for
one scrape interval: the target checks wait up to ``verify_timeout`` for it to come up.
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.testing import (
    CompareDecision,
    Prometheus,
    PrometheusTarget,
    Settings,
    eventually,
    settings_of,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per [prometheus_checks] entry (those with {color} where the plugin adds the
    color, the others in the shared test) and per [compare_prometheus] entry."""
    settings = settings_of(metafunc.config)
    if "promql_check" in metafunc.fixturenames:
        per_color = "color" in metafunc.fixturenames
        checks = settings.prometheus.checks
        names = [name for name, check in checks.items() if check.per_color == per_color]
        which = "with" if per_color else "without"
        empty = f"no [prometheus_checks] query {which} {{color}}"
        parametrize(metafunc, "promql_check", names, empty)
    if "compared_signal" in metafunc.fixturenames:
        names = list(settings.checks.compare_prometheus)
        parametrize(metafunc, "compared_signal", names, "no [compare_prometheus] rules")


def parametrize(metafunc: pytest.Metafunc, argument: str, names: list[str], empty: str) -> None:
    """The names, or one test skipped with the reason ``empty``."""
    if names:
        metafunc.parametrize(argument, names, ids=names)
    else:
        skip = pytest.mark.skip(reason=empty)
        metafunc.parametrize(argument, [pytest.param("", marks=skip)], ids=["no-checks"])


def targets_up(
    prometheus: Prometheus, mine: str, wanted: list[PrometheusTarget], timeout: float
) -> None:
    """Wait up to ``timeout`` for ``wanted`` (re-read each time) to be up; fail naming the
    ones that are not."""

    def all_up() -> None:
        current = {(t.job, t.url): t for t in prometheus.targets()}
        down = [current.get((t.job, t.url), t) for t in wanted]
        down = [t for t in down if t.health != "up"]
        assert not down, f"Prometheus at {prometheus.url} does not scrape {mine}:\n" + "\n".join(
            f"  {t.line()}" for t in down
        )

    eventually(all_up, timeout=timeout, interval=0.5)


@pytest.mark.shared
def test_prometheus_scrapes_its_targets(
    prometheus: Prometheus, bluegreen_settings: Settings
) -> None:
    timeout = bluegreen_settings.switching.verify_timeout
    targets = prometheus.targets(settle=timeout)  # a Prometheus just started has found none yet
    assert targets, (
        f"Prometheus at {prometheus.url} has no active target: it scrapes nothing "
        "(its scrape_configs)"
    )
    colors = set(bluegreen_settings.topology.colors)
    own = [t for t in targets if t.labels.get("color") not in colors]
    targets_up(prometheus, "every target", own, timeout)


def test_prometheus_scrapes_the_color(
    color: str, prometheus: Prometheus, bluegreen_settings: Settings
) -> None:
    timeout = bluegreen_settings.switching.verify_timeout
    mine = [t for t in prometheus.targets(settle=timeout) if t.labels.get("color") == color]
    if not mine:
        pytest.skip(
            f'Prometheus has no target labelled color="{color}": label the color\'s scrape '
            "targets so they are checked"
        )
    targets_up(prometheus, color, mine, timeout)


def run_check(
    name: str,
    color: str | None,
    prometheus: Prometheus,
    settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    """Run one [prometheus_checks] entry; fail unless it passed (inconclusive included)."""
    result = settings.prometheus.checks[name].run(prometheus, color=color)
    request.node.user_properties.append(("bluegreen_promql", result.as_dict()))  # JUnit XML
    if result.decision is CompareDecision.PASSED:
        print(result.text())  # shown with -rP
    who = f"{color}: " if color else ""
    if result.decision is CompareDecision.FAILED:
        pytest.fail(f"{who}{name} misses its thresholds\n{result.text()}", pytrace=False)
    if result.decision is CompareDecision.INCONCLUSIVE:
        pytest.fail(
            f"{who}{name} could not be judged (inconclusive)\n{result.text()}", pytrace=False
        )


def test_promql(
    promql_check: str,
    color: str,
    prometheus: Prometheus,
    bluegreen_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    run_check(promql_check, color, prometheus, bluegreen_settings, request)


@pytest.mark.shared
def test_promql_shared(
    promql_check: str,
    prometheus: Prometheus,
    bluegreen_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    run_check(promql_check, None, prometheus, bluegreen_settings, request)


def test_promql_compared(
    compared_signal: str,
    color: str,
    baseline_color: str | None,
    prometheus: Prometheus,
    request: pytest.FixtureRequest,
) -> None:
    if baseline_color is None:
        pytest.skip("no single color takes traffic: nothing to compare with")
    if baseline_color == color:
        pytest.skip(f"{color} is the baseline (live) color: nothing to compare it with")
    signal = settings_of(request.config).checks.compare_prometheus[compared_signal]
    comparisons = signal.run(prometheus, color, baseline_color)
    request.node.user_properties.append(
        ("bluegreen_compare", [c.as_dict() for c in comparisons])  # JUnit XML
    )
    failed = [c for c in comparisons if c.decision is CompareDecision.FAILED]
    unsure = [c for c in comparisons if c.decision is CompareDecision.INCONCLUSIVE]
    if failed or unsure:
        worse = "is worse than" if failed else "could not be judged against"
        lines = [
            f"{color} {worse} {baseline_color} on {compared_signal} (Prometheus):",
            f"  query: {signal.query}",
            *(f"  {c.line()}" for c in (*failed, *unsure)),
        ]
        pytest.fail("\n".join(lines), pytrace=False)
    for comparison in comparisons:
        print(comparison.line())  # shown with -rP
