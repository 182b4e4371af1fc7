"""The shipped perf check (checks/test_perf.py), run for real against two backend processes.

The check runs where it lives (checks/, with that folder's conftest.py); each test writes a
bluegreen.toml, given with --bluegreen-config, whose colors' api_url point straight at the
backends (no HAProxy in between), and injects faults into them at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_bluegreen.judge.significance  # noqa: F401 - numpy loads once per process, before pytester's runs
from tests.support.stack import Backend, Stack, free_ports, make_cert

pytestmark = pytest.mark.timing  # each test judges a load's latencies

PERF_CHECK = Path(__file__).resolve().parents[2] / "checks" / "test_perf.py"
COMPARE_CHECK = PERF_CHECK.with_name("test_compare.py")
# a healthy color's threshold: far above a stall of the load's process on two busy cores (CI saw
# 375 ms at p95 on an unslowed backend), so a pass means healthy and a miss means slowed down
LIMIT = "p(95)<1500"
SLOW_MS = 1800  # the slowed color's delay: a clear miss of LIMIT
HEALTHY = {"/health": [LIMIT, "rate<0.01"], "/api/echo": [LIMIT, "rate<0.01"]}


@pytest.fixture
def backends(color_backends: tuple[Backend, Backend]) -> Iterator[dict[str, Backend]]:
    """blue and green without faults, before and after."""
    blue, green = color_backends
    for backend in (blue, green):
        backend.reset()
    yield {"blue": blue, "green": green}
    for backend in (blue, green):
        backend.reset()


def run_perf(
    pytester: pytest.Pytester,
    api_urls: dict[str, str],
    thresholds: dict[str, list[str]],
    *args: str,
    standalone: bool = False,
    compare: dict[str, list[str]] | None = None,
    check: Path = PERF_CHECK,
    **settings: Any,
) -> pytest.RunResult:
    """``pytest checks/test_perf.py -m perf --bluegreen-config ...``, in-process.

    ``standalone``: a copy of the file alone in the test's directory, as a user who takes just
    this check has it (no checks/conftest.py).
    """
    values: dict[str, Any] = {
        # never contacted without --switch; a path in the test's directory, so nothing real is
        "runtime_api": str(pytester.path / "no-haproxy.sock"),
        "verify_timeout": 2,  # how long checks/conftest.py's http waits for a color to answer
        "perf_requests": 24,
        "perf_duration": 10,
        "perf_concurrency": 4,
        **settings,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines.append("[thresholds]")
    lines += [f"{json.dumps(endpoint)} = {json.dumps(t)}" for endpoint, t in thresholds.items()]
    if compare:
        lines.append("[compare]")
        lines += [f"{json.dumps(endpoint)} = {json.dumps(r)}" for endpoint, r in compare.items()]
    for color, url in api_urls.items():
        lines += [f"[colors.{color}]", f"api_url = {json.dumps(url)}"]
        lines.append(f'servers = ["api_backend/{color}-api"]')
    config = pytester.makefile(".toml", bluegreen="\n".join(lines) + "\n")
    target = pytester.makepyfile(test_perf=check.read_text()) if standalone else check
    return pytester.runpytest(
        str(target),
        "--bluegreen-config",
        str(config),
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-m",
        "perf",
        "-v",
        *args,
    )


def urls(backends: dict[str, Backend]) -> dict[str, str]:
    return {color: backend.url for color, backend in backends.items()}


def text(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def status(result: pytest.RunResult, endpoint: str, color: str) -> str:
    """The -v status of ``test_latency_thresholds[<endpoint>-<color>]`` (either order)."""
    ids = f"(?:{re.escape(endpoint)}-{color}|{color}-{re.escape(endpoint)})"
    found = re.search(rf"test_perf\.py::test_latency_thresholds\[{ids}\] (\S+)", text(result))
    assert found is not None, f"no line for [{endpoint}-{color}] in:\n{text(result)}"
    return found[1]


def test_healthy_colors_pass_every_endpoint(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    result = run_perf(pytester, urls(backends), HEALTHY)
    result.assert_outcomes(passed=4)
    for color in ("blue", "green"):
        assert status(result, "/health", color) == "PASSED"
        assert status(result, "/api/echo", color) == "PASSED"


def test_slow_color_fails_with_measured_p95_against_threshold(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    backends["green"].control(delay_ms=SLOW_MS)
    result = run_perf(pytester, urls(backends), {"/health": [LIMIT, "rate<0.01"]}, perf_requests=4)
    result.assert_outcomes(passed=1, failed=1)  # blue is not slowed down
    out = text(result)
    assert status(result, "/health", "green") == "FAILED"
    found = re.search(r"/health: p\(95\)=(\d+(?:\.\d+)?)ms misses threshold 'p\(95\)<1500'", out)
    assert found is not None, out
    assert SLOW_MS <= float(found[1]) < SLOW_MS + 2000
    assert "rate=" not in out  # no error: only the latency threshold is missed
    measured = re.search(r"measured: p50=(\S+)ms p95=(\S+)ms p99=(\S+)ms, (\d+) req/s, (.*)", out)
    assert measured is not None, out
    assert float(measured[2]) == float(found[1])
    assert measured[5].startswith("errors=0/4 in ")
    assert "INFRA-ERROR" not in out


def test_failing_api_fails_on_the_error_rate(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    backends["green"].control(api_status=500)
    result = run_perf(
        pytester,
        urls(backends),
        HEALTHY,
        "--env",
        "green",
    )
    result.assert_outcomes(passed=1, failed=1)  # green's /health still answers 200
    assert status(result, "/health", "green") == "PASSED"
    assert status(result, "/api/echo", "green") == "FAILED"
    out = text(result)
    assert "/api/echo: rate=1 misses threshold 'rate<0.01'" in out
    assert "/api/echo: no request succeeded, latencies cannot be measured" in out
    assert "p50/p95/p99 n/a (no request succeeded)" in out
    assert "errors=24/24" in out
    assert "first error: HTTP 500" in out
    assert "INFRA-ERROR" not in out


def test_unreachable_color_is_an_infra_error(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    (closed,) = free_ports(1)  # bound and closed again: nothing listens there
    api_urls = {"blue": backends["blue"].url, "green": f"http://127.0.0.1:{closed}"}
    result = run_perf(pytester, api_urls, {"/health": [LIMIT, "rate<0.01"]})
    out = text(result)
    assert status(result, "/health", "blue") == "PASSED"
    # refused while checks/conftest.py's http waits for green to answer: an error in set-up
    assert status(result, "/health", "green") == "INFRA-ERROR"
    assert result.parseoutcomes().get("passed") == 1, out
    assert re.search(r"^INFRA-ERROR .*checks/test_perf.py::test_latency_thresholds", out, re.M)
    assert f"127.0.0.1:{closed}" in out
    assert "Connection refused" in out


def test_unreachable_during_the_load_is_an_infra_error(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    """Without the folder's waiting http (the check copied alone), the load itself finds no
    answer: the check says so as an infrastructure error, not as a missed threshold."""
    (closed,) = free_ports(1)
    api_urls = {"blue": backends["blue"].url, "green": f"http://127.0.0.1:{closed}"}
    result = run_perf(pytester, api_urls, {"/health": [LIMIT]}, "--env", "green", standalone=True)
    out = text(result)
    result.assert_outcomes(failed=1)
    assert status(result, "/health", "green") == "INFRA-ERROR"
    assert "INFRA-ERROR (green unreachable)" in out
    assert (
        f"InfrastructureError: GET http://127.0.0.1:{closed}/health: no request was answered "
        "(ConnectionRefusedError: [Errno 111] Connection refused)" in out
    )
    assert "misses threshold" not in out


# --- relative thresholds: the color judged against its baseline ---------------------------------

COMPARE = {"/api/echo": ["p(95) <= live * 1.10", "rate <= live + 0.005"]}


def compare_run(
    pytester: pytest.Pytester, backends: dict[str, Backend], **settings: Any
) -> pytest.RunResult:
    """green judged against blue (the baseline: no HAProxy here to say which is live)."""
    values: dict[str, Any] = {
        "compare_baseline": "blue",
        "compare_requests": 150,
        "perf_concurrency": 4,
        **settings,
    }
    return run_perf(
        pytester,
        urls(backends),
        {},
        "--env",
        "green",
        "-rA",
        compare=COMPARE,
        check=COMPARE_CHECK,
        **values,
    )


def base_latency(backends: dict[str, Backend], green_ms: float = 10.0) -> None:
    """Both colors ~10 ms with a lognormal spread, as a real service's latencies have."""
    backends["blue"].control(delay_ms=10, jitter=0.15)
    backends["green"].control(delay_ms=green_ms, jitter=0.15)


def test_a_color_like_its_baseline_passes_the_comparison(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    base_latency(backends)
    result = compare_run(pytester, backends)
    result.assert_outcomes(passed=1)
    out = text(result)
    assert re.search(r"green \(new\)\s+150\s+0\.00%\s+150", out), out  # the table, both rows
    assert re.search(r"blue \(live\)\s+150\s+0\.00%\s+150", out), out
    assert re.search(r"p\(95\) <= live \* 1\.10: new .*: passed", out), out


def test_300ms_slower_fails_with_the_shift_and_its_interval(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    base_latency(backends, green_ms=310)
    result = compare_run(pytester, backends, compare_requests=60)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "green is worse than blue on /api/echo:" in out
    found = re.search(r"p\(95\) <= live \* 1\.10: new (\d+\.?\d*) ms.*shift \+(\d+\.?\d*) ms "
                      r"\[95% \+(\d+\.?\d*), \+(\d+\.?\d*)\].*: failed", out)  # fmt: skip
    assert found is not None, out
    new_p95, shift, low, high = map(float, found.groups())
    assert new_p95 >= 300
    assert low <= shift <= high
    assert low > 200  # ~300 ms slower, less the 10% tolerance on ~10 ms


def test_a_ten_percent_tail_fails_on_the_p95_with_the_median_unchanged(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    """Issue 21: every 10th request of green 300 ms slower, its median that of blue. The p(95)
    rule is judged on the two p95s (a location shift, which follows the median, passed it)."""
    base_latency(backends)
    backends["green"].control(tail_ms=300, tail_every=10)
    result = compare_run(pytester, backends, compare_requests=300)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "green is worse than blue on /api/echo:" in out
    found = re.search(r"p\(95\) <= live \* 1\.10: new (\d+\.?\d*) ms.*shift \+(\d+\.?\d*) ms "
                      r"\[95% \+(\d+\.?\d*), \+(\d+\.?\d*)\].*: failed", out)  # fmt: skip
    assert found is not None, out
    new_p95, shift, low, high = map(float, found.groups())
    assert new_p95 >= 300
    assert low <= shift <= high
    assert low > 0  # the whole interval beyond the tolerance
    medians = re.findall(r"(?:green \(new\)|blue \(live\))\s+300\s+0\.00%\s+300\s+(\d+\.\d+)", out)
    assert len(medians) >= 2, out  # both rows (printed, and in the failure message)
    assert all(float(p50) < 50 for p50 in medians), medians  # the median did not move


def test_3_percent_slower_is_inside_the_tolerance(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    base_latency(backends, green_ms=10.3)
    result = compare_run(pytester, backends)
    result.assert_outcomes(passed=1)


def test_5_percent_errors_fail_on_the_rate(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    backends["green"].control(error_every=20)
    result = compare_run(pytester, backends, compare_requests=400)
    result.assert_outcomes(failed=1)
    out = text(result)
    found = re.search(r"rate <= live \+ 0\.005: new (\S+)%, live 0\.00%.*: failed", out)
    assert found is not None, out
    assert 4.0 <= float(found[1]) <= 6.0


def test_too_few_samples_is_inconclusive_and_says_how_many(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    result = compare_run(pytester, backends, compare_requests=20)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "green could not be judged against blue on /api/echo:" in out
    assert "needs at least 50 successful requests per color (new 20, live 20)" in out


def test_the_baseline_itself_is_not_compared(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    result = compare_run(pytester, backends, compare_baseline="green")
    result.assert_outcomes(skipped=1)
    assert "green is the baseline (live) color: nothing to compare it with" in text(result)


def test_a_failing_live_color_is_no_yardstick(
    pytester: pytest.Pytester, backends: dict[str, Backend]
) -> None:
    backends["blue"].control(error_every=1)  # the live color answers 500 to everything
    result = compare_run(pytester, backends)
    result.assert_outcomes(skipped=1)
    assert (
        "the live color blue answered 0 of 150 requests to /api/echo successfully: too few to "
        "compare green with (needs 50)" in text(result)
    )


# --- an https:// color: the checks' load and comparison over TLS, verified against tls_ca -------


# green's way through HAProxy and TLS is longer than blue's straight one: not what is judged here
TLS_COMPARE = {"/api/echo": ["p(95) <= live * 2 + 50", "rate <= live + 0.005"]}


def tls_urls(stack: Stack, backends: dict[str, Backend]) -> dict[str, str]:
    """green behind HAProxy's TLS frontend (the shipped https_in, which answers from blue, the
    live color), blue on its own plain port."""
    return {"blue": backends["blue"].url, "green": f"https://127.0.0.1:{stack.ports['https']}"}


def compare_status(result: pytest.RunResult) -> str:
    found = re.search(r"test_(?:compare|perf)\.py::test_compared_with_the_live_color\[\S+\] (\S+)",
                      text(result))  # fmt: skip
    assert found is not None, text(result)
    return found[1]


@pytest.mark.parametrize("check", [COMPARE_CHECK, PERF_CHECK], ids=["compare", "perf"])
def test_an_https_color_is_checked_over_tls(
    pytester: pytest.Pytester, backends: dict[str, Backend], stack: Stack, check: Path
) -> None:
    result = run_perf(
        pytester, tls_urls(stack, backends), {"/api/echo": [LIMIT, "rate<0.01"]},
        "--env", "green", "-rA", compare=TLS_COMPARE, check=check, compare_baseline="blue",
        compare_requests=60, tls_ca=str(stack.cert),
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    out = text(result)
    if check == COMPARE_CHECK:
        assert re.search(r"green \(new\)\s+60\s+0\.00%\s+60", out), out  # every one answered
    else:
        assert "errors=0/24" in out or status(result, "/api/echo", "green") == "PASSED", out


@pytest.mark.parametrize("standalone", [False, True], ids=["with-conftest", "standalone"])
def test_a_wrong_ca_for_an_https_color_is_an_infra_error(
    pytester: pytest.Pytester,
    backends: dict[str, Backend],
    stack: Stack,
    tmp_path: Path,
    standalone: bool,
) -> None:
    """Not "green is worse" (every request failed): nothing could be measured. With the folder's
    conftest.py its waiting ``http`` finds out first; the check copied alone, its load does."""
    other = make_cert(tmp_path / "other.pem")
    services = ("-p", "pytest_bluegreen.contrib.services") if standalone else ()
    result = run_perf(
        pytester, tls_urls(stack, backends), {}, "--env", "green", "-rA", *services,
        compare=TLS_COMPARE, check=COMPARE_CHECK, compare_baseline="blue", compare_requests=60,
        tls_ca=str(other), standalone=standalone, verify_timeout=0.5,
    )  # fmt: skip
    out = text(result)
    assert compare_status(result) == "INFRA-ERROR", out
    assert "CERTIFICATE_VERIFY_FAILED" in out
    assert "is worse than" not in out
    if standalone:
        assert f"verified against tls_ca {other}" in out
