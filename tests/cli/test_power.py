"""``bluegreen drill --power`` without Docker: the ladder, the early stop, the smallest fault
caught, the table and lines (pytest_bluegreen/cli/power.py), the faults' variables in the
deploy's environment, and a real SIGTERM in the middle of a gate: the ladder ends, the idle
color is deployed back, exit 2 (cli/powerdrill.py). On the real stack: tests/stack/
test_docker_stack.py ``test_the_power_drill_finds_the_smallest_fault_the_gate_catches``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_bluegreen.cli import powerdrill
from pytest_bluegreen.cli.power import (
    Fault,
    Kind,
    Plan,
    PowerReport,
    Run,
    Stop,
    needed,
    run_ladder,
    settled,
)
from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.settings import Settings, resolve
from tests.cli.test_commands import (
    absent,
    documented_table,
    merged,
    misfits,
    observed,
    undocumented,
)
from tests.support.stack import wait_for

PLAN = Plan(
    latency=(2.0, 5.0, 10.0, 20.0, 50.0),
    errors=(0.5, 1.0, 2.0, 5.0),
    runs=10,
    tail=1.0,
    baseline_ms=4.0,
)


@pytest.mark.parametrize(
    ("runs", "expected"), [(1, 1), (2, 2), (3, 3), (5, 5), (9, 9), (10, 9), (11, 10), (20, 18)]
)
def test_runs_needed_for_ninety_percent(runs: int, expected: int) -> None:
    assert needed(runs) == expected


@pytest.mark.parametrize(
    ("caught", "ran", "runs", "expected"),
    [
        (0, 1, 10, None),  # 9 of the 9 left would still make it
        (0, 2, 10, Stop.OUT_OF_REACH),  # two missed of 10: at most 8
        (1, 2, 10, None),
        (8, 9, 10, None),  # the 10th decides
        (9, 9, 10, Stop.REACHED),  # certain with one to go
        (8, 10, 10, Stop.OUT_OF_REACH),
        (1, 1, 1, Stop.REACHED),
        (0, 1, 1, Stop.OUT_OF_REACH),
        (1, 1, 2, None),
        (2, 2, 2, Stop.REACHED),
        (1, 2, 2, Stop.OUT_OF_REACH),
    ],
)
def test_a_magnitude_settles_once_ninety_percent_is_certain_or_out_of_reach(
    caught: int, ran: int, runs: int, expected: Stop | None
) -> None:
    assert settled(caught, ran, runs) == expected


def test_the_ladder_scales_latency_by_the_baseline_and_errors_by_the_requests() -> None:
    latency = PLAN.ladder(Kind.LATENCY)
    assert [f.label for f in latency] == ["+2%", "+5%", "+10%", "+20%", "+50%"]
    assert [f.latency_ms for f in latency] == [0.08, 0.2, 0.4, 0.8, 2.0]
    assert latency[2].injected() == "+0.4 ms on every /api/* request(s)"
    assert latency[2].variables() == {
        "FAULT_LATENCY_MS": "0.4",
        "FAULT_LATENCY_SHARE": "1",
        "FAULT_ERROR_RATE": "0",
    }
    errors = PLAN.ladder(Kind.ERRORS)
    assert [f.label for f in errors] == ["0.5%", "1%", "2%", "5%"]
    assert [f.error_rate for f in errors] == [0.005, 0.01, 0.02, 0.05]
    assert errors[1].injected() == "HTTP 500 on 1.00% of /api/* requests"
    assert errors[1].variables()["FAULT_ERROR_RATE"] == "0.01"
    assert PLAN.control.variables() == {
        "FAULT_LATENCY_MS": "0",
        "FAULT_LATENCY_SHARE": "1",
        "FAULT_ERROR_RATE": "0",
    }
    tail = Plan((10.0,), (1.0,), 10, 0.1, 150.0).ladder(Kind.LATENCY)[0]
    assert tail.injected() == "+15 ms on 10% of the /api/* request(s)"
    assert tail.variables()["FAULT_LATENCY_SHARE"] == "0.1"
    assert PLAN.most_gates == 100


@dataclass
class FakeStack:
    """The gate as a table: each fault's verdicts, run by run (``switch`` when it runs out),
    run n taking n seconds; every deploy and gate recorded, in order."""

    verdicts: dict[str, list[str]]
    failing_deploy: str | None = None
    calls: list[str] = field(default_factory=list)
    stop_after: int | None = None  # the gate's number after which stopped() says so
    stop_at: str | None = None  # a call or progress line from which on stopped() says so
    said: list[str] = field(default_factory=list)

    def deploy(self, fault: Fault) -> str | None:
        self.calls.append(f"deploy {fault.kind} {fault.label}")
        return "no" if fault.label == self.failing_deploy else None

    def gate(self, fault: Fault, number: int) -> Run:
        self.calls.append(f"gate {fault.kind} {fault.label} {number}")
        planned = self.verdicts.get(f"{fault.kind} {fault.label}", [])
        verdict = planned[number - 1] if number <= len(planned) else "switch"
        return Run(verdict, float(number))

    def stopped(self) -> str | None:
        gates = sum(call.startswith("gate") for call in self.calls)
        at = self.stop_at is not None and any(
            line.startswith(self.stop_at) for line in [*self.calls, *self.said]
        )
        return (
            "interrupted by SIGTERM"
            if at or (self.stop_after and gates >= self.stop_after)
            else None
        )

    def run(self, plan: Plan = PLAN) -> PowerReport:
        report = run_ladder(
            plan,
            deploy=self.deploy,
            gate=self.gate,
            stopped=self.stopped,
            progress=self.said.append,
        )
        assert all(line.startswith("power: ") for line in self.said)
        return report


def test_each_kind_climbs_until_a_magnitude_reaches_ninety_percent() -> None:
    stack = FakeStack(
        {
            "control 0": ["switch"] * 9 + ["failed"],  # one false alarm in 10
            "latency +5%": ["failed", "switch", "failed", "switch"],  # out of reach at 2 missed
            "latency +10%": ["failed"] * 8 + ["switch", "failed"],  # 9 of 10 on the last
            "errors 0.5%": ["switch", "switch"],
            "errors 1%": ["switch", "switch"],
            "errors 2%": ["failed"] * 9,  # certain after 9: the 10th is not run
        }
    )
    report = stack.run()
    ran = [
        (m.fault.kind.value, m.fault.label, len(m.runs), m.caught, m.stop) for m in report.measured
    ]
    assert ran == [
        ("control", "0", 10, 1, Stop.ALL_RUN),
        ("latency", "+2%", 2, 0, Stop.OUT_OF_REACH),
        ("latency", "+5%", 4, 2, Stop.OUT_OF_REACH),
        ("latency", "+10%", 10, 9, Stop.REACHED),
        ("errors", "0.5%", 2, 0, Stop.OUT_OF_REACH),
        ("errors", "1%", 2, 0, Stop.OUT_OF_REACH),
        ("errors", "2%", 9, 9, Stop.REACHED),
    ]
    # each magnitude deployed once, before its gates; nothing above a reached one
    deploys = [c for c in stack.calls if c.startswith("deploy")]
    assert deploys == [
        "deploy control 0",
        "deploy latency +2%",
        "deploy latency +5%",
        "deploy latency +10%",
        "deploy errors 0.5%",
        "deploy errors 1%",
        "deploy errors 2%",
    ]
    assert stack.calls.index("deploy latency +10%") < stack.calls.index("gate latency +10% 1")
    assert report.of(PLAN.ladder(Kind.LATENCY)[3]).stop is Stop.NOT_RUN
    assert report.control.false_alarms == 1
    assert report.interrupted is None
    # the median of the kind's runs' seconds: 1,2 + 1..4 + 1..10 -> 3.5; 1,2 + 1,2 + 1..9 -> 3
    assert report.lines() == [
        "latency: caught>=90% at +10% (n=10), false_alarms=1/10, seconds=3.5",
        "errors: caught>=90% at 2% (n=9), false_alarms=1/10, seconds=3.0",
    ]


def test_a_kind_nothing_catches_says_none() -> None:
    plan = Plan((2.0, 5.0), (1.0,), 3, 1.0, 4.0)
    report = FakeStack({"latency +5%": ["failed", "failed", "switch"]}).run(plan)
    # +2%: out of reach after its first miss (3 of 3 needed); +5%: 2 of 3
    assert [len(m.runs) for m in report.measured] == [3, 1, 3, 1]
    assert report.lines()[0] == "latency: caught>=90% at none, false_alarms=0/3, seconds=1.5"
    assert report.smallest_caught(Kind.LATENCY) is None
    assert report.smallest_caught(Kind.ERRORS) is None


def test_the_table_has_every_magnitude_and_why_it_ended() -> None:
    plan = Plan((10.0, 300.0, 500.0), (20.0,), 2, 1.0, 3.0)
    report = FakeStack(
        {"latency +300%": ["failed", "failed"], "errors 20%": ["failed", "inconclusive"]}
    ).run(plan)
    assert report.table() == [
        "kind     magnitude  injected                               caught  verdicts",
        "control  0          nothing                                -       switch 2"
        "                  false alarms 0/2",
        "latency  +10%       +0.3 ms on every /api/* request(s)     0/1     switch 1"
        "                  out of reach",
        "latency  +300%      +9 ms on every /api/* request(s)       2/2     failed 2"
        "                  reached",
        "latency  +500%      +15 ms on every /api/* request(s)      -       -"
        "                         not run",
        "errors   20%        HTTP 500 on 20.00% of /api/* requests  1/2     failed 1, "
        "inconclusive 1  out of reach",
    ]
    assert report.lines()[1] == "errors: caught>=90% at none, false_alarms=0/2, seconds=1.5"


def test_a_failed_deploy_ends_the_ladder_and_says_so() -> None:
    stack = FakeStack({}, failing_deploy="+5%")
    report = stack.run(Plan((2.0, 5.0, 10.0), (1.0,), 1, 1.0, 4.0))
    assert report.interrupted == "no"
    assert [m.fault.label for m in report.measured] == ["0", "+2%"]
    assert stack.calls[-1] == "deploy latency +5%"


def test_a_stop_during_a_gate_drops_that_run_and_gates_nothing_more() -> None:
    stack = FakeStack({"control 0": ["switch"] * 3}, stop_after=2)
    report = stack.run(Plan((2.0,), (1.0,), 3, 1.0, 4.0))
    assert stack.calls == ["deploy control 0", "gate control 0 1", "gate control 0 2"]
    assert [(m.fault.label, len(m.runs), m.stop) for m in report.measured] == [
        ("0", 1, Stop.INTERRUPTED)
    ]
    assert report.interrupted == "interrupted by SIGTERM"
    assert report.lines() == [
        "latency: caught>=90% at none, false_alarms=0/1, seconds=-",
        "errors: caught>=90% at none, false_alarms=0/1, seconds=-",
    ]


def test_a_signal_during_a_deploy_gates_nothing_more() -> None:
    """A SIGTERM noted while the fault was being deployed (the deploy ends first): the ladder
    ends before that magnitude's first gate, not after a whole gate nobody waits for."""
    stack = FakeStack({}, stop_at="deploy latency +2%")
    report = stack.run(Plan((2.0, 5.0), (1.0,), 2, 1.0, 4.0))
    assert stack.calls[-1] == "deploy latency +2%"
    assert [(m.fault.label, len(m.runs), m.stop) for m in report.measured] == [
        ("0", 2, Stop.ALL_RUN),
        ("+2%", 0, Stop.INTERRUPTED),
    ]
    assert report.interrupted == "interrupted by SIGTERM"


def test_a_deploy_a_ctrl_c_cut_short_ends_the_ladder_on_the_signal() -> None:
    """A terminal's Ctrl-C reaches the deploy's docker CLI too: its failure is the signal's."""
    stack = FakeStack({}, failing_deploy="+2%", stop_at="deploy latency +2%")
    report = stack.run(Plan((2.0, 5.0), (1.0,), 1, 1.0, 4.0))
    assert stack.calls[-1] == "deploy latency +2%"
    assert report.interrupted == "interrupted by SIGTERM"


def test_a_signal_between_two_gates_starts_no_other() -> None:
    """Noted after a run counted (no child ran to pass it on to): no next gate."""
    stack = FakeStack({}, stop_at="power: control 0 run 1:")
    report = stack.run(Plan((2.0,), (1.0,), 3, 1.0, 4.0))
    assert stack.calls == ["deploy control 0", "gate control 0 1"]
    assert [(len(m.runs), m.stop) for m in report.measured] == [(1, Stop.INTERRUPTED)]
    assert report.interrupted == "interrupted by SIGTERM"


def test_the_verdict_json_power_object() -> None:
    plan = Plan((300.0,), (20.0,), 2, 1.0, 3.0)
    report = FakeStack({"latency +300%": ["failed"] * 2, "errors 20%": ["failed"] * 2}).run(plan)
    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["latency"]["caught_at"] == 300.0
    assert data["latency"]["n"] == 2
    assert data["errors"]["caught_at"] == 20.0
    assert data["false_alarms"] == 0
    assert data["control_runs"] == 2
    assert data["latency"]["magnitudes"] == [
        {
            "percent": 300.0,
            "label": "+300%",
            "injected": "+9 ms on every /api/* request(s)",
            "latency_ms": 9.0,
            "latency_share": 1.0,
            "error_rate": 0.0,
            "runs": 2,
            "caught": 2,
            "stop": "reached",
            "verdicts": {"failed": 2},
            "seconds": [1.0, 2.0],
        }
    ]
    assert data["lines"] == report.lines()


def test_the_fault_reaches_the_deploys_environment_only_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLUE_FAULT_ERROR_RATE", "0.5")  # the user's own, put back afterwards
    monkeypatch.delenv("BLUE_FAULT_LATENCY_MS", raising=False)
    fault = PLAN.ladder(Kind.LATENCY)[2]
    with powerdrill.fault_environment("blue", fault) as wanted:
        assert {k: os.environ[k] for k in wanted} == {
            "BLUE_FAULT_LATENCY_MS": "0.4",
            "BLUE_FAULT_LATENCY_SHARE": "1",
            "BLUE_FAULT_ERROR_RATE": "0",
        }
        assert not any(k.startswith("GREEN_FAULT") for k in os.environ)
    assert os.environ["BLUE_FAULT_ERROR_RATE"] == "0.5"
    assert "BLUE_FAULT_LATENCY_MS" not in os.environ


# --- a real SIGTERM in the middle of a gate --------------------------------------------------

SCENE = powerdrill.Scene(live="green", idle="blue", tag="v1.1.0", before="v1.0.0")
NO_FAULT = {
    "BLUE_FAULT_LATENCY_MS": "0",
    "BLUE_FAULT_LATENCY_SHARE": "1",
    "BLUE_FAULT_ERROR_RATE": "0",
}


GATE = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('started'); time.sleep(60)"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "bluegreen.toml").write_text(
        'runtime_api = "127.0.0.1:1"\ndrill_power_runs = 3\ndrill_power_latency = [10]\n'
        "drill_power_errors = [1]\n"
    )
    return resolve({}, {}, {}, tmp_path)


@pytest.fixture
def sigterm_to_us() -> Iterator[Callable[[Path], None]]:
    """Sends this process a SIGTERM once the file exists (the gate's child started)."""
    threads: list[threading.Thread] = []

    def arm(started: Path) -> None:
        def send() -> None:
            wait_for(started.exists, timeout=30, what="the gate's child to start")
            os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=send, daemon=True)
        threads.append(thread)
        thread.start()

    yield arm
    for thread in threads:
        thread.join(30)


def test_a_sigterm_during_a_gate_ends_the_ladder_and_deploys_the_idle_color_back(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sigterm_to_us: Callable[[Path], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The SIGTERM reaches the gate's child (a real process, which dies of it) and is noted:
    that run does not count, nothing more is gated, blue is deployed back at the tag it ran
    without faults, the lines say what ran, ``power`` is in verdict.json, and the exit is 2."""
    deploys: list[tuple[str, str, dict[str, str]]] = []

    def deploy_only(s: Settings, color: str, tag: str, *, skip_backup: bool) -> int:
        faults = {k: v for k, v in os.environ.items() if k.startswith(("BLUE_F", "GREEN_F"))}
        deploys.append((color, tag, faults))
        return int(ExitCode.OK)

    started = tmp_path / "started"
    monkeypatch.setattr(powerdrill, "deploy_only", deploy_only)
    monkeypatch.setattr(powerdrill, "measure_baseline", lambda s, live: 4.0)
    monkeypatch.setattr(
        powerdrill,
        "gate_command",
        lambda *args: [sys.executable, "-c", GATE, str(started)],
    )
    sigterm_to_us(started)
    previous = signal.getsignal(signal.SIGTERM)
    code = powerdrill.measured(
        argparse.Namespace(),
        settings,
        [],
        powerdrill.Scene(live="green", idle="blue", tag="v1.1.0", before="v1.0.0"),
    )
    assert code == ExitCode.INTERRUPTED
    assert signal.getsignal(signal.SIGTERM) == previous  # the handlers as they were
    assert deploys == [
        (
            "blue",
            "v1.1.0",
            {
                "BLUE_FAULT_LATENCY_MS": "0",
                "BLUE_FAULT_LATENCY_SHARE": "1",
                "BLUE_FAULT_ERROR_RATE": "0",
            },
        ),
        ("blue", "v1.0.0", NO_FAULT),  # back at its tag, without faults
    ]
    out = capsys.readouterr().out
    assert "power: interrupted by SIGTERM: the lines count what ran" in out
    assert "latency: caught>=90% at none, false_alarms=0/0, seconds=-" not in out
    assert "\nlatency: caught>=90% at none, false_alarms=-, seconds=-\n" in out
    assert (settings.reports.verdict_file.parent / "drill" / "power" / "control-1.log").exists()
    power = json.loads(settings.reports.verdict_file.read_text())["power"]
    assert power["interrupted"] == "interrupted by SIGTERM"
    assert power["control"]["stop"] == "interrupted"
    assert (power["live"], power["idle"], power["tag"]) == ("green", "blue", "v1.1.0")


VERDICT = (  # the gate's child: writes the verdict sys.argv[2] to the verdict file sys.argv[1]
    "import json, pathlib, sys; "
    "pathlib.Path(sys.argv[1]).write_text(json.dumps({'verdict': sys.argv[2]}))"
)


def fake_stack(
    monkeypatch: pytest.MonkeyPatch, gate: list[str]
) -> list[tuple[str, str, dict[str, str]]]:
    """The deploys recorded with the fault variables they saw; the gate a real child running
    ``gate`` (its arguments), the live color's median 4 ms."""
    deploys: list[tuple[str, str, dict[str, str]]] = []

    def deploy_only(s: Settings, color: str, tag: str, *, skip_backup: bool) -> int:
        faults = {k: v for k, v in os.environ.items() if k.startswith(("BLUE_F", "GREEN_F"))}
        deploys.append((color, tag, faults))
        return int(ExitCode.OK)

    monkeypatch.setattr(powerdrill, "deploy_only", deploy_only)
    monkeypatch.setattr(powerdrill, "measure_baseline", lambda s, live: 4.0)
    monkeypatch.setattr(powerdrill, "gate_command", lambda *args: [sys.executable, "-c", *gate])
    return deploys


def test_the_idle_color_comes_back_without_faults_whatever_the_shell_says(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault variable left in the operator's shell (Compose would take it over the tags
    file) does not come back with the idle color: its deploy back sets every one to none."""
    monkeypatch.setenv("BLUE_FAULT_ERROR_RATE", "0.5")
    monkeypatch.delenv("BLUE_FAULT_LATENCY_MS", raising=False)
    monkeypatch.delenv("BLUE_FAULT_LATENCY_SHARE", raising=False)
    verdict_file = str(settings.reports.verdict_file)
    deploys = fake_stack(monkeypatch, [VERDICT, verdict_file, "switch"])
    code = powerdrill.measured(argparse.Namespace(), settings, [], SCENE)
    assert code == ExitCode.OK
    assert deploys[0] == ("blue", "v1.1.0", NO_FAULT)  # the control
    assert deploys[-1] == ("blue", "v1.0.0", NO_FAULT)  # back, without faults
    assert os.environ["BLUE_FAULT_ERROR_RATE"] == "0.5"  # the shell's own, as it was


def test_a_gate_that_gives_no_verdict_ends_the_drill_with_its_exit_code(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gate that crashed or could not start (here: exit 4, no verdict written) measured
    nothing: no run counts as a miss or a false alarm, nothing more is gated, the idle color is
    deployed back, and the drill exits with the gate's code."""
    deploys = fake_stack(monkeypatch, ["import sys; sys.exit(4)"])
    code = powerdrill.measured(argparse.Namespace(), settings, [], SCENE)
    assert code == ExitCode.USAGE_ERROR
    assert [tag for _, tag, _ in deploys] == ["v1.1.0", "v1.0.0"]
    logs = settings.reports.verdict_file.parent / "drill" / "power"
    assert sorted(p.name for p in logs.iterdir()) == ["control-1.log"]
    power = json.loads(settings.reports.verdict_file.read_text())["power"]
    assert power["interrupted"] == (
        f"the gate of control 0 (run 1) gave no verdict (exit 4): {logs / 'control-1.log'}"
    )
    assert power["control_runs"] == 0
    assert "false_alarms=-" in capsys.readouterr().out


def test_an_allure_folder_it_cannot_write_costs_a_warning_not_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lines come after the optional reports: one of them failing must not lose the
    measure of a drill that took minutes (nor exit with a traceback)."""
    (tmp_path / "allure").write_text("a file where the folder should be\n")
    (tmp_path / "bluegreen.toml").write_text(
        'runtime_api = "127.0.0.1:1"\nallure_dir = "allure"\ndrill_power_runs = 1\n'
        "drill_power_latency = [10]\ndrill_power_errors = [1]\n"
    )
    settings = resolve({}, {}, {}, tmp_path)
    fake_stack(monkeypatch, [VERDICT, str(settings.reports.verdict_file), "failed"])
    code = powerdrill.measured(argparse.Namespace(), settings, [], SCENE)
    assert code == ExitCode.OK
    out = capsys.readouterr().out
    assert "power: warning: no Allure result in" in out
    assert "\nlatency: caught>=90% at +10% (n=1), false_alarms=1/1, seconds=" in out
    assert json.loads(settings.reports.verdict_file.read_text())["power"]["runs"] == 1


def test_power_is_the_documented_schema() -> None:
    """docs/json.md's ``power`` table: every field of the document, and of the table, with its
    type, over a full run and one interrupted before anything was caught."""
    fields, _ = documented_table("power")
    scene = powerdrill.Scene(live="green", idle="blue", tag="v1.1.0", before="v1.0.0")
    full = FakeStack({"latency +5%": ["failed"] * 9, "errors 1%": ["failed"] * 9}).run()
    cut = FakeStack({}, stop_after=1).run()
    documents = [powerdrill.power_document(r, scene, "/api/items") for r in (full, cut)]
    assert documents[1]["interrupted"] == "interrupted by SIGTERM"
    seen = merged(*(observed(d, fields) for d in documents))
    assert (undocumented(seen, fields), absent(seen, fields), misfits(seen, fields)) == ([], [], {})
