"""The gate's pure parts: ``gate.decide``, ``outcomes.Outcomes``, ``state`` (lock and history)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_bluegreen.errors import EXIT_CODES, ExitCode
from pytest_bluegreen.gate.decision import Decision, SessionFacts, Verdict, decide
from pytest_bluegreen.gate.outcomes import COLOR_PROPERTY, ColorOutcomes, Outcomes, color_of
from pytest_bluegreen.haproxy.lockfile import GateLock, LockHeld
from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import HistoryEntry, Outcome, StateFileError

# --- gate.decide --------------------------------------------------------------------------------

GREEN_PASSED: dict[str | None, ColorOutcomes] = {"green": ColorOutcomes(passed=2)}
DOWN = {"api_backend/green-api": "DOWN"}


def decide_with(
    *,
    exitstatus: int = 0,
    live: str | None = "blue",
    outcomes: dict[str | None, ColorOutcomes] | None = None,
    target_down: dict[str, str] | None = None,
    **facts: Any,
) -> Decision:
    return decide(
        target="green",
        live=live,
        outcomes=GREEN_PASSED if outcomes is None else outcomes,
        target_down=target_down or {},
        facts=SessionFacts(exitstatus=exitstatus, **facts),
    )


def test_switch_when_checks_passed_and_servers_up() -> None:
    decision = decide_with()
    assert decision == Decision(
        Verdict.SWITCH, "2 check(s) for green passed and its servers are UP", "green", "blue"
    )
    assert decision.exit_code == ExitCode.OK
    assert int(ExitCode.OK) == 0


def test_switch_when_no_color_is_live() -> None:
    decision = decide_with(live=None)
    assert decision.verdict is Verdict.SWITCH
    assert decision.live is None


def test_noop_when_target_already_live() -> None:
    decision = decide_with(live="green")
    assert decision.verdict is Verdict.NOOP
    assert decision.reason == "green is already live; nothing to switch"
    assert decision.exit_code == 0


def test_refused_when_target_not_up_lists_servers_sorted() -> None:
    decision = decide_with(
        target_down={"frontend_backend/green-frontend": "MAINT", "api_backend/green-api": "DOWN"}
    )
    assert decision.verdict is Verdict.REFUSED
    assert decision.reason == (
        "HAProxy does not report green UP: "
        "api_backend/green-api DOWN, frontend_backend/green-frontend MAINT"
    )
    assert decision.exit_code == ExitCode.REFUSED
    assert int(ExitCode.REFUSED) == 7


def test_failed_lists_every_failing_key() -> None:
    decision = decide_with(
        exitstatus=1,
        outcomes={
            "green": ColorOutcomes(passed=1, failed=1),
            "blue": ColorOutcomes(passed=3),
            "shared": ColorOutcomes(errors=2, skipped=1),
            None: ColorOutcomes(failed=1),
        },
    )
    assert decision.verdict is Verdict.FAILED
    assert decision.reason == (
        "checks failed (green: 1 passed, 1 failed; shared: 2 errors, 1 skipped; untagged: 1 failed)"
    )
    assert decision.exit_code == ExitCode.CHECKS_FAILED
    assert int(ExitCode.CHECKS_FAILED) == 1


def test_failed_without_counted_failures_names_the_exit_status() -> None:
    decision = decide_with(exitstatus=3, outcomes={"green": ColorOutcomes(passed=1)})
    assert decision.verdict is Verdict.FAILED
    assert decision.reason == "checks failed (pytest exit status 3)"


@pytest.mark.parametrize(
    ("outcomes", "summary"),
    [
        pytest.param({}, "none selected", id="nothing-ran"),
        pytest.param({"blue": ColorOutcomes(passed=4)}, "none selected", id="only-other-color"),
        pytest.param({"shared": ColorOutcomes(passed=4)}, "none selected", id="only-shared"),
        pytest.param({None: ColorOutcomes(passed=4)}, "none selected", id="only-untagged"),
        pytest.param(
            {"green": ColorOutcomes(skipped=2, xfailed=1)}, "2 skipped, 1 xfailed", id="skips"
        ),
        pytest.param({"green": ColorOutcomes(xpassed=1)}, "1 xpassed", id="xpass-is-no-pass"),
    ],
)
def test_inconclusive_when_no_target_check_passed(
    outcomes: dict[str | None, ColorOutcomes], summary: str
) -> None:
    decision = decide_with(outcomes=outcomes)
    assert decision.verdict is Verdict.INCONCLUSIVE
    assert decision.reason == f"inconclusive: no check for green ran and passed ({summary})"
    assert decision.exit_code == ExitCode.INCONCLUSIVE
    assert int(ExitCode.INCONCLUSIVE) == 6


NOTHING_PASSED: dict[str | None, ColorOutcomes] = {"green": ColorOutcomes(skipped=1)}


@pytest.mark.parametrize(
    ("kwargs", "verdict"),
    [
        pytest.param(
            {"exitstatus": 1, "outcomes": NOTHING_PASSED}, Verdict.FAILED, id="failed>inconclusive"
        ),
        pytest.param({"exitstatus": 1, "live": "green"}, Verdict.FAILED, id="failed>noop"),
        pytest.param({"exitstatus": 1, "target_down": DOWN}, Verdict.FAILED, id="failed>refused"),
        pytest.param(
            {"outcomes": NOTHING_PASSED, "live": "green"},
            Verdict.INCONCLUSIVE,
            id="inconclusive>noop",
        ),
        pytest.param(
            {"outcomes": NOTHING_PASSED, "target_down": DOWN},
            Verdict.INCONCLUSIVE,
            id="inconclusive>refused",
        ),
        pytest.param({"live": "green", "target_down": DOWN}, Verdict.NOOP, id="noop>not-up"),
        pytest.param({"target_down": DOWN}, Verdict.REFUSED, id="not-up>switch"),
    ],
)
def test_order_of_conditions(kwargs: dict[str, Any], verdict: Verdict) -> None:
    assert decide_with(**kwargs).verdict is verdict


# --- the session's facts: interrupted, incomplete, narrowed, whose failure ------------------


@pytest.mark.parametrize(
    ("facts", "verdict", "reason"),
    [
        pytest.param(
            {"interrupted": "pytest.exit: time budget", "collected": 4, "finished": 2},
            Verdict.INCONCLUSIVE,
            "inconclusive: the session was interrupted (pytest.exit: time budget); "
            "2 of 4 selected check(s) finished",
            id="pytest-exit-0",
        ),
        pytest.param(
            {"interrupted": "KeyboardInterrupt", "exitstatus": 2, "collected": 3, "finished": 1},
            Verdict.INCONCLUSIVE,
            "inconclusive: the session was interrupted (KeyboardInterrupt); "
            "1 of 3 selected check(s) finished",
            id="ctrl-c",
        ),
        pytest.param(
            {"collected": 5, "finished": 3},
            Verdict.INCONCLUSIVE,
            "inconclusive: only 3 of 5 selected check(s) finished",
            id="incomplete",
        ),
        pytest.param(
            {"collected": 2, "finished": 2, "narrowed": "--lf"},
            Verdict.INCONCLUSIVE,
            "inconclusive: the selection was narrowed by --lf (the last run's state), not the "
            "full check set; --allow-narrowed gates on it anyway",
            id="narrowed",
        ),
        pytest.param(
            {"collected": 2, "finished": 2}, Verdict.SWITCH, None, id="complete-and-passed"
        ),
    ],
)
def test_session_facts(facts: dict[str, Any], verdict: Verdict, reason: str | None) -> None:
    decision = decide_with(**facts)
    assert decision.verdict is verdict
    if reason is not None:
        assert decision.reason == reason
    assert not decision.may_return


def test_an_exit_zero_after_a_failure_is_a_failure() -> None:
    decision = decide_with(
        outcomes={"green": ColorOutcomes(passed=1, failed=1)},
        interrupted="pytest.exit: time budget",
    )
    assert decision.verdict is Verdict.FAILED
    assert decision.exit_code == ExitCode.CHECKS_FAILED
    assert not decision.may_return  # an interrupted session never moves traffic


def test_only_the_targets_own_failures_may_return_traffic() -> None:
    own = decide_with(live="green", outcomes={"green": ColorOutcomes(passed=1, failed=1)})
    assert (own.verdict, own.may_return) == (Verdict.FAILED, True)
    shared = decide_with(
        live="green",
        outcomes={"green": ColorOutcomes(passed=3), "shared": ColorOutcomes(failed=1)},
    )
    assert (shared.verdict, shared.may_return) == (Verdict.FAILED, False)
    assert shared.reason == ("checks failed (shared: 1 failed); none of green's own checks failed")


def test_vetoed_decision_is_refused() -> None:
    vetoed = decide_with().vetoed("change freeze")
    assert vetoed == Decision(Verdict.REFUSED, "vetoed: change freeze", "green", "blue")
    assert vetoed.exit_code == ExitCode.REFUSED


def test_exit_codes_are_documented() -> None:
    assert set(EXIT_CODES) == set(range(12))
    assert int(ExitCode.SWITCH_REVERTED) == 8
    table = (Path(__file__).parents[2] / "docs" / "exit-codes.md").read_text()
    for code, meaning in EXIT_CODES.items():  # docs/exit-codes.md's table says what errors.py says
        assert f"\n| {int(code)} | {meaning} |\n" in table, f"exit code {code}: docs differ"
    assert "inconclusive" in EXIT_CODES[ExitCode.INCONCLUSIVE]
    assert "refused" in EXIT_CODES[ExitCode.REFUSED]
    # every verdict maps onto a documented status
    for verdict in Verdict:
        assert Decision(verdict, "", "green", None).exit_code in EXIT_CODES


# --- outcomes.Outcomes ----------------------------------------------------------------------


def make_report(
    outcome: Literal["passed", "failed", "skipped"],
    when: Literal["setup", "call", "teardown"] = "call",
    color: str | None = "green",
    name: str = "test_health",
    **extra: Any,
) -> pytest.TestReport:
    nodeid = f"test_checks.py::{name}" + (f"[{color}]" if color else "")
    longrepr: Any = None
    if outcome == "skipped":
        longrepr = ("test_checks.py", 3, "Skipped: not here")
    elif outcome == "failed":
        longrepr = "AssertionError"
    return pytest.TestReport(
        nodeid=nodeid,
        location=("test_checks.py", 3, name),
        keywords={name: 1},
        outcome=outcome,
        longrepr=longrepr,
        when=when,
        user_properties=[(COLOR_PROPERTY, color)] if color else [],
        **extra,
    )


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        pytest.param([make_report("passed")], ColorOutcomes(passed=1), id="passed"),
        pytest.param(
            [make_report("failed")],
            ColorOutcomes(failed=1, failed_ids=["test_checks.py::test_health[green]"]),
            id="failed",
        ),
        pytest.param([make_report("skipped")], ColorOutcomes(skipped=1), id="skipped-in-call"),
        pytest.param(
            [make_report("skipped", "setup")], ColorOutcomes(skipped=1), id="skipped-by-marker"
        ),
        pytest.param(
            [make_report("skipped", wasxfail="flaky")], ColorOutcomes(xfailed=1), id="xfailed"
        ),
        pytest.param(
            [make_report("skipped", "setup", wasxfail="[NOTRUN] later")],
            ColorOutcomes(xfailed=1),
            id="xfail-not-run",
        ),
        pytest.param(
            [make_report("passed", wasxfail="flaky")], ColorOutcomes(xpassed=1), id="xpassed"
        ),
        pytest.param(
            [make_report("failed", "setup")],
            ColorOutcomes(errors=1, failed_ids=["test_checks.py::test_health[green]"]),
            id="setup-error",
        ),
        pytest.param(
            [
                make_report("passed", "setup"),
                make_report("passed"),
                make_report("failed", "teardown"),
            ],
            ColorOutcomes(passed=1, errors=1, failed_ids=["test_checks.py::test_health[green]"]),
            id="teardown-error",
        ),
        pytest.param(
            [make_report("passed", "setup"), make_report("passed", "teardown")],
            ColorOutcomes(),
            id="setup-teardown-not-counted",
        ),
    ],
)
def test_outcomes_add(reports: list[pytest.TestReport], expected: ColorOutcomes) -> None:
    outcomes = Outcomes()
    for report in reports:
        outcomes.add(report)
    assert outcomes["green"] == expected
    assert set(outcomes.as_dict()) == {"green"}


def test_outcomes_are_keyed_by_color() -> None:
    outcomes = Outcomes()
    outcomes.add(make_report("passed", color="green"))
    outcomes.add(make_report("passed", color="green", name="test_api"))
    outcomes.add(make_report("failed", color="blue"))
    outcomes.add(make_report("passed", color="shared", name="test_db"))
    outcomes.add(make_report("passed", color=None, name="test_untagged"))
    counts = outcomes.as_dict()
    assert counts["green"].passed == 2
    assert counts["blue"].failed_ids == ["test_checks.py::test_health[blue]"]
    assert counts["shared"].passed == 1
    assert counts[None].passed == 1
    assert color_of(make_report("passed", color=None)) is None


def test_color_outcomes_summary_and_ran() -> None:
    counts = ColorOutcomes(passed=2, failed=1, errors=1, skipped=3, xfailed=1, xpassed=1)
    assert counts.summary() == "2 passed, 1 failed, 1 errors, 3 skipped, 1 xfailed, 1 xpassed"
    assert counts.ran == 5
    assert ColorOutcomes().summary() == "none selected"
    assert ColorOutcomes(skipped=4).ran == 0


REAL_CHECKS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("setup fails")

@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown fails")

def test_pass(color):
    pass

def test_fail(color):
    assert color == "blue"

def test_skip(color):
    pytest.skip("not here")

@pytest.mark.skip(reason="marker")
def test_skip_marker(color):
    pass

@pytest.mark.xfail(reason="known")
def test_xfail(color):
    assert False

@pytest.mark.xfail(reason="known", strict=False)
def test_xpass(color):
    pass

@pytest.mark.xfail(reason="strict", strict=True)
def test_xpass_strict(color):
    pass

def test_setup_error(color, broken):
    pass

def test_teardown_error(color, bad_teardown):
    pass

@pytest.mark.shared
def test_shared():
    pass

def test_untagged():
    pytest.skip("no color")
"""


def test_outcomes_from_a_real_session(
    pytester: pytest.Pytester, pytestconfig: pytest.Config
) -> None:
    pytester.makepyfile(test_checks=REAL_CHECKS)
    recorder = pytester.inline_run("--env", "green", "-p", "no:cacheprovider")
    reports = recorder.getreports("pytest_runtest_logreport")
    assert all(isinstance(r, pytest.TestReport) for r in reports)

    direct, round_tripped = Outcomes(), Outcomes()
    for report in reports:
        assert isinstance(report, pytest.TestReport)
        direct.add(report)
        # what xdist does: serialise on the worker, rebuild on the controller
        data = pytestconfig.hook.pytest_report_to_serializable(config=pytestconfig, report=report)
        rebuilt = pytestconfig.hook.pytest_report_from_serializable(config=pytestconfig, data=data)
        round_tripped.add(rebuilt)

    green = direct["green"]
    assert (green.passed, green.failed, green.errors) == (2, 2, 2)
    assert (green.skipped, green.xfailed, green.xpassed) == (2, 1, 1)
    assert sorted(green.failed_ids) == [
        "test_checks.py::test_fail[green]",
        "test_checks.py::test_setup_error[green]",
        "test_checks.py::test_teardown_error[green]",
        "test_checks.py::test_xpass_strict[green]",
    ]
    assert direct["shared"] == ColorOutcomes(passed=1)
    assert direct[None] == ColorOutcomes(skipped=1)
    assert "blue" not in direct.as_dict()  # deselected by --env green
    assert round_tripped.as_dict() == direct.as_dict()


# --- lock.GateLock --------------------------------------------------------------------------


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "gate.lock"
    first = GateLock(path)
    first.acquire()
    try:
        assert first.held
        with pytest.raises(LockHeld) as info:
            GateLock(path).acquire()
        assert info.value.path == path
        assert info.value.holder.startswith(f"pid {os.getpid()} on ")
        assert str(info.value).startswith(f"another gate holds {path} (pid {os.getpid()} on ")
        # the refused attempt left the holder's line alone
        assert path.read_text().startswith(f"pid {os.getpid()} ")
    finally:
        first.release()
    assert not first.held


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "gate.lock"
    first, second = GateLock(path), GateLock(path)
    first.acquire()
    first.release()
    assert path.read_text().strip() == ""  # the holder line blanked, never truncated
    second.acquire()
    try:
        assert second.held
        with pytest.raises(LockHeld):
            first.acquire()
    finally:
        second.release()
    first.release()  # releasing a lock not held does nothing
    assert not first.held


def fail_while_holding(lock: GateLock) -> None:
    with lock.hold() as held:
        assert held.held
        raise RuntimeError("boom")


def test_hold_releases_on_error(tmp_path: Path) -> None:
    path = tmp_path / "gate.lock"
    lock = GateLock(path)
    with pytest.raises(RuntimeError, match="boom"):
        fail_while_holding(lock)
    assert not lock.held
    with GateLock(path).hold() as again:
        assert again.held


HOLDER = """
import sys
from pathlib import Path
from pytest_bluegreen.haproxy.lock import GateLock
GateLock(Path(sys.argv[1])).acquire()
print("READY", flush=True)
sys.stdin.read()
"""


def test_lock_of_a_dead_process_is_free(tmp_path: Path) -> None:
    path = tmp_path / "gate.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "READY"
        with pytest.raises(LockHeld, match=f"pid {holder.pid} on "):
            GateLock(path).acquire()
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    lock = GateLock(path)
    lock.acquire()  # the kernel dropped the dead holder's flock
    assert path.read_text().startswith(f"pid {os.getpid()} ")
    lock.release()


# --- state history ----------------------------------------------------------------------------


def entry(to_color: str, outcome: str = "switched", **fields: Any) -> HistoryEntry:
    return HistoryEntry.now(
        from_color="blue" if to_color == "green" else "green",
        to_color=to_color,
        tag="v1",
        outcome=Outcome(outcome),
        **fields,
    )


def test_missing_history_is_empty(tmp_path: Path) -> None:
    assert history.read_history(tmp_path / "nope.json") == []


def test_append_and_read_history(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.json"
    first = entry("green", reason="2 check(s) for green passed")
    second = entry("blue", "rolled-back", forced=True)
    history.append(path, first)
    history.append(path, second)
    assert history.read_history(path) == [first, second]
    data = json.loads(path.read_text())
    assert data["version"] == history.FORMAT_VERSION
    assert [e["outcome"] for e in data["history"]] == ["switched", "rolled-back"]
    assert first.host
    assert first.time.endswith("+00:00")
    # no temporary file left; the lock file of the history's read-modify-write stays
    assert sorted(p.name for p in path.parent.iterdir()) == [".state.json.lock", "state.json"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="list"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"version": 1}', id="no-history"),
        pytest.param(b'{"history": 3}', id="history-not-a-list"),
        pytest.param(b'{"history": [{"bogus": 1}]}', id="unknown-field"),
        pytest.param(b'{"history": ["x"]}', id="entry-not-an-object"),
        pytest.param(b"\xff\xfe\x00", id="binary"),
    ],
)
def test_corrupt_history_raises_state_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError, match=r"state file .*state\.json is not readable history"):
        history.read_history(path)


def test_append_never_overwrites_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{garbage")
    with pytest.raises(StateFileError, match=r"state\.json is not readable history \(Expecting"):
        history.append(path, entry("green"))
    assert path.read_text() == "{garbage"


def test_append_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    kept = entry("green")
    history.append(path, kept)
    before = path.read_bytes()

    def crash(fd: int) -> None:  # the new file written, not yet synced: the crash
        raise OSError("disk full")

    monkeypatch.setattr(os, "fdatasync", crash)  # what durable.write_durably syncs with
    with pytest.raises(OSError, match="disk full"):
        history.append(path, entry("blue"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert history.read_history(path) == [kept]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.json.lock", "state.json"]
