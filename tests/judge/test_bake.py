"""After the switch: the bake (post checks and HAProxy's counters every interval, a switch back
on failure; an interval across an HAProxy reload measures nothing), as a user runs it, against
a real HAProxy in front of two real backends. The old color kept warm and promotion as its own
step: tests/gate/test_aftercare.py."""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Any

import pytest
import requests

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import ServerRef, StatRow
from pytest_bluegreen.haproxy.instances import Haproxies, Instance
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.judge.bake import Bake, BakePlan, PostResult
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.judge.thresholds import parse_bake_thresholds
from pytest_bluegreen.process.signals import NoSignals
from pytest_bluegreen.switch.journal import read_journal
from tests.support.bake import BAKE, POST, BackgroundGate, bake_run
from tests.support.gate import CHECKS, history, outcomes, output, prepare, verdict
from tests.support.stack import Stack, StackFactory

# a post check that looks only at /health: HAProxy's counters must catch what it does not
POST_HEALTH_ONLY = """

@pytest.mark.post
def test_the_live_color_is_healthy(routed_http):
    for _ in range(20):
        routed_http.post("/api/items", json={"name": "traffic"})  # what users do
    assert routed_http.get("/health").status_code == 200
"""


def test_a_clean_bake_keeps_the_switch(pytester: pytest.Pytester, stack: Stack) -> None:
    result = bake_run(pytester, stack, 1.5)
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(
        [
            "*bluegreen: bake 1/3: post 1/1 passed, 5xx 0/*, eresp 0: passed*",
            "*bluegreen: bake 3/3: post 1/1 passed*",
            "*bake passed: 3 of 3 interval(s) passed*",
        ],
        consecutive=False,
    )
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["switched"]
    timeline = verdict(pytester)["bake"]["timeline"]
    assert [i["verdict"] for i in timeline] == ["passed"] * 3
    assert all(i["haproxy"]["requests"] >= 1 for i in timeline)


@pytest.mark.parametrize(
    ("post", "caught_by"),
    [
        pytest.param(POST, "post check(s) failed", id="post-check"),
        pytest.param(POST_HEALTH_ONLY, "http_5xx_rate=", id="haproxy-counters"),
    ],
)
def test_a_failing_bake_switches_back(
    pytester: pytest.Pytester, stack: Stack, post: str, caught_by: str
) -> None:
    result = bake_run(pytester, stack, 3, degrade=True, checks=CHECKS + post)
    assert result.ret == 11, output(result)
    result.stdout.fnmatch_lines(
        [
            "*SWITCH: switched blue -> green*",
            f"*bake failed: interval 1/6 failed: *{caught_by}*",
            "*rolled back green -> blue: bake failed*",
        ],
        consecutive=False,
    )
    assert stack.served_color() == "blue"
    assert stack.live_weights()["green-api"] == (0, "ready")
    assert outcomes(stack) == ["switched", "rolled-back"]
    assert history(stack)[-1]["reason"].startswith("bake failed: ")
    assert verdict(pytester)["exit_code"] == 11


INCONCLUSIVE = {
    "rollback": (11, "blue", ["switched", "rolled-back"]),
    "keep": (0, "green", ["switched"]),
}


@pytest.mark.parametrize("on_inconclusive", INCONCLUSIVE)
def test_a_bake_that_cannot_judge(
    pytester: pytest.Pytester, stack: Stack, on_inconclusive: str
) -> None:
    code, live, recorded = INCONCLUSIVE[on_inconclusive]
    result = bake_run(
        pytester,
        stack,
        1,
        bake_min_requests=1_000_000,
        bake_on_inconclusive=on_inconclusive,
    )
    assert result.ret == code, output(result)
    result.stdout.fnmatch_lines(["*fewer than bake_min_requests 1000000*"])
    assert stack.served_color() == live
    assert outcomes(stack) == recorded


def test_sigint_during_the_bake_leaves_a_consistent_switch(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    prepare(pytester, stack, CHECKS + POST, **BAKE)
    with BackgroundGate(pytester.path, 30) as gate:
        gate.wait_for_line("bluegreen: bake 2/")
        gate.proc.send_signal(signal.SIGINT)
        code, text = gate.finish(timeout=60)
    assert code == 2, text
    assert "bake interrupted by SIGINT after" in text
    assert "traffic stays on green (switched and verified)" in text
    assert stack.served_color() == "green"
    assert stack.live_weights()["blue-api"] == (0, "ready")
    assert outcomes(stack) == ["switched"]
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")


# --- HAProxy reloaded (or its counters cleared) during the bake --------------------------------


def served_earlier(stack: Stack, color: str, answers: int, errors: int) -> None:
    """``color``'s servers count ``answers`` routed answers, ``errors`` of them 500, from an
    earlier time it was live (HAProxy's counters are cumulative); then blue is live again."""
    api, other = stack.api(), "blue" if color == "green" else "green"
    api.set_weight(ServerRef("api_backend", f"{color}-api"), 100)
    api.set_weight(ServerRef("api_backend", f"{other}-api"), 0)
    try:
        stack.backend(color).control(api_status=500)
        for number in range(answers):
            if number == errors:
                stack.backend(color).reset()
            requests.get(f"{stack.routed_url}/api/items", timeout=5)
    finally:
        stack.backend(color).reset()
        api.set_weight(ServerRef("api_backend", f"{other}-api"), 100)
        api.set_weight(ServerRef("api_backend", f"{color}-api"), 0)


def test_an_haproxy_reload_during_the_bake_is_no_failure(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """A soft reload mid-bake starts HAProxy's counters again: green's 100/10 from an earlier
    life against the new process's few answers read as a 10% 5xx rate (a failed bake, switched
    back) before; now that interval is inconclusive, and the bake's rules decide."""
    served_earlier(stack, "green", answers=100, errors=10)
    prepare(
        pytester, stack, CHECKS + POST, bake_interval=2, scale_down_delay=0,
        bake_on_inconclusive="keep",
    )  # fmt: skip
    with BackgroundGate(pytester.path, 6) as gate:
        gate.wait_for_line("bluegreen: bake 1/")
        reloaded_from = stack.api().show_info()["Pid"]
        stack.haproxy.reload(stack.runtime)  # as systemctl reload haproxy, inside interval 2
        assert stack.api().show_info()["Pid"] != reloaded_from
        code, text = gate.finish()
    assert code == 0, text
    timeline = verdict(pytester)["bake"]["timeline"]
    unsure = [i for i in timeline if i["verdict"] == "inconclusive"]
    assert len(unsure) == 1, timeline
    assert "HAProxy was reloaded or restarted during the interval" in unsure[0]["reason"]
    assert unsure[0]["haproxy"] == {}
    assert [i["verdict"] for i in timeline if i is not unsure[0]] == ["passed", "passed"]
    assert all(v is None or v >= 0 for i in timeline for v in i["haproxy"].values()), timeline
    assert "bake inconclusive (bake_on_inconclusive)" in text
    assert stack.served_color() == "green"  # the reload kept the switch (server-state file)
    assert outcomes(stack) == ["switched"]


def one_interval(
    group: Haproxies,
    servers: list[ServerRef],
    during: Any,
    thresholds: str = "http_5xx_rate<0.01",
) -> Any:
    """One 0.3 s bake interval of ``servers``; ``during()`` runs as its post checks."""

    def post() -> PostResult:
        during()
        return PostResult(passed=1)

    plan = BakePlan(
        seconds=0.3, interval=0.3, failure_limit=0, consecutive_successes=0, min_requests=0,
        thresholds=parse_bake_thresholds({"haproxy": [thresholds]}),
    )  # fmt: skip
    [interval] = Bake(plan, group, servers, post, signals=NoSignals()).run().intervals
    return interval


def routed(stack: Stack, count: int, path: str = "/api/items") -> None:
    for _ in range(count):
        requests.get(f"{stack.routed_url}{path}", timeout=5)


def test_counters_cleared_during_an_interval_measure_nothing(stack: Stack) -> None:
    blue = [ServerRef("api_backend", "blue-api")]
    stack.blue.control(api_status=500)
    routed(stack, 30)  # 30 answers, all 500, before the interval
    stack.blue.reset()

    def cleared() -> None:  # same process, counters back to 0: 30/30 -> 5/0
        assert stack.api().execute("clear counters all").strip() == ""
        routed(stack, 5)

    interval = one_interval(stack.haproxies(), blue, cleared)
    assert interval.judgement is Judgement.INCONCLUSIVE, interval.line()
    assert interval.reason.startswith("HAProxy's counters went down during the interval (")
    assert "hrsp_5xx 30 -> 0" in interval.reason
    assert interval.line().startswith("bake 1/1: post 1/1 passed, HAProxy counters not judged")
    # and a clean interval after it measures again
    clean = one_interval(stack.haproxies(), blue, lambda: routed(stack, 5))
    assert (clean.judgement, clean.metrics["requests"]) == (Judgement.PASSED, 5)


def test_a_reload_of_one_instance_of_a_group_is_seen(stack_factory: StackFactory) -> None:
    stacks = {name: stack_factory(name) for name in ("lb-1", "lb-2")}
    group = Haproxies(
        [
            Instance(name, RuntimeApiAddress.parse(s.runtime), s.routed_url)
            for name, s in stacks.items()
        ]
    )
    blue = [ServerRef("api_backend", "blue-api")]
    for s in stacks.values():
        routed(s, 20)

    def reload_lb2() -> None:
        stacks["lb-2"].haproxy.reload(stacks["lb-2"].runtime)
        for s in stacks.values():
            routed(s, 30)  # more answers than before on both: only the process tells

    interval = one_interval(group, blue, reload_lb2)
    assert interval.judgement is Judgement.INCONCLUSIVE, interval.line()
    assert interval.reason.startswith("HAProxy lb-2 was reloaded or restarted during the interval")

    def four_each() -> None:
        for s in stacks.values():
            routed(s, 4)

    both = one_interval(group, blue, four_each)
    assert (both.judgement, both.metrics["requests"]) == (Judgement.PASSED, 8)


def test_a_show_stat_answer_cut_short_measures_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interval's first 'show stat' lacks the color's row (an answer cut short): its
    counters are not zero, and a difference with the next reading (every 500 since HAProxy
    started) is no measurement -- the interval is inconclusive, never failed (a switch back)."""
    blue = [ServerRef("api_backend", "blue-api")]
    stack.blue.control(api_status=500)
    routed(stack, 30)  # 30 answers, all 500, before the interval
    stack.blue.reset()
    original = RuntimeApi.show_stat
    calls: list[int] = []

    def cut_short(api: RuntimeApi) -> list[StatRow]:
        calls.append(1)
        rows = original(api)
        return [r for r in rows if r.ref not in blue] if len(calls) == 1 else rows

    monkeypatch.setattr(RuntimeApi, "show_stat", cut_short)
    interval = one_interval(stack.haproxies(), blue, lambda: routed(stack, 5))
    assert len(calls) == 2
    assert interval.judgement is Judgement.INCONCLUSIVE, interval.line()
    assert "without api_backend/blue-api (cut short?)" in interval.reason


@pytest.mark.parametrize("value", ["nan", "-1", "12x", "inf"])
def test_a_counter_that_is_not_a_count_measures_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The interval's first 'show stat' has a counter of the color that is no count (a torn
    answer, a proxy's mangling): read as 0 it would turn every 500 since HAProxy started into
    the interval's -- inconclusive, never failed."""
    blue = [ServerRef("api_backend", "blue-api")]
    stack.blue.control(api_status=500)
    routed(stack, 30)
    stack.blue.reset()
    original = RuntimeApi.show_stat
    calls: list[int] = []

    def mangled(api: RuntimeApi) -> list[StatRow]:
        calls.append(1)
        rows = original(api)
        if len(calls) > 1:
            return rows
        return [replace(r, raw={**r.raw, "hrsp_5xx": value}) if r.ref in blue else r for r in rows]

    monkeypatch.setattr(RuntimeApi, "show_stat", mangled)
    interval = one_interval(stack.haproxies(), blue, lambda: routed(stack, 5))
    assert len(calls) == 2
    assert interval.judgement is Judgement.INCONCLUSIVE, interval.line()
    assert f"api_backend/blue-api hrsp_5xx={value!r} is not a count" in interval.reason
