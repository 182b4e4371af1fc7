"""gate/run.py's branches, logic only: ``GateRun`` with an injected fake HAProxy group.

The group is the package's own ``Haproxies`` around a fake Runtime API client that answers from
memory (server states, ``show stat``, ``show info``) and fails the test on any command that
would change HAProxy. The end-to-end tests (test_gate_haproxy.py, test_truth.py,
tests/switch/test_faults.py, ...) run the same branches against a real HAProxy; these pin each
branch's report (exit code, outcome, lines, where traffic is) and its history without one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.errors import ExitCode, OutOfOrder
from pytest_bluegreen.gate.decision import Decision, SessionFacts, Verdict
from pytest_bluegreen.gate.outcomes import COLOR_PROPERTY
from pytest_bluegreen.gate.report import GateHooks
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef, ServerState, StatRow
from pytest_bluegreen.haproxy.instances import Haproxies, Instance
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.process.signals import NoSignals
from pytest_bluegreen.record.history import HistoryEntry, Outcome, read_history
from pytest_bluegreen.report.verdict import verdict
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.settings import resolve as resolve_settings
from pytest_bluegreen.switch.outcome import SwitchPlan

SERVERS = {"blue": "api_backend/blue-api", "green": "api_backend/green-api"}


class FakeApi(RuntimeApi):
    """One HAProxy in memory: each server's weight and health; reads only."""

    def __init__(self) -> None:
        super().__init__("/nonexistent/bluegreen-fake.sock")
        self.live: str | None = "blue"
        self.down: set[str] = set()  # colors whose server health checks report DOWN
        self.failure: RuntimeApiError | None = None  # every command fails with this
        self.sent: list[str] = []

    def _answer(self, command: str) -> None:
        self.sent.append(command)
        if self.failure is not None:
            raise self.failure

    def server_states(self, refs: Iterable[ServerRef]) -> dict[ServerRef, ServerState]:
        self._answer("show servers state")
        states = {}
        for color, name in SERVERS.items():
            backend, server = name.split("/")
            states[ServerRef(backend, server)] = ServerState(
                backend=backend,
                server=server,
                address="127.0.0.1",
                op_state=0 if color in self.down else 2,
                admin_state=0,
                uweight=100 if color == self.live else 0,
                iweight=100,
                check_status=6,
                check_result=0 if color in self.down else 3,
                port=8000,
            )
        return {ref: states[ref] for ref in refs}

    def show_stat(self) -> list[StatRow]:
        self._answer("show stat")
        rows = []
        for color, name in SERVERS.items():
            backend, server = name.split("/")
            status = "DOWN" if color in self.down else "UP"
            weight = 100 if color == self.live else 0
            rows.append(StatRow(backend, server, status, weight, 0, 0, 0, 0, "L7OK", {}))
        return rows

    def require_admin(self) -> None:
        self._answer("show cli level")

    def show_info(self) -> dict[str, str]:
        self._answer("show info")
        return {"Pid": "4242", "Start_time_sec": "1700000000", "Version": "2.6.12"}

    def execute(self, command: str) -> str:
        if not command.startswith("show "):
            pytest.fail(f"the branch changed HAProxy: {command!r}")
        self._answer(command)
        return "# pxname,svname\n"


class FakeHaproxies(Haproxies):
    """The HAProxy group a gate run is given: one fake instance."""

    def __init__(self) -> None:
        self.fake = FakeApi()
        instance = Instance("haproxy", self.fake.address, "http://127.0.0.1:9/")
        super().__init__([instance], {"haproxy": self.fake})


def settings_in(tmp_path: Path, **cli: Any) -> Settings:
    values = {
        "runtime_api": "/nonexistent/bluegreen-fake.sock",
        "routed_api_url": "http://127.0.0.1:9/",
        "state_file": str(tmp_path / "state.jsonl"),
        "journal_file": str(tmp_path / "journal"),
        "lock_dir": str(tmp_path / "locks"),
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    for color, server in SERVERS.items():
        lines += [f"[colors.{color}]", 'api_url = "http://127.0.0.1:9/"', f'servers = ["{server}"]']
    (tmp_path / "bluegreen.toml").write_text("\n".join(lines) + "\n")
    return resolve_settings({"env": "green", "switch": True, **cli}, {}, {}, tmp_path)


def gate(tmp_path: Path, *, hooks: GateHooks | None = None, **cli: Any) -> tuple[GateRun, FakeApi]:
    group = FakeHaproxies()
    return GateRun(settings_in(tmp_path, **cli), hooks, group), group.fake


def checked(run: GateRun, color: str, outcome: str = "passed") -> None:
    """One check of ``color`` ran with ``outcome``, as the plugin counts it."""
    run.outcomes.add(
        pytest.TestReport(
            f"t.py::test_health[{color}]",
            ("t.py", 1, "test_health"),
            {},
            outcome,  # type: ignore[arg-type]
            None,
            "call",
            user_properties=[(COLOR_PROPERTY, color)],
        )
    )


def history(tmp_path: Path) -> list[HistoryEntry]:
    path = tmp_path / "state.jsonl"
    return read_history(path) if path.exists() else []


FACTS = SessionFacts(collected=1, finished=1)


def test_a_session_that_ended_in_an_internal_error_changes_nothing(tmp_path: Path) -> None:
    run, fake = gate(tmp_path)
    report = run.finish(SessionFacts(exitstatus=ExitCode.INTERNAL_ERROR))
    assert report.exit_code == ExitCode.INTERNAL_ERROR
    assert report.decision is None
    assert report.outcome is None
    assert report.lines == ("session ended with status 3: nothing changed",)
    assert fake.sent == []  # HAProxy not even read
    assert history(tmp_path) == []


def test_failed_checks_on_the_idle_color_keep_traffic_where_it_is(tmp_path: Path) -> None:
    run, _fake = gate(tmp_path)
    checked(run, "green", "failed")
    report = run.finish(SessionFacts(exitstatus=1, collected=1, finished=1))
    assert report.exit_code == ExitCode.CHECKS_FAILED
    assert report.outcome is Outcome.FAILED
    assert report.traffic_on == "blue"
    assert report.lines[1] == "traffic stays on blue"
    assert [e.outcome for e in history(tmp_path)] == [Outcome.FAILED]


def test_a_failing_live_color_keeps_traffic_when_the_other_is_not_up(tmp_path: Path) -> None:
    run, fake = gate(tmp_path)
    fake.live = "green"
    fake.down = {"blue"}
    checked(run, "green", "failed")
    report = run.finish(SessionFacts(exitstatus=1, collected=1, finished=1))
    assert report.exit_code == ExitCode.CHECKS_FAILED
    assert report.traffic_on == "green"
    assert "blue is not UP to take traffic back" in report.lines[1]


def test_haproxy_unreadable_after_passed_checks_refuses(tmp_path: Path) -> None:
    run, fake = gate(tmp_path)
    checked(run, "green")
    fake.failure = RuntimeApiError("show servers state", "", "connection refused")
    report = run.finish(FACTS)
    assert report.exit_code == ExitCode.REFUSED
    assert report.outcome is Outcome.REFUSED
    assert report.lines == ("cannot read HAProxy: connection refused",)
    assert [e.outcome for e in history(tmp_path)] == [Outcome.REFUSED]


def test_haproxy_unreadable_after_failed_checks_keeps_pytests_status(tmp_path: Path) -> None:
    run, fake = gate(tmp_path)
    checked(run, "green", "failed")
    fake.failure = RuntimeApiError("show servers state", "", "connection refused")
    report = run.finish(SessionFacts(exitstatus=1, collected=1, finished=1))
    assert report.exit_code == ExitCode.CHECKS_FAILED
    assert report.decision is None
    assert report.lines == (
        "checks failed; HAProxy unreachable, nothing changed: connection refused",
    )


def test_a_veto_refuses_the_switch_and_changes_nothing(tmp_path: Path) -> None:
    def veto(plan: SwitchPlan, decision: Decision) -> str | None:
        return "frozen for the release"

    run, fake = gate(tmp_path, hooks=GateHooks(before_switch=veto))
    checked(run, "green")
    report = run.finish(FACTS)
    assert report.exit_code == ExitCode.REFUSED
    assert report.outcome is Outcome.REFUSED
    assert report.lines == ("vetoed: frozen for the release",)
    assert report.traffic_on == "blue"
    assert fake.live == "blue"  # FakeApi.execute fails the test on any change besides
    assert [e.outcome for e in history(tmp_path)] == [Outcome.REFUSED]


def test_a_signal_before_the_switch_stops_it_with_nothing_changed(tmp_path: Path) -> None:
    run, _fake = gate(tmp_path)
    checked(run, "green")
    signals = NoSignals()
    signals.received = "SIGTERM"
    report = run.finish(FACTS, signals)
    assert report.exit_code == ExitCode.INTERRUPTED
    assert report.decision is not None
    assert report.decision.verdict is Verdict.INCONCLUSIVE
    assert report.lines == ("interrupted by SIGTERM before the switch: nothing changed",)
    assert report.traffic_on == "blue"


def test_a_dry_run_says_what_it_would_do_and_records_nothing(tmp_path: Path) -> None:
    run, _fake = gate(tmp_path, dry_run=True)
    checked(run, "green")
    report = run.finish(FACTS)
    assert report.exit_code == ExitCode.OK
    assert report.lines[0].startswith("dry run: would switch because ")
    assert report.lines[-1] == "dry run: nothing changed"
    assert report.dry_run
    assert verdict(report)["decision"] == "would switch"
    assert history(tmp_path) == []


def test_the_report_carries_target_tag_and_counts_for_the_verdict(tmp_path: Path) -> None:
    run, _fake = gate(tmp_path, deployment_tag="v1.2.3")
    checked(run, "green", "failed")
    checked(run, "blue")
    report = run.finish(SessionFacts(exitstatus=1, collected=2, finished=2))
    assert (report.target, report.tag) == ("green", "v1.2.3")
    data = verdict(report)
    assert (data["target"], data["tag"], data["live_after"]) == ("green", "v1.2.3", "blue")
    assert data["counts"]["green"]["failed"] == 1
    assert data["counts"]["blue"]["passed"] == 1
    assert data["failed_checks"] == {"green": ["t.py::test_health[green]"]}


def test_a_forced_switch_to_the_live_color_is_a_no_op(tmp_path: Path) -> None:
    run, fake = gate(tmp_path)
    fake.live = "green"
    report = run.switch_forced("green", "operator")
    assert report.exit_code == ExitCode.OK
    assert report.decision is not None
    assert report.decision.verdict is Verdict.NOOP
    assert report.lines == ("green is already live; nothing to switch",)
    assert history(tmp_path) == []  # nothing happened: nothing recorded


def test_a_forced_switch_to_a_color_not_up_is_refused_and_recorded_forced(
    tmp_path: Path,
) -> None:
    run, fake = gate(tmp_path)
    fake.down = {"green"}
    report = run.switch_forced("green", "operator")
    assert report.exit_code == ExitCode.REFUSED
    assert report.lines[0].startswith("HAProxy does not report green UP: ")
    [entry] = history(tmp_path)
    assert (entry.outcome, entry.forced) == (Outcome.REFUSED, True)


def test_finish_and_deploy_without_what_they_need_raise_a_named_error(tmp_path: Path) -> None:
    """Explicit checks, not asserts: ``python -O`` would strip an assert."""
    run, fake = gate(tmp_path)
    with pytest.raises(OutOfOrder, match="deploy"):
        run.deploy()  # no --deploy TAG
    run.target = None
    with pytest.raises(OutOfOrder, match="target"):
        run.finish(FACTS)
    assert fake.sent == []
