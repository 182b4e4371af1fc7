"""Prometheus for real: one Prometheus for this module (a free port, its data in a temporary
folder, scraping every second) in front of a real HAProxy (the shipped configuration with its
exporter) and the two test backends (their own /metrics, labelled with their color), loading
the shipped alert rules. On it: the client, the shipped checks (checks/test_prometheus.py: targets,
PromQL checks, Prometheus signals compared between the colors), the bake's Prometheus signals,
and one alert made to fire.

The green backend answered every 20th of about 200 API calls with HTTP 500 (``traffic``: the 5%
build the plain checks miss when their few requests happen to succeed); blue answered all of
them. Every test leaves the module as it found it (HAProxy with blue live, every target up, no
routed request): they pass alone and in any order.
"""

from __future__ import annotations

import json
import math
import re
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.judge.bake import Bake, BakePlan, PostResult
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.judge.prometheus import Prometheus, PrometheusUnreachable, PromQLError
from pytest_bluegreen.judge.queries import parse_checks_table
from pytest_bluegreen.local.prometheus import LocalPrometheus
from pytest_bluegreen.process.signals import NoSignals
from tests.support.gate import CHECKS, outcomes, output
from tests.support.infra import require_infra
from tests.support.prometheus import (
    Exporter,
    Job,
    api,
    config,
    exporter,
    fast_rules,
    firing,
    local,
    prometheus_binary,
    wait_scraped,
)
from tests.support.receiver import Answer, Receiver
from tests.support.stack import ROOT, Backend, Stack, StackFactory, free_ports, wait_for

PROMETHEUS_CHECK = ROOT / "checks" / "test_prometheus.py"
# the share of 5xx answers of a color's API servers (switched and direct) over 5 minutes
ERROR_RATIO = (
    'sum(increase(haproxy_server_http_responses_total{server=~"{color}-api.*",code="5xx"}[5m]))'
    ' / sum(increase(haproxy_server_http_responses_total{server=~"{color}-api.*"}[5m]))'
)
# the same in the switched backend only, where the idle color gets no request: 0/0, NaN
SWITCHED_ERROR_RATIO = ERROR_RATIO.replace('server=~"{color}-api.*"', 'server="{color}-api"')


@dataclass(frozen=True)
class Monitored:
    stack: Stack
    prometheus: LocalPrometheus
    exporter: Exporter


@pytest.fixture(scope="module")
def monitored(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
    color_backends: tuple[Backend, Backend],
) -> Iterator[Monitored]:
    """HAProxy (blue live), the backends and an exporter of our own, scraped every second by
    a Prometheus that evaluates the shipped rules (``for:`` cut to 1 s) every second."""
    require_infra(
        pytestconfig,
        prometheus_binary() is not None,
        "prometheus is not installed (apt-get install prometheus)",
    )
    blue, green = color_backends
    blue.reset()
    green.reset()
    workdir = tmp_path_factory.mktemp("prometheus")
    factory = StackFactory(workdir, tls_cert, blue, green)
    with exporter() as extra, ExitStack() as cleanup:
        cleanup.callback(green.reset)
        cleanup.callback(blue.reset)
        cleanup.callback(factory.close)
        stack = factory("haproxy")
        jobs = [
            Job("haproxy", {f"127.0.0.1:{stack.ports['stats']}": {}}),
            Job(
                "backend",
                {
                    f"127.0.0.1:{blue.port}": {"color": "blue"},
                    f"127.0.0.1:{green.port}": {"color": "green"},
                },
            ),
            Job("exporter", {extra.address: {}}),
        ]
        prometheus = local(workdir / "prometheus", config(jobs, fast_rules(workdir / "rules")))
        cleanup.callback(prometheus.stop)
        prometheus.start()
        wait_scraped(prometheus, jobs=len(jobs))
        yield Monitored(stack, prometheus, extra)


@pytest.fixture
def client(monitored: Monitored) -> Iterator[Prometheus]:
    with Prometheus(monitored.prometheus.url) as prometheus:
        yield prometheus


@dataclass(frozen=True)
class Traffic:
    green: list[int]  # the statuses green answered, in order (ends with a 500)
    blue: list[int]


def responses(client: Prometheus, server: str) -> float:
    result = client.query(f'sum(haproxy_server_http_responses_total{{server="{server}"}})')
    return result.single()


def wait_scraped_responses(client: Prometheus, server: str, stat: dict[str, str]) -> None:
    """Until Prometheus has the responses HAProxy's ``show stat`` counted for ``server``."""
    counted = sum(int(stat[f"hrsp_{c}"] or 0) for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))

    def scraped() -> bool:
        return responses(client, server) == counted

    wait_for(scraped, 10, f"Prometheus to scrape {server}'s {counted} responses", interval=0.2)


def wait_two_samples(client: Prometheus, server: str) -> None:
    """Until Prometheus holds two scrapes of ``server``'s counters within the last minute: a
    rate or increase over fewer is no series at all, over two with no request 0/0 (NaN). Right
    after Prometheus starts (this module's first test, in a random order) it has one."""

    def two() -> bool:
        series = f'haproxy_server_http_responses_total{{server="{server}",code="5xx"}}'
        result = client.query(f"count_over_time({series}[1m])")
        return bool(result.series) and result.single() >= 2

    wait_for(two, 15, f"Prometheus to scrape {server} twice", interval=0.2)


@pytest.fixture(scope="module")
def traffic(monitored: Monitored) -> Traffic:
    """About 200 API calls through each color's direct port, scraped: green's every 20th
    answered 500 (5%), none of blue's. Green answers every call again afterwards (what the
    tests judge is what Prometheus recorded), so the plain checks' calls succeed in any
    order."""
    stack = monitored.stack
    stack.green.control(error_every=20)
    try:
        with requests.Session() as http:
            http.trust_env = False
            green: list[int] = []
            while len(green) < 200 or green[-1] != 500:
                assert len(green) < 260, "green never answered 500"
                green.append(
                    http.get(f"{stack.direct_url('green')}/api/echo", timeout=5).status_code
                )
            blue = [
                http.get(f"{stack.direct_url('blue')}/api/echo", timeout=5).status_code
                for _ in range(200)
            ]
    finally:
        stack.green.reset()
    stats = {row.server: row.raw for row in stack.api().show_stat() if row.server}
    with Prometheus(monitored.prometheus.url) as client:
        for server in ("green-api-direct", "blue-api-direct"):
            wait_scraped_responses(client, server, stats[server])
    return Traffic(green, blue)


def settings_toml(monitored: Monitored, tables: str = "", **settings: Any) -> str:
    values = {"prometheus_url": monitored.prometheus.url, "verify_timeout": 2, **settings}
    return monitored.stack.settings_toml(**values) + tables


def run_checks(
    pytester: pytest.Pytester,
    monitored: Monitored,
    *args: str,
    tables: str = "",
    files: dict[str, str] | None = None,
    **settings: Any,
) -> pytest.RunResult:
    """The shipped checks (copies, in the test's folder) and ``files``, in-process."""
    pytester.makefile(".toml", bluegreen=settings_toml(monitored, tables, **settings))
    pytester.makepyfile(**(files or {"test_prometheus": PROMETHEUS_CHECK.read_text()}))
    return pytester.runpytest(
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", "-v", *args
    )


def checks_table(table: str, **queries: tuple[str, list[str]]) -> str:
    """``[table.name]`` sections: the query (a TOML literal string) and its thresholds (or,
    for [compare_prometheus], its rules)."""
    key = "rules" if table == "compare_prometheus" else "thresholds"
    return "".join(
        f"[{table}.{name}]\nquery = '''{query}'''\n{key} = {json.dumps(values)}\n"
        for name, (query, values) in queries.items()
    )


def statuses(result: pytest.RunResult) -> dict[str, str]:
    """test id (file::name[params]) -> its -v status word (PASSED, FAILED, SKIPPED,
    INFRA-ERROR)."""
    found = {}
    for line in result.outlines:
        match = re.match(r"^(\S+\.py::\S+) (PASSED|FAILED|SKIPPED|ERROR|INFRA-ERROR)", line)
        if match:
            found[match[1]] = match[2]
    return found


def param_id(name: str, *params: str) -> re.Pattern[str]:
    """``test_promql[green-error_ratio]`` with its parameters in either order."""
    either = "|".join(re.escape("-".join(p)) for p in (params, params[::-1]))
    return re.compile(rf"::{re.escape(name)}\[(?:{either})\]$")


def status_of(result: pytest.RunResult, name: str, *params: str) -> str:
    pattern = param_id(name, *params) if params else re.compile(rf"::{re.escape(name)}$")
    found = [s for test, s in statuses(result).items() if pattern.search(test)]
    assert len(found) == 1, f"{name}{list(params)}: {found} in\n{output(result)}"
    return found[0]


# --- the client ------------------------------------------------------------------------------


def test_the_client_asks_a_real_prometheus(monitored: Monitored, client: Prometheus) -> None:
    weights = client.query('haproxy_server_uweight{proxy="api_backend"}')
    assert weights.kind == "vector"
    assert {s.labels["server"]: s.values for s in weights.series} == {
        "blue-api": (100.0,),
        "green-api": (0.0,),
    }
    assert weights.series[0].labels["job"] == "haproxy"
    assert abs(weights.series[0].times[0] - time.time()) < 60  # the instant's time

    def blue_weights() -> tuple[float, ...]:
        start = time.time() - 3
        ranged = client.query_range(
            'haproxy_server_uweight{server="blue-api"}', start=start, end=time.time(), step=1
        )
        assert ranged.kind == "matrix"
        [series] = ranged.series
        # each point's time: the range's start and a whole number of steps after it
        assert len(series.times) == len(series.values)
        assert all(round(t - start, 3) == round(t - start) for t in series.times)
        assert list(series.times) == sorted(set(series.times))
        return series.values

    def two_points() -> tuple[float, ...] | None:
        points = blue_weights()
        return points if len(points) >= 2 else None

    points = wait_for(two_points, 10, "two points")
    assert set(points) == {100.0}
    nan = client.query("0/0")
    assert nan.kind == "scalar"
    assert math.isnan(nan.single())
    assert client.query('up{job="nothing"}').series == ()
    jobs = {t.job: t.health for t in client.targets()}
    assert jobs == {"haproxy": "up", "backend": "up", "exporter": "up"}
    with pytest.raises(PromQLError, match=r"Prometheus refused 'sum\(': bad_data: .*parse error"):
        client.query("sum(")


def test_a_prometheus_that_is_not_there(monitored: Monitored) -> None:
    [port] = free_ports(1)
    with (
        Prometheus(f"http://127.0.0.1:{port}", timeout=2) as nothing,
        pytest.raises(PrometheusUnreachable, match=f"Prometheus at http://127.0.0.1:{port} does"),
    ):
        nothing.query("up")
    stats = f"http://127.0.0.1:{monitored.stack.ports['stats']}"
    with (
        Prometheus(stats, timeout=2) as haproxy,
        pytest.raises(PrometheusUnreachable, match=f"no Prometheus API at {stats}: GET /api/v1"),
    ):
        haproxy.query("up")


def success(data: Any) -> Answer:
    body = json.dumps({"status": "success", "data": data}).encode()
    return Answer(200, {"Content-Type": "application/json"}, body=body)


@pytest.fixture
def impostor() -> Iterator[Receiver]:
    """Not Prometheus: an HTTP server on 127.0.0.1 that answers what each test gives it."""
    receiver = Receiver()
    yield receiver
    receiver.close()


ONE_VALUE = [{"metric": {}, "value": [1, "x"]}]
ANOTHER_SHAPE = [
    pytest.param(None, id="no-data"),
    pytest.param({}, id="no-result-type"),
    pytest.param({"resultType": "vector", "result": "up"}, id="result-not-a-list"),
    pytest.param({"resultType": "vector", "result": [{"metric": {}}]}, id="no-value"),
    pytest.param({"resultType": "vector", "result": ONE_VALUE}, id="value-not-a-number"),
    pytest.param({"resultType": "matrix", "result": [{"metric": 3}]}, id="labels-not-a-map"),
    pytest.param({"resultType": "scalar", "result": 1}, id="scalar-not-a-pair"),
]


@pytest.mark.parametrize("data", ANOTHER_SHAPE)
def test_an_answer_of_another_shape_is_no_prometheus(impostor: Receiver, data: Any) -> None:
    """A 200 with ``status: success`` whose data is not a query result (a proxy, another
    service): Prometheus cannot be read, an infrastructure error, not a crash of the check."""
    impostor.answers.extend([success(data)] * 2)
    client = Prometheus(impostor.url(""), timeout=2)
    expected = r"^no Prometheus API at .*: GET /api/v1/query answered data of another shape"
    with pytest.raises(PrometheusUnreachable, match=expected):
        client.query("up")
    with pytest.raises(PrometheusUnreachable, match="GET /api/v1/query_range answered"):
        client.query_range("up", start=1, end=2, step=1)
    client.close()
    paths = [r.path.split("?")[0] for r in impostor.received]
    assert paths == ["/api/v1/query", "/api/v1/query_range"]


@pytest.mark.parametrize(
    "data", [None, {"activeTargets": [1]}, {"activeTargets": [{"labels": []}]}], ids=str
)
def test_targets_of_another_shape_are_no_prometheus(impostor: Receiver, data: Any) -> None:
    impostor.answers.append(success(data))
    client = Prometheus(impostor.url(""), timeout=2)
    with pytest.raises(PrometheusUnreachable, match="GET /api/v1/targets answered"):
        client.targets()
    client.close()


@pytest.mark.parametrize(
    "times",
    [(math.nan, 2.0, 1.0), (1.0, math.inf, 1.0), (1.0, 2.0, math.nan)],
    ids=["start-nan", "end-inf", "step-nan"],
)
def test_a_range_that_is_no_number_is_refused_before_asking(
    impostor: Receiver, times: tuple[float, float, float]
) -> None:
    """NaN passes ``step <= 0`` and ``end < start`` alike; Prometheus' 400 would then be
    blamed on the query as a PromQL error."""
    start, end, step = times
    client = Prometheus(impostor.url(""), timeout=2)
    with pytest.raises(ValueError, match=r"^a range needs finite numbers, step > 0"):
        client.query_range("up", start=start, end=end, step=step)
    with pytest.raises(ValueError, match=r"^a query's time must be a number of seconds"):
        client.query("up", at=math.nan)
    client.close()
    assert impostor.received == []


def test_an_unreachable_prometheus_chains_no_password() -> None:
    """requests' own error for a URL it cannot use names the URL with its password: the
    error said is masked, and it is not chained (a traceback would print it)."""
    client = Prometheus("http://prom:s3cret-pw@127.0.0.1:99999", timeout=2)
    with pytest.raises(PrometheusUnreachable) as raised:
        client.query("up")
    client.close()
    shown = "".join(traceback.format_exception(raised.value))
    assert "s3cret-pw" not in shown
    assert "http://***@127.0.0.1:99999" in shown
    assert raised.value.__cause__ is None


# --- the shipped checks ------------------------------------------------------------------------


def test_the_target_checks_pass_while_everything_is_scraped(
    pytester: pytest.Pytester, monitored: Monitored
) -> None:
    result = run_checks(pytester, monitored, "--env", "all")
    assert result.ret == 0, output(result)
    assert status_of(result, "test_prometheus_scrapes_its_targets") == "PASSED"
    for color in ("blue", "green"):
        assert status_of(result, "test_prometheus_scrapes_the_color", color) == "PASSED"
    # no [prometheus_checks]: the PromQL checks say so
    assert status_of(result, "test_promql", "no-checks", "blue") == "SKIPPED"
    assert status_of(result, "test_promql_shared", "no-checks") == "SKIPPED"


def test_the_target_checks_wait_for_a_prometheus_just_started(
    pytester: pytest.Pytester, monitored: Monitored, tmp_path: Path
) -> None:
    """Prometheus publishes its discovered targets up to 5 s after it is ready: right after a
    start (the local stack's, a restart) the target list is empty, and the checks failed
    "scrapes nothing" (a CI run of the workflow test). They wait for every scrape pool."""
    jobs = [
        Job("backend", {f"127.0.0.1:{monitored.stack.blue.port}": {"color": "blue"}}),
        Job("exporter", {monitored.exporter.address: {}}),
    ]
    fresh = local(tmp_path / "fresh", config(jobs))
    try:
        fresh.start()  # ready: answers queries, has found no target yet
        result = run_checks(
            pytester,
            monitored,
            "--env",
            "blue",
            "-k",
            "scrapes",
            prometheus_url=fresh.url,
            verify_timeout=15,
        )
    finally:
        fresh.stop()
    assert result.ret == 0, output(result)
    assert status_of(result, "test_prometheus_scrapes_its_targets") == "PASSED"
    assert status_of(result, "test_prometheus_scrapes_the_color", "blue") == "PASSED"


def down_jobs(prometheus: LocalPrometheus) -> set[str]:
    targets = api(prometheus, "targets", state="active")["activeTargets"]
    return {t["labels"]["job"] for t in targets if t["health"] == "down"}


def test_a_target_down_fails_its_check(pytester: pytest.Pytester, monitored: Monitored) -> None:
    stack = monitored.stack
    stack.green.control(metrics_status=500)
    monitored.exporter.answer(503)
    try:
        wait_for(
            lambda: down_jobs(monitored.prometheus) == {"exporter", "backend"},
            10,
            "Prometheus to see the exporter and green's /metrics down",
            interval=0.2,
        )
        result = run_checks(pytester, monitored, "--env", "all")
    finally:
        stack.green.control(metrics_status=200)
        monitored.exporter.answer(200)
        wait_for(
            lambda: not down_jobs(monitored.prometheus),
            10,
            "Prometheus to see every target up again",
            interval=0.2,
        )
    assert result.ret == 1, output(result)
    assert status_of(result, "test_prometheus_scrapes_its_targets") == "FAILED"
    assert status_of(result, "test_prometheus_scrapes_the_color", "green") == "FAILED"
    assert status_of(result, "test_prometheus_scrapes_the_color", "blue") == "PASSED"
    text = output(result)
    address = monitored.exporter.address
    assert f"job exporter, http://{address}/metrics: down (server returned HTTP status 503" in text
    assert f"job backend, http://127.0.0.1:{stack.green.port}/metrics: down (server returned " in (
        text
    )


def test_a_promql_check_catches_the_5_percent_the_plain_checks_miss(
    pytester: pytest.Pytester, monitored: Monitored, traffic: Traffic
) -> None:
    assert traffic.green.count(500) == len(traffic.green) // 20  # 5%, the last one included
    assert set(traffic.blue) == {200}
    tables = checks_table("prometheus_checks", error_ratio=(ERROR_RATIO, ["value<0.01"]))
    files = {"test_checks": CHECKS, "test_prometheus": PROMETHEUS_CHECK.read_text()}
    gate = ("--env", "green", "--switch", "--dry-run")
    plain = run_checks(pytester, monitored, *gate, "test_checks.py", tables=tables, files=files)
    assert plain.ret == 0, output(plain)  # the plain checks alone would switch
    assert plain.parseoutcomes()["passed"] == 3
    plain.stdout.fnmatch_lines(["*bluegreen: SWITCH: dry run: would switch*"])

    result = run_checks(pytester, monitored, *gate, tables=tables, files=files)
    assert result.ret == 1, output(result)
    assert status_of(result, "test_api", "green") == "PASSED"  # its call succeeded
    assert status_of(result, "test_promql", "green", "error_ratio") == "FAILED"
    result.stdout.fnmatch_lines(
        [
            "*green: error_ratio misses its thresholds",
            "error_ratio: failed: value=0.0* missed a threshold",
            '  query: sum(increase(haproxy_server_http_responses_total{server=~"green-api.*",*',
            "  value=0.0* misses threshold 'value<0.01'",
        ]
    )
    ratio = float(re.search(r"  value=(0\.\d+) misses", output(result))[1])  # type: ignore[index]
    assert 0.04 < ratio < 0.051  # 10 of about 200
    result.stdout.fnmatch_lines(["*bluegreen: FAILED: *"])


def test_an_empty_result_or_nan_is_inconclusive(
    pytester: pytest.Pytester, monitored: Monitored
) -> None:
    tables = checks_table(
        "prometheus_checks",
        missing=('haproxy_server_uweight{server="{color}-nonexistent"}', ["value<1"]),
        switched_error_ratio=(SWITCHED_ERROR_RATIO, ["value<0.01"]),
        absent=("haproxy_process_nothing_like_this", ["value<1"]),
        haproxy_up=('up{job="haproxy"}', ["value==1"]),
    )
    with Prometheus(monitored.prometheus.url) as client:
        wait_two_samples(client, "green-api")
    result = run_checks(pytester, monitored, "--env", "green", "-k", "promql", tables=tables)
    assert result.ret == 1, output(result)
    assert status_of(result, "test_promql", "green", "missing") == "FAILED"
    assert status_of(result, "test_promql", "green", "switched_error_ratio") == "FAILED"
    assert status_of(result, "test_promql_shared", "absent") == "FAILED"
    assert status_of(result, "test_promql_shared", "haproxy_up") == "PASSED"
    result.stdout.fnmatch_lines(
        [
            "*green: missing could not be judged (inconclusive)",
            "missing: inconclusive: the query returned no series (an empty result is not zero)",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "*green: switched_error_ratio could not be judged (inconclusive)",
            "switched_error_ratio: inconclusive: value measured NaN (no data, e.g. a rate "
            "over no request): not zero, not judged",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(["*absent could not be judged (inconclusive)"])


def test_a_prometheus_that_is_down_is_an_infra_error(
    pytester: pytest.Pytester, monitored: Monitored
) -> None:
    [port] = free_ports(1)
    tables = checks_table("prometheus_checks", error_ratio=(ERROR_RATIO, ["value<0.01"]))
    result = run_checks(
        pytester,
        monitored,
        "--env",
        "green",
        "--switch",
        "--dry-run",
        tables=tables,
        prometheus_url=f"http://127.0.0.1:{port}",
        verify_timeout=0.5,
    )
    found = {test: status for test, status in statuses(result).items() if status != "SKIPPED"}
    assert list(found.values()) == ["INFRA-ERROR"] * 3, output(result)
    text = output(result)
    # Prometheus is what does not answer, not green
    assert text.count("INFRA-ERROR (prometheus unreachable)") == 6  # -v lines and summary
    assert "green unreachable" not in text
    assert f"PrometheusUnreachable: Prometheus at http://127.0.0.1:{port} does not answer" in text
    # never a pass: the gate does not switch; the checks fail on blue too (blame), so it is
    # not the build: inconclusive
    assert result.ret == 6, output(result)
    assert "would switch" not in text
    result.stdout.fnmatch_lines(
        [
            "bluegreen: INCONCLUSIVE: inconclusive: environmental: 2 failed check(s) of green "
            "fail on blue too *",
            "bluegreen: traffic stays on blue; nothing rolled back",
        ],
        consecutive=False,
    )


# --- the comparison ----------------------------------------------------------------------------


def test_a_prometheus_signal_compared_with_the_live_color(
    pytester: pytest.Pytester, monitored: Monitored, traffic: Traffic
) -> None:
    tables = checks_table(
        "compare_prometheus",
        error_ratio=(ERROR_RATIO, ["value <= live + 0.01"]),
        switched_error_ratio=(SWITCHED_ERROR_RATIO, ["value <= live + 0.01"]),
        weight=('max(haproxy_server_uweight{server="{color}-api"})', ["value <= live"]),
    )
    result = run_checks(pytester, monitored, "--env", "green", "-k", "compared", tables=tables)
    assert result.ret == 1, output(result)
    assert status_of(result, "test_promql_compared", "green", "error_ratio") == "FAILED"
    assert status_of(result, "test_promql_compared", "green", "switched_error_ratio") == "FAILED"
    assert status_of(result, "test_promql_compared", "green", "weight") == "PASSED"  # 0 <= 100
    result.stdout.fnmatch_lines(
        [
            "*green is worse than blue on error_ratio (Prometheus):",
            "  query: *",
            "  error_ratio value <= live + 0.01: new 0.0*, live 0 (tolerated 0.01); new 0.0* "
            "misses the tolerated 0.01: failed",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "*green could not be judged against blue on switched_error_ratio (Prometheus):",
            "  query: *",
            "  switched_error_ratio value <= live + 0.01: new n/a, live n/a (tolerated n/a); "
            "no value for the new and the live color (an empty result or NaN is not zero): "
            "inconclusive",
        ],
        consecutive=True,
    )


# --- the bake ----------------------------------------------------------------------------------


def bake(
    monitored: Monitored, client: Prometheus, query: str, threshold: str, seconds: float = 1.0
) -> Bake:
    """0.5 s intervals of green's bake, judged by one Prometheus query only."""
    [check] = parse_checks_table(
        {"signal": {"query": query, "thresholds": [threshold]}},
        placeholders=("color", "interval"),
        ranges=False,
    ).values()
    plan = BakePlan(
        seconds=seconds,
        interval=0.5,
        failure_limit=0,
        consecutive_successes=0,
        min_requests=0,
        thresholds=(),
        prometheus=(check,),
    )
    return Bake(
        plan,
        monitored.stack.haproxies(),
        [ServerRef("api_backend", "green-api")],
        PostResult,
        signals=NoSignals(),
        color="green",
        prometheus=client,
    )


def test_a_prometheus_signal_fails_the_bake(
    monitored: Monitored, client: Prometheus, traffic: Traffic
) -> None:
    errors = (
        'sum(increase(haproxy_server_http_responses_total{server=~"{color}-api.*",code="5xx"}[5m]))'
    )
    result = bake(monitored, client, errors, "value<1").run()
    assert result.judgement is Judgement.FAILED
    [interval] = result.intervals
    assert interval.reason.startswith("prometheus signal: value=")
    assert interval.reason.endswith(" missed a threshold")
    assert interval.line().endswith(f", prometheus 0/1 passed: failed ({interval.reason})")
    [judged] = interval.as_dict()["prometheus"]
    assert judged["decision"] == "failed"
    assert judged["query"].startswith(
        'sum(increase(haproxy_server_http_responses_total{server=~"green-'
    )
    assert judged["series"]["{}"]["value<1"] >= 9  # green's 500s of the last 5 minutes


def test_a_prometheus_signal_that_cannot_judge_makes_the_bake_inconclusive(
    monitored: Monitored, client: Prometheus
) -> None:
    # green takes no routed request: its 5xx ratio in the switched backend is 0/0
    ratio = (
        'sum(rate(haproxy_server_http_responses_total{server="{color}-api",code="5xx"}[WINDOW]))'
        ' / sum(rate(haproxy_server_http_responses_total{server="{color}-api"}[WINDOW]))'
    )
    wait_two_samples(client, "green-api")
    nan = bake(monitored, client, ratio.replace("WINDOW", "1m"), "value<0.01").run()
    assert nan.judgement is Judgement.INCONCLUSIVE
    assert [i.judgement for i in nan.intervals] == [Judgement.INCONCLUSIVE] * 2
    assert "measured NaN" in nan.intervals[0].reason
    # a window of one 0.5 s interval holds no scrape (every second): no series at all
    empty = bake(monitored, client, ratio.replace("WINDOW", "{interval}"), "value<0.01", 0.5)
    [interval] = empty.run().intervals
    assert interval.judgement is Judgement.INCONCLUSIVE
    assert interval.reason == (
        "prometheus signal: the query returned no series (an empty result is not zero)"
    )
    assert interval.as_dict()["prometheus"][0]["query"].endswith('server="green-api"}[500ms]))')

    [port] = free_ports(1)
    with Prometheus(f"http://127.0.0.1:{port}", timeout=1) as down:
        [unreachable] = bake(monitored, down, "up", "value==1", 0.5).run().intervals
    assert unreachable.judgement is Judgement.INCONCLUSIVE
    assert f"Prometheus at http://127.0.0.1:{port} does not answer" in unreachable.reason


# --- an alert rule, evaluated for real ---------------------------------------------------------


def test_the_live_color_down_alert_fires(monitored: Monitored) -> None:
    stack, prometheus = monitored.stack, monitored.prometheus
    assert firing(prometheus, "BluegreenLiveColorDown") == []
    # blue's API and frontend servers (the same backend here); not its direct one, not green
    expected = [("api_backend", "blue-api"), ("frontend_backend", "blue-frontend")]

    def servers(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((a["labels"]["proxy"], a["labels"]["server"]) for a in alerts)

    def both_firing() -> list[dict[str, Any]] | None:
        # HAProxy checks each server on its own: one goes DOWN a check before the other, and a
        # scrape between them fires one alert first
        alerts = firing(prometheus, "BluegreenLiveColorDown")
        return alerts if set(expected) <= set(servers(alerts)) else None

    stack.blue.control(health_status=500)  # blue takes the traffic
    try:
        stack.wait_down("blue")
        alerts = wait_for(both_firing, 20, "BluegreenLiveColorDown to fire", interval=0.2)
    finally:
        stack.blue.reset()
    assert servers(alerts) == expected
    [api] = [a for a in alerts if a["labels"]["proxy"] == "api_backend"]
    assert api["labels"] == {
        "alertname": "BluegreenLiveColorDown",
        "severity": "critical",
        "color": "blue",
        "job": "haproxy",
        "instance": f"127.0.0.1:{stack.ports['stats']}",
        "proxy": "api_backend",
        "server": "blue-api",
    }
    assert (
        api["annotations"]["summary"] == "blue is live and DOWN in HAProxy (api_backend/blue-api)"
    )
    stack.wait_up("blue")
    wait_for(
        lambda: not firing(prometheus, "BluegreenLiveColorDown"),
        20,
        "BluegreenLiveColorDown to resolve",
        interval=0.2,
    )


# --- the gate's bake with a Prometheus signal ---------------------------------------------------

POST = """

@pytest.mark.post
def test_the_live_color_answers(routed_http):
    assert routed_http.get("/health").status_code == 200
"""


def test_the_gate_switches_back_when_a_prometheus_signal_fails_the_bake(
    pytester: pytest.Pytester, monitored: Monitored, traffic: Traffic, tmp_path: Path
) -> None:
    """The gate moves traffic on an HAProxy of its own (Prometheus would remember routed
    requests on the module's for minutes); the signal is green's 5xx Prometheus recorded."""
    errors = (
        'sum(increase(haproxy_server_http_responses_total{server=~"{color}-api.*",code="5xx"}[5m]))'
    )
    tables = "[bake_thresholds]\nhaproxy = []\n" + checks_table(
        "bake_prometheus", errors=(errors, ["value<1"])
    )
    module = monitored.stack
    factory = StackFactory(tmp_path, module.cert, module.blue, module.green)
    try:
        own = factory("gate-haproxy")
        settings = own.settings_toml(
            prometheus_url=monitored.prometheus.url,
            verify_timeout=2,
            bake_interval=0.5,
            scale_down_delay=0,
        )
        pytester.makefile(".toml", bluegreen=settings + tables)
        pytester.makepyfile(test_checks=CHECKS + POST)
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--env", "green", "--switch", "--bake", "1", timeout=120
        )
        served = own.served_color()
        recorded = outcomes(own)
    finally:
        factory.close()
    assert result.ret == 11, output(result)
    result.stdout.fnmatch_lines(
        [
            "*SWITCH: switched blue -> green*",
            "*bluegreen: bake 1/2: post 1/1 passed, 5xx 0/*, eresp 0, prometheus 0/1 passed: "
            "failed (prometheus errors: value=* missed a threshold)",
            "*rolled back green -> blue: bake failed: interval 1/2 failed: prometheus errors*",
        ],
        consecutive=False,
    )
    assert served == "blue"
    assert recorded == ["switched", "rolled-back"]
