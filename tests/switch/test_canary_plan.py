"""The canary's logic without HAProxy: the weights of each step, the setting's grammar, the
comparison of the two colors' 5xx rates, the operator's requests and a canary in progress as
its journal shows it. The canary on a real HAProxy: test_canary.py."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.gate.canary import (
    LATENCY_SAMPLES_AT_MOST,
    compare_error_rates,
    compare_latency,
    histogram_samples,
)
from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.judge.comparerules import parse_compare_rule
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.judge.prometheus import QueryResult, Series
from pytest_bluegreen.settings import SettingsError, resolve
from pytest_bluegreen.settings import parsers as p
from pytest_bluegreen.switch import canary
from pytest_bluegreen.switch.journal import JournalEntry

BLUE = (ServerRef("api_backend", "blue-api"), ServerRef("frontend_backend", "blue-frontend"))
GREEN = (ServerRef("api_backend", "green-api"), ServerRef("frontend_backend", "green-frontend"))


@pytest.mark.parametrize("percent", [1, 5, 10, 25, 50, 75, 99])
def test_each_backend_gives_the_new_color_its_share(percent: int) -> None:
    [step] = canary.canary_steps([percent], BLUE, GREEN)
    for backend in ("api_backend", "frontend_backend"):
        green = next(
            w for r, w in step.weights.items() if r.backend == backend and "green" in r.server
        )
        blue = next(
            w for r, w in step.weights.items() if r.backend == backend and "blue" in r.server
        )
        assert 1 <= green <= canary.MAX_WEIGHT
        assert 1 <= blue <= canary.MAX_WEIGHT
        assert green / (green + blue) == pytest.approx(percent / 100, abs=0.005)
        assert step.shares[backend] == pytest.approx(green / (green + blue))


def test_unequal_server_counts_share_by_color_not_by_server() -> None:
    """Three old servers and one new: the new one alone carries the step's share."""
    old = [ServerRef("api_backend", f"blue-api{i}") for i in range(1, 4)]
    new = [ServerRef("api_backend", "green-api1")]
    [step] = canary.canary_steps([25], old, new)
    given = step.weights[new[0]]
    taken = sum(step.weights[ref] for ref in old)
    assert given / (given + taken) == pytest.approx(0.25, abs=0.005)
    assert step.shares["api_backend"] == pytest.approx(given / (given + taken))


def test_a_backend_without_the_live_color_cannot_share() -> None:
    with pytest.raises(canary.CanaryPlanError, match="backend other has no server of the live"):
        canary.canary_steps([5], BLUE, (*GREEN, ServerRef("other", "green-x")))


def test_a_share_weights_cannot_give_is_refused() -> None:
    """1% over 300 new servers: each would weigh less than 1."""
    old = [ServerRef("b", "blue")]
    new = [ServerRef("b", f"green{i}") for i in range(300)]
    with pytest.raises(canary.CanaryPlanError, match=r"--canary 1%: HAProxy's weights"):
        canary.canary_steps([1], old, new)


@pytest.mark.parametrize(
    ("given", "steps"),
    [("5,25,50", (5, 25, 50)), ([5, 25], (5, 25)), (10, (10,)), (" ", ()), ("1, 99", (1, 99))],
)
def test_the_setting_takes_rising_shares(given: object, steps: tuple[int, ...]) -> None:
    assert p.canary_steps(given) == steps


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("5,5", "rising"),
        ("50,25", "rising"),
        ("0", r"1\.\.99"),
        ("100", r"1\.\.99"),
        ("a", "whole number"),
        (True, "whole number|text"),
    ],
)
def test_the_setting_refuses_what_is_not_a_canary(given: object, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        p.canary_steps(given)


def counts(requests: int, errors: int) -> dict[str, float]:
    return {"requests": float(requests), "http_5xx": float(errors)}


def test_a_higher_5xx_rate_beyond_the_margin_and_its_interval_fails() -> None:
    judged = compare_error_rates(
        counts(100, 5), counts(1900, 0), margin=0.01, confidence=0.95, names=("green", "blue")
    )
    assert judged is not None
    assert judged[0] is Judgement.FAILED
    assert "5xx rate 5.00% against blue's 0.00%" in judged[1]


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ((100, 2), (1900, 0)),  # 2% over 100: the interval reaches below the margin (chance)
        ((1000, 10), (1000, 10)),  # the same rate
        ((1000, 50), (1000, 50)),  # both bad: the new color is no worse than the live one
    ],
)
def test_a_miss_that_may_be_chance_or_no_worse_holds(
    new: tuple[int, int], old: tuple[int, int]
) -> None:
    assert compare_error_rates(counts(*new), counts(*old), margin=0.01, confidence=0.95) is None


def test_no_request_on_a_side_cannot_be_compared() -> None:
    judged = compare_error_rates(counts(0, 0), counts(100, 0), margin=0.01, confidence=0.95)
    assert judged is not None
    assert judged[0] is Judgement.INCONCLUSIVE


def test_a_request_for_this_switch_is_taken_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    canary.ask(journal, "abc", "abort")
    assert canary.request_path(journal).stat().st_mode & 0o077 == 0  # the owner's only
    assert canary.take_request(journal, "abc") == "abort"
    assert canary.take_request(journal, "abc") is None


def test_a_request_for_another_switch_or_unreadable_is_dropped(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    canary.ask(journal, "old-switch", "promote")
    assert canary.take_request(journal, "abc") is None
    assert not canary.request_path(journal).exists()
    canary.request_path(journal).write_text("{not json")
    assert canary.take_request(journal, "abc") is None
    canary.request_path(journal).write_text(json.dumps({"id": "abc", "action": "rm -rf"}))
    assert canary.take_request(journal, "abc") is None
    with pytest.raises(ValueError, match="abort, promote"):
        canary.ask(journal, "abc", "switch")


def test_a_request_is_never_read_through_a_planted_link(tmp_path: Path) -> None:
    journal = tmp_path / "journal.json"
    target = tmp_path / "elsewhere"
    target.write_text(json.dumps({"id": "abc", "action": "abort"}))
    canary.request_path(journal).symlink_to(target)
    assert canary.take_request(journal, "abc") is None
    assert target.exists()


def entry(steps: list[dict[str, object]], *, pid: int, open_: bool = True) -> JournalEntry:
    return JournalEntry(
        id="abc",
        status="open" if open_ else "closed",
        started="2026-12-07T00:00:00+00:00",
        host=socket.gethostname(),
        pid=pid,
        source="blue",
        target="green",
        instance=InstanceIdentity("127.0.0.1:1", 1, 1),
        prior=(),
        steps=tuple(steps),
    )


STEP = {
    "step": "canary-25",
    "number": 2,
    "of": 3,
    "percent": 25,
    "shares": {"api_backend": 0.25},
    "until": 1e12,
    "sticky": True,
}


def test_a_canary_in_progress_is_the_open_journal_of_a_live_gate() -> None:
    running = canary.in_progress(entry([STEP, {"step": "canary-25-judged"}], pid=os.getpid()))
    assert running is not None
    assert (running.number, running.of, running.percent, running.target) == (2, 3, 25, "green")
    assert "CANARY IN PROGRESS: blue -> green, step 2/3 (25%: green api_backend 25.0%)" in (
        running.line()
    )


def test_a_gate_gone_a_closed_journal_or_a_switch_past_the_canary_is_no_canary() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert canary.in_progress(entry([STEP], pid=int(gone.stdout))) is None
    assert canary.in_progress(entry([STEP], pid=os.getpid(), open_=False)) is None
    assert canary.in_progress(entry([STEP, {"step": "promote"}], pid=os.getpid())) is None
    assert canary.in_progress(entry([{"step": "promote"}], pid=os.getpid())) is None
    assert canary.held_users(entry([{"step": canary.STICKY_STEP}], pid=1))  # killed right after
    assert not canary.held_users(entry([{**STEP, "sticky": False}], pid=1))


def buckets(**cumulative: float) -> QueryResult:
    """``sum by (le) (increase(...))``'s answer: le -> the cumulative count."""
    series = tuple(
        Series({"le": le.replace("_", ".").replace("inf", "+Inf")}, (count,))
        for le, count in cumulative.items()
    )
    return QueryResult("q", "vector", series)


def test_a_histogram_is_read_as_latencies_at_its_bucket_bounds() -> None:
    samples, held = histogram_samples(
        buckets(**{"0_05": 10.0, "0_1": 12.4, "0_25": 13.0, "inf": 14.0})
    )
    # +Inf: beyond the last bound, at twice it (never read as fast)
    assert samples == [50.0] * 10 + [100.0] * 2 + [250.0] + [500.0]
    assert held == 14


def test_a_large_histogram_is_scaled_down_in_proportion_keeping_a_small_tail() -> None:
    samples, held = histogram_samples(
        buckets(**{"0_01": 90_000.0, "0_1": 99_985.0, "0_25": 100_000.0, "inf": 100_000.0})
    )
    assert len(samples) == LATENCY_SAMPLES_AT_MOST
    assert held == 100_000
    assert samples.count(10.0) == LATENCY_SAMPLES_AT_MOST * 9 // 10
    assert samples.count(250.0) == 1  # 15 of 100,000: 0.75 of a sample, kept by its remainder


@pytest.mark.parametrize(
    "cumulative",
    [
        {"inf": 100.0},  # no finite bucket
        {"0_1": float("inf"), "inf": float("inf")},  # Prometheus said +Inf
        {"0_1": float("nan"), "inf": 3.0},
    ],
    ids=["only-inf", "inf-counts", "nan-counts"],
)
def test_a_histogram_that_cannot_be_read_gives_no_samples(cumulative: dict[str, float]) -> None:
    assert histogram_samples(buckets(**cumulative)) == ([], 0)


def test_requests_beyond_the_last_bucket_are_slower_not_equal() -> None:
    """New: every request past 100 ms (+Inf); live: every one under it. Not a pass."""
    rule = parse_compare_rule("p(95) <= live * 1.25 + 10")
    new, _ = histogram_samples(buckets(**{"0_1": 0.0, "inf": 100.0}))
    live, _ = histogram_samples(buckets(**{"0_1": 100.0, "inf": 100.0}))
    judged = compare_latency(new, live, rule, confidence=0.95)
    assert judged is not None
    assert judged[0] is Judgement.FAILED


def test_slower_beyond_the_rule_and_its_interval_fails_the_latency() -> None:
    rule = parse_compare_rule("p(95) <= live * 1.25 + 10")
    live = [10.0] * 950 + [25.0] * 50
    slower = [100.0] * 1000
    judged = compare_latency(slower, live, rule, confidence=0.95)
    assert judged is not None
    assert judged[0] is Judgement.FAILED
    assert compare_latency(live, live, rule, confidence=0.95) is None
    near = [10.0] * 950 + [35.0] * 50  # p(95) 35 ms against a tolerance of 25 * 1.25 + 10
    assert compare_latency(near, live, rule, confidence=0.95) is None


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("rate <= live + 0.01", "is a rate: the canary compares 5xx rates by itself"),
        ("p(95) < 300", "is not a comparison like"),
        ("faster", "is not a comparison like"),
    ],
)
def test_the_latency_rule_is_a_comparison_of_latency(tmp_path: Path, given: str, why: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(why)):
        resolve({}, {"BLUEGREEN_CANARY_LATENCY_RULE": given}, {}, tmp_path)


@pytest.mark.parametrize(
    ("environ", "why"),
    [
        ({"BLUEGREEN_CANARY_LATENCY": "latency_bucket"}, "names no {color}"),
        (
            {"BLUEGREEN_CANARY_LATENCY": 'latency_bucket{color="{color}"}'},
            "canary_latency needs prometheus_url",
        ),
    ],
)
def test_a_latency_series_that_cannot_compare_the_colors_is_refused(
    tmp_path: Path, environ: dict[str, str], why: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(why)):
        resolve({}, environ, {}, tmp_path)
