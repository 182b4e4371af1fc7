"""Which build answered (``gate/builds.py``) and the gate's decision on it: the pure parts, then a
real gated session with ``-n 2`` against a real HAProxy whose color's direct backend also
reaches a stale process of another build."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.engines import DeployResult, ImageUnknown, Occupant, image_tag
from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.gate.builds import (
    HEARD_PROPERTY,
    AnswerLog,
    Build,
    BuildEvidence,
    Heard,
    answers_problem,
    color_slots,
    heard_in,
    resolve,
    slot_problems,
)
from pytest_bluegreen.gate.decision import SessionFacts, Verdict, decide
from pytest_bluegreen.gate.outcomes import COLOR_PROPERTY, ColorOutcomes, Outcomes
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.gate.verify import failure_code as _failure_code
from pytest_bluegreen.haproxy.answers import ServerRef, ServerState
from pytest_bluegreen.httpclient import ColorSession
from pytest_bluegreen.judge.load import Sample
from pytest_bluegreen.settings import resolve as resolve_settings
from tests.support.gate import history, output, run_gate
from tests.support.stack import BLUE_LIVE, Backend, Stack

HEADERS = {"version_header": "X-Bluegreen-Version", "server_header": "X-Bluegreen-Server"}
NEW = Occupant("task bluegreen_blue-api.1.aaaa", "bluegreen/jarvis:v1.2.0-broken")
OLD = Occupant("task bluegreen_blue-api.1.bbbb", "bluegreen/jarvis:v1.0.0", current=False)


def heard(version: str | None = None, server: str | None = None) -> Heard:
    headers = {}
    if version is not None:
        headers["X-Bluegreen-Version"] = version
    if server is not None:
        headers["X-Bluegreen-Server"] = server
    return Heard.of(headers, **HEADERS)


# --- what one answer says ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "server", "expected"),
    [
        pytest.param(
            "v1",
            "blue_direct/blue-api-direct1 10.0.1.5:8000",
            Heard("v1", "blue_direct/blue-api-direct1", "10.0.1.5:8000"),
            id="both",
        ),
        pytest.param(None, None, Heard(), id="nothing"),
        pytest.param("v1", None, Heard("v1"), id="version-only"),
        # HAProxy's own answer when no server took the request names no build
        pytest.param(None, "blue_direct/<NOSRV> :0", Heard(), id="no-server"),
        pytest.param(None, "b/s ::1:8010", Heard(None, "b/s", "::1:8010"), id="ipv6"),
        pytest.param(None, "b/s", Heard(None, "b/s"), id="no-address"),
    ],
)
def test_heard_of_headers(version: str | None, server: str | None, expected: Heard) -> None:
    assert heard(version, server) == expected


def test_the_answer_log_rides_on_the_report_through_xdist_serialisation(
    pytestconfig: pytest.Config,
) -> None:
    log = AnswerLog()
    for _ in range(3):
        log.add("blue", heard("v1", "blue_direct/s1 10.0.1.5:8000"))
    log.add("blue", heard())
    report = pytest.TestReport(
        "t.py::test_x[blue]",
        ("t.py", 1, "test_x"),
        {},
        "passed",
        None,
        "call",
        user_properties=[(COLOR_PROPERTY, "blue")],
    )
    log.attach(report)
    data = pytestconfig.hook.pytest_report_to_serializable(config=pytestconfig, report=report)
    rebuilt = pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig, data=data)
    assert heard_in(rebuilt) == [
        ("blue", Heard("v1", "blue_direct/s1", "10.0.1.5:8000"), 3),
        ("blue", Heard(), 1),
    ]
    outcomes = Outcomes()
    outcomes.add(rebuilt)
    assert outcomes["blue"].heard == Counter(
        {Heard("v1", "blue_direct/s1", "10.0.1.5:8000"): 3, Heard(): 1}
    )
    # moved, not copied: the next report carries only what was heard after this one
    later = pytest.TestReport("t.py::test_y", ("t.py", 2, "test_y"), {}, "passed", None, "call")
    log.attach(later)
    assert not any(name == HEARD_PROPERTY for name, _ in later.user_properties)


# --- which build that was --------------------------------------------------------------------


def test_the_image_decides_over_the_claimed_version() -> None:
    """A misversioned build (claims v0.0.0) run from the deployed image is the deployed build:
    its claim is for the checks to judge, not another build."""
    misversioned = Occupant("sutazai-blue-backend", "bluegreen/jarvis:v1.6.0-misversioned")
    answers = {heard("v0.0.0", "blue_direct/blue-api-direct 127.0.0.1:8010"): 4}
    builds = resolve(answers, {"127.0.0.1:8010": (misversioned,)})
    assert [(b.tag, b.by) for b in builds] == [("v1.6.0-misversioned", "image")]
    assert builds.total() == 4


def test_the_claim_decides_where_the_engine_knows_no_address() -> None:
    answers = {
        heard("v1.1.0", "green_direct/stale 127.0.0.1:9999"): 2,
        heard("v1.1.0"): 1,  # no HAProxy in between
        heard(): 5,  # HAProxy's own 503s: no build
    }
    builds = resolve(answers, {})
    assert builds == Counter(
        {
            Build("v1.1.0", "version header", "green_direct/stale at 127.0.0.1:9999"): 2,
            Build("v1.1.0", "version header", "answer"): 1,
        }
    )


def test_an_address_several_images_had_is_no_one_build() -> None:
    builds = resolve({heard(None, "b/s 10.0.1.5:8000"): 1}, {"10.0.1.5:8000": (NEW, OLD)})
    [build] = builds
    assert build.tag == "v1.0.0 or v1.2.0-broken"


# --- the decision --------------------------------------------------------------------------------

PASSED: dict[str | None, ColorOutcomes] = {"blue": ColorOutcomes(passed=2)}


def decide_on(
    answers: dict[Build, int],
    expected: str | None = "v1.2.0-broken",
    outcomes: dict[str | None, ColorOutcomes] | None = None,
    **facts: Any,
) -> Any:
    return decide(
        target="blue",
        live="green",
        outcomes=PASSED if outcomes is None else outcomes,
        target_down={},
        facts=SessionFacts(**facts),
        builds=BuildEvidence(expected, answers),
    )


def by_image(image: str, where: str = "10.0.1.5:8000") -> Build:
    return Build(image_tag(image), "image", f"task t ({image}) at {where}")


def test_answers_of_the_deployed_build_switch() -> None:
    decision = decide_on({by_image("bluegreen/jarvis:v1.2.0-broken"): 6})
    assert decision.verdict is Verdict.SWITCH


def test_an_answer_from_the_old_build_is_inconclusive_naming_it_and_how_many() -> None:
    decision = decide_on(
        {
            by_image("bluegreen/jarvis:v1.2.0-broken"): 3,
            by_image("bluegreen/jarvis:v1.0.0", "10.0.1.7:8000"): 5,
        }
    )
    assert decision.verdict is Verdict.INCONCLUSIVE
    assert decision.exit_code == ExitCode.INCONCLUSIVE
    assert decision.reason == (
        "inconclusive: 5 of 8 answer(s) from blue came from another build than the deployed "
        "v1.2.0-broken: v1.0.0 (5 answers, by image: task t (bluegreen/jarvis:v1.0.0) at "
        "10.0.1.7:8000); the checks did not judge v1.2.0-broken alone"
    )


def test_another_build_wins_over_failed_checks_and_keeps_its_exit_code() -> None:
    """Checks that failed on answers of another build say nothing of the deployed one: no
    FAILED (which returns traffic and blames the build), and exit 6, not pytest's 1."""
    failed: dict[str | None, ColorOutcomes] = {"blue": ColorOutcomes(passed=1, failed=1)}
    facts = SessionFacts(exitstatus=1)
    decision = decide_on({by_image("bluegreen/jarvis:v1.0.0"): 1}, outcomes=failed, exitstatus=1)
    assert decision.verdict is Verdict.INCONCLUSIVE
    assert not decision.may_return
    assert _failure_code(facts, decision) == ExitCode.INCONCLUSIVE
    # the deployed build's own failure is a failure, as before
    own = decide_on({by_image("bluegreen/jarvis:v1.2.0-broken"): 2}, outcomes=failed, exitstatus=1)
    assert own.verdict is Verdict.FAILED
    assert _failure_code(facts, own) == ExitCode.CHECKS_FAILED


def test_a_claimed_version_of_another_build_is_inconclusive() -> None:
    """No engine to ask (--deployment-tag, no Docker): the version header decides."""
    decision = decide_on(
        {Build("v1.0.0", "version header", "blue_direct/s1 at 127.0.0.1:1"): 2},
        expected="v1.1.0",
    )
    assert decision.verdict is Verdict.INCONCLUSIVE
    assert "2 of 2 answer(s) from blue came from another build than the deployed v1.1.0" in (
        decision.reason
    )
    assert "v1.0.0 (2 answers, by version header: blue_direct/s1 at 127.0.0.1:1)" in (
        decision.reason
    )


@pytest.mark.parametrize(
    ("answers", "verdict"),
    [
        pytest.param({}, Verdict.SWITCH, id="no-answer-nothing-to-compare"),
        pytest.param({by_image("r:v1"): 3}, Verdict.SWITCH, id="one-build"),
        pytest.param(
            {by_image("r:v1"): 3, by_image("r:v2", "10.0.1.9:8000"): 1},
            Verdict.INCONCLUSIVE,
            id="a-mixture",
        ),
    ],
)
def test_without_a_deployed_tag_one_build_must_answer(
    answers: dict[Build, int], verdict: Verdict
) -> None:
    decision = decide_on(answers, expected=None)
    assert decision.verdict is verdict
    if verdict is Verdict.INCONCLUSIVE:
        assert decision.reason.startswith(
            "inconclusive: the 4 answers from blue came from 2 builds"
        )


def test_no_evidence_is_the_old_decision() -> None:
    assert answers_problem("blue", BuildEvidence("v1", {})) is None
    decision = decide(
        target="blue", live="green", outcomes=PASSED, target_down={}, facts=SessionFacts()
    )
    assert decision.verdict is Verdict.SWITCH


# --- the slots ---------------------------------------------------------------------------------


def state(ref: str, address: str, port: int, fqdn: str = "", admin: int = 0) -> ServerState:
    backend, server = ref.split("/")
    return ServerState(backend, server, address, 2, admin, 1, 1, 0, 0, port, fqdn)


def test_a_colors_slots_are_its_servers_and_every_server_pointing_where_they_point() -> None:
    dns = "tasks.bluegreen_blue-api"
    states = [
        state("api_backend/blue-api1", "10.0.1.5", 8000, dns),
        state("api_backend/blue-api2", "-", 0, dns, admin=0x20),  # empty: no replica
        state("blue_direct/blue-api-direct1", "10.0.1.7", 8000, dns),  # the old one, held
        state("blue_direct/blue-api-direct2", "10.0.1.5", 8000, dns),
        state("api_backend/green-api1", "10.0.1.9", 8000, "tasks.bluegreen_green-api"),
        state("api_backend/frontend", "127.0.0.1", 3010),  # static: by address
        state("blue_direct/same-address", "127.0.0.1", 3010),
        state("other/elsewhere", "127.0.0.1", 3011),
    ]
    mine = {ServerRef.parse("api_backend/blue-api1"), ServerRef.parse("api_backend/frontend")}
    found = [str(s.ref) for s in color_slots(states, mine)]
    assert found == [
        "api_backend/blue-api1",
        "blue_direct/blue-api-direct1",
        "blue_direct/blue-api-direct2",
        "api_backend/frontend",
        "blue_direct/same-address",
    ]


def test_slot_problems_name_each_slot_and_what_it_runs() -> None:
    occupants = {"10.0.1.5:8000": (NEW,), "10.0.1.7:8000": (OLD,)}
    slots = [("blue_direct/d1", "10.0.1.7:8000"), ("blue_direct/d2", "10.0.1.5:8000")]
    assert slot_problems(slots, occupants, "v1.2.0-broken") == [
        "blue_direct/d1 at 10.0.1.7:8000: task bluegreen_blue-api.1.bbbb "
        "(bluegreen/jarvis:v1.0.0, not running any more)"
    ]
    assert slot_problems(slots[1:], occupants, "v1.2.0-broken") == []
    unknown = [*slots[1:], ("b/x", "10.0.1.8:8000")]
    assert slot_problems(unknown, occupants, "v1.2.0-broken") == [
        "b/x at 10.0.1.8:8000: nothing the engine knows answers there"
    ]
    # the engine runs none of them: nothing to judge the slots by
    assert slot_problems([("b/x", "10.0.1.8:8000")], occupants, "v1") is None


# --- a real gate, -n 2, against a real HAProxy -------------------------------------------------

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http):
    for _ in range(3):
        assert http.get("/health").status_code == 200


@pytest.mark.quick
def test_api(http):
    for _ in range(3):
        response = http.post("/api/items", json={"name": "x"})
        assert response.status_code == 200, response.text
"""


@pytest.fixture
def stale_green() -> Any:
    """Another build (v1.0.0) that says it is green."""
    backend = Backend.start("green", "v1.0.0")
    yield backend
    backend.stop()


@pytest.mark.usefixtures("docker_engine")
def test_answers_of_another_build_reach_the_controller_under_xdist_and_refuse(
    pytester: pytest.Pytester, stack: Stack, stale_green: Backend
) -> None:
    another_build_is_refused(pytester, stack, stale_green, engine=True)


def test_without_an_engine_answers_of_another_build_are_refused_by_their_version(
    pytester: pytest.Pytester, stack: Stack, stale_green: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user with no Docker engine who passes --deployment-tag; the version header decides,
    and the gate says so."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-docker.sock")
    another_build_is_refused(pytester, stack, stale_green, engine=False)


def another_build_is_refused(
    pytester: pytest.Pytester, stack: Stack, stale_green: Backend, *, engine: bool
) -> None:
    api = stack.api()
    answer = api.execute(f"add server green_direct/stale 127.0.0.1:{stale_green.port}")
    assert "New server registered" in answer, answer
    api.execute("set server green_direct/stale state ready")

    gate = ("--env", "green", "--switch", "--deployment-tag", "v1.1.0", "-n", "2")
    result = run_gate(pytester, stack, *gate, checks=CHECKS)
    assert result.ret == ExitCode.INCONCLUSIVE, output(result)
    text = output(result)
    found = re.search(
        r"INCONCLUSIVE: inconclusive: (\d+) of 6 answer\(s\) from green came from another build "
        r"than the deployed v1\.1\.0: v1\.0\.0 \((\d+) answers?, by version header: "
        rf"green_direct/stale at 127\.0\.0\.1:{stale_green.port}\)",
        text,
    )
    assert found, text
    assert found.group(1) == found.group(2) != "0"
    assert stack.live_weights() == BLUE_LIVE  # nothing switched
    assert [e["outcome"] for e in history(stack)] == ["inconclusive"]
    blind = "what answered green's checks behind HAProxy is not known (no Docker engine answers"
    assert (blind in text) == (not engine), text

    # the same gate once the stale server is gone: green's own build answered, it switches
    api.execute("set server green_direct/stale state maint")
    api.execute("del server green_direct/stale")
    result = run_gate(pytester, stack, *gate, checks=CHECKS)
    assert result.ret == 0, output(result)
    assert stack.served_color() == "green"


def test_a_loads_answers_count_as_the_colors_own() -> None:
    """The perf checks judge a color by a load (load.run_load): its answers are noted too."""
    log = AnswerLog()
    session = ColorSession("http://127.0.0.1:1", 1.0, "blue", answers=log)
    session.note_answers(
        [
            Sample("keepalive-get", 0.0, 0.001, 200, "blue", None, "v1", "b/s 10.0.1.5:8000"),
            Sample("keepalive-get", 0.0, 0.001, 200, "blue", None, "v1", "b/s 10.0.1.5:8000"),
            Sample("keepalive-get", 0.0, 0.001, None, None, "ConnectionRefusedError", None, None),
        ]
    )
    report = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "passed", None, "call")
    log.attach(report)
    assert heard_in(report) == [("blue", Heard("v1", "b/s", "10.0.1.5:8000"), 2)]


# --- the slots again, right before the switch ------------------------------------------------


class Engine:
    """A deploy engine for logic only: what runs at each address is what the test says."""

    def __init__(self, runs: dict[str, tuple[Occupant, ...]]) -> None:
        self.runs = runs

    def occupants(self, endpoints: Collection[str]) -> dict[str, tuple[Occupant, ...]]:
        return {e: self.runs[e] for e in endpoints if e in self.runs}

    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        raise NotImplementedError

    def teardown(self, color: str) -> None:
        raise NotImplementedError

    def deployed_tag(self, color: str) -> str | None:
        return None

    def image_of(self, color: str) -> str:
        raise ImageUnknown(f"no image of {color} here")


def test_a_slot_that_reaches_another_build_before_the_switch_refuses_it(
    stack: Stack, tmp_path: Path
) -> None:
    """The checks passed on v1.1.0; then green's server in HAProxy reaches another build (an
    old replica resolved again): the gate waits deploy_timeout for it to go, then refuses."""
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml(deploy_timeout=1))
    cli = {"env": "green", "switch": True, "deployment_tag": "v1.1.0"}
    settings = resolve_settings(cli, {}, {}, tmp_path)
    green = f"127.0.0.1:{stack.green.port}"
    engine = Engine({green: (Occupant("green-1", "r/jarvis:v1.1.0"),)})
    said: list[str] = []
    run = GateRun(settings, progress=said.append, engine=engine)
    run.start()
    try:
        run.before_checks()  # every slot of green runs v1.1.0: no wait
        assert said == []
        report = pytest.TestReport(
            "t.py::test_health[green]",
            ("t.py", 1, "test_health"),
            {},
            "passed",
            None,
            "call",
            user_properties=[(COLOR_PROPERTY, "green")],
        )
        log = AnswerLog()
        log.add("green", Heard("v1.1.0"))
        log.attach(report)
        run.outcomes.add(report)
        engine.runs[green] = (Occupant("green-old", "r/jarvis:v1.0.0"),)
        result = run.finish(SessionFacts(collected=1, finished=1))
    finally:
        run.close()
    assert result.exit_code == ExitCode.REFUSED, result.lines
    assert result.lines[0] == (
        "refused: not every HAProxy slot of green runs the deployed v1.1.0 (after 1s): "
        f"api_backend/green-api at {green}: green-old (r/jarvis:v1.0.0); "
        f"frontend_backend/green-frontend at {green}: green-old (r/jarvis:v1.0.0); "
        f"green_direct/green-api-direct at {green}: green-old (r/jarvis:v1.0.0); "
        # the preview route's way to green's frontend (the stack's frontend is the same app)
        f"green_frontend_direct/green-frontend-direct at {green}: green-old (r/jarvis:v1.0.0)"
    )
    assert any(line.startswith("waiting up to 1s until every HAProxy slot") for line in said)
    assert stack.live_weights() == BLUE_LIVE
    assert [e["outcome"] for e in history(stack)] == ["refused"]


PLAIN_CHECKS = """
import requests


def test_health(color, bluegreen_settings):  # plain requests: the http fixture notes nothing
    url = bluegreen_settings.topology.color[color].api_url
    assert requests.get(url + "/health", timeout=5).status_code == 200
"""


def test_checks_that_note_no_answer_cannot_vouch_for_the_deployed_build(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """A check author using plain requests: no answer tells which build the checks judged,
    and no deploy engine runs green's addresses to show what its HAProxy slots reach. Nothing
    ties the checks to the deployed build, so the gate does not switch (it switched with a
    warning before, also to a tag nothing runs)."""
    for tag in ("v1.1.0", "v9.9.9"):  # green runs v1.1.0; nothing runs v9.9.9
        gate = ("--env", "green", "--switch", "--deployment-tag", tag)
        result = run_gate(pytester, stack, *gate, checks=PLAIN_CHECKS)
        assert result.ret == ExitCode.INCONCLUSIVE, output(result)
        result.stdout.fnmatch_lines(
            [
                f"*INCONCLUSIVE: inconclusive: nothing ties the checks to {tag}: the checks "
                "noted no answer of green (the http fixture notes them*), and the deploy engine "
                "did not show what runs behind green's HAProxy servers*"
            ]
        )
        assert stack.live_weights() == BLUE_LIVE
    assert [e["outcome"] for e in history(stack)] == ["inconclusive", "inconclusive"]


def test_slots_the_engine_showed_running_the_build_vouch_for_checks_that_note_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """The same checks, with a deploy engine that shows every HAProxy slot of green running
    the deployed build: that ties them to it; the switch goes on, saying the answers did not."""
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml())
    cli = {"env": "green", "switch": True, "deployment_tag": "v1.1.0"}
    settings = resolve_settings(cli, {}, {}, tmp_path)
    green = f"127.0.0.1:{stack.green.port}"
    engine = Engine({green: (Occupant("green-1", "r/jarvis:v1.1.0"),)})
    run = GateRun(settings, progress=lambda line: None, engine=engine)
    run.start()
    try:
        run.before_checks()
        report = pytest.TestReport(
            "t.py::test_health[green]",
            ("t.py", 1, "test_health"),
            {},
            "passed",
            None,
            "call",
            user_properties=[(COLOR_PROPERTY, "green")],
        )
        run.outcomes.add(report)  # no answer noted
        result = run.finish(SessionFacts(collected=1, finished=1))
    finally:
        run.close()
    assert result.exit_code == ExitCode.OK, result.lines
    assert any(
        line.startswith("warning: the checks noted no answer of green")
        and line.endswith("every HAProxy slot of green runs v1.1.0, as the deploy engine showed")
        for line in result.lines
    ), result.lines
    assert stack.served_color() == "green"
