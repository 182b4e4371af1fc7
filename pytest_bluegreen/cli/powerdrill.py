"""``bluegreen drill --power``: how sensitive the gate is, measured on the real stack.

First the live color's median latency on ``drill_load_path`` (:data:`BASELINE_REQUESTS`
requests, one at a time, to its own URL): the latency ladder's 100%. Then the live color's tag
is deployed to the idle color with each fault of the ladder (:mod:`.power`: the control
first), and each is gated as the drill gates a variant -- a dry run of ``--switch``, ``-m
drill_markers``, the output in ``reports/drill/power/KIND-MAGNITUDE-N.log``: nothing ever
takes traffic. Being the live color's own build, the control differs from it in nothing.

The faults reach the app through Compose's variables of the idle color,
``<COLOR>_FAULT_LATENCY_MS``, ``<COLOR>_FAULT_LATENCY_SHARE`` and ``<COLOR>_FAULT_ERROR_RATE``,
set in the deploy's environment only (Compose takes them before the tags file's; the bundled
Compose file hands them to Jarvis), never written down: no later deploy inherits a fault.

Afterwards the idle color is deployed back at the tag it ran, without faults -- also after a
Ctrl-C or SIGTERM, which end the drill once the deploy or gate under way has ended (a gate's
child pytest gets the signal and stops; that run does not count): exit 2. A SIGKILL leaves the
idle color running its last fault; it takes no traffic, and its next deploy replaces it. A
gate that gives no verdict (crashed, could not start) ends the drill too, with its exit code.
The result: its table and lines, ``power`` in ``verdict.json``, and a result of its own in the
Allure results when ``allure_dir`` is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.engines.compose import TagsFile, color_variable
from pytest_bluegreen.errors import ExitCode, Refused
from pytest_bluegreen.judge.load import run_load
from pytest_bluegreen.process.child import run_child
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.report.allure import CommandResult, Step, write_command_result
from pytest_bluegreen.report.verdict import write_verdict
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.reading import live_color

from .deploying import deploy_only
from .drill import gate_command, read_outcome
from .inconfig import DRY_NOTHING, UsageProblem, in_config, progress, report_lines
from .power import Fault, Kind, Plan, PowerReport, Run, Stop, run_ladder

__all__ = [
    "BASELINE_REQUESTS",
    "Scene",
    "cmd_power",
    "fault_environment",
    "measure_baseline",
    "power_document",
]

BASELINE_REQUESTS = 100  # GETs of the live color's load path, one at a time: its median ...
BASELINE_SECONDS = 30.0  # ... within at most this long


@contextlib.contextmanager
def fault_environment(color: str, fault: Fault) -> Iterator[dict[str, str]]:
    """The fault's Compose variables of ``color`` in this process's environment while the
    engine deploys it (the docker CLI it runs inherits them), as they were afterwards."""
    wanted = {color_variable(color, name): value for name, value in fault.variables().items()}
    saved = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield wanted
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def measure_baseline(settings: Settings, live: str) -> float:
    """The live color's median latency (ms) on ``drill_load_path``; Refused when it answers
    an error (a latency ladder scaled by a failing color would mean nothing)."""
    path = settings.drill.drill_load_path
    result = run_load(
        settings.topology.color[live].api_url + path,
        total=BASELINE_REQUESTS,
        duration=BASELINE_SECONDS,
        concurrency=1,
        kinds=("keepalive-get",),
        timeout=settings.checks.http_timeout,
        color_header=settings.topology.color_header,
    )
    if not result.count or result.failed:
        raise Refused(
            f"refused: {live}'s {path} answered {len(result.failed)} of {result.count} "
            "request(s) with an error: no baseline latency for the latency ladder"
        )
    return round(result.latency_ms(50), 2)


@dataclass
class PowerTrial:
    """Deploys one fault to the idle color, and gates it once."""

    args: argparse.Namespace
    settings: Settings
    extra: Sequence[str]
    idle: str
    tag: str
    signals: DeferredSignals
    logs: Path
    deploy_failed: str | None = None
    no_verdict: tuple[str, int] | None = None  # a gate that judged nothing: why, its exit code

    def stopped(self) -> str | None:
        """What ends the drill before its end: a signal, or a gate that gave no verdict."""
        if self.signals.received:
            return f"interrupted by {self.signals.received}"
        return self.no_verdict[0] if self.no_verdict else None

    def deploy(self, fault: Fault) -> str | None:
        what = f"{self.idle} {self.tag} with {fault.injected()}"
        progress(f"power: {fault.kind} {fault.label}: {what}")
        with fault_environment(self.idle, fault):
            code = deploy_only(self.settings, self.idle, self.tag, skip_backup=True)
        if code == ExitCode.OK:
            return None
        self.deploy_failed = f"the deploy of {what} failed"
        return self.deploy_failed

    def gate(self, fault: Fault, number: int) -> Run:
        settings = self.settings
        verdict_file = settings.reports.verdict_file
        with contextlib.suppress(OSError):
            verdict_file.unlink(missing_ok=True)  # a gate that writes none is not read stale
        flags = [f"--env={self.idle}", "-m", settings.drill.drill_markers, "--switch", "--dry-run"]
        command = gate_command(self.args, settings, flags, self.tag, self.extra)
        log = self.logs / f"{fault.slug}-{number}.log"
        started = time.monotonic()
        with log.open("w") as out:
            code = run_child(
                command, stdout=out, stderr=subprocess.STDOUT, on_signal=self.signals.notice
            )
        verdict, data = read_outcome(verdict_file, code)
        if not data.get("verdict") and self.no_verdict is None:  # crashed, or never started
            why = f"the gate of {fault.kind} {fault.label} (run {number}) gave no verdict"
            self.no_verdict = (f"{why} (exit {code}): {log}", code)
        return Run(verdict, time.monotonic() - started)


@dataclass(frozen=True)
class Scene:
    """The colors as the drill found them: the live one's tag goes to the idle one."""

    live: str
    idle: str
    tag: str  # the live color's
    before: str | None  # the idle color's, deployed back afterwards (None: unknown)


def dry_run_lines(settings: Settings, scene: Scene) -> list[str]:
    drill = settings.drill
    live, idle, tag, before = scene.live, scene.idle, scene.tag, scene.before
    plan = Plan(drill.drill_power_latency, drill.drill_power_errors, drill.drill_power_runs,
                drill.drill_power_tail, 100.0)  # fmt: skip
    latency = ", ".join(f.label for f in plan.ladder(Kind.LATENCY))
    on = "every" if plan.tail == 1 else f"{plan.tail:.0%} of the"
    return [
        f"dry run: would measure {live}'s median latency on {drill.drill_load_path}, then "
        f"deploy {tag} to {idle} with each fault and gate it (a dry run of -m "
        f"{drill.drill_markers!r}) up to {plan.runs} time(s), at most {plan.most_gates} gates:",
        "  control: no fault (false alarms)",
        f"  latency: {latency} of that median on {on} /api/* request(s)",
        "  errors: " + ", ".join(f.label for f in plan.ladder(Kind.ERRORS)) + " of /api/* "
        "answering 500",
        f"  then {idle} back to {before or tag}, without faults",
        DRY_NOTHING,
    ]


def cmd_power(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.only:
        raise UsageProblem("drill --power gates injected faults, not [drill] variants: no --only")

    def act(config: pytest.Config, settings: Settings) -> int:
        if settings.compose.deploy_engine != "compose":
            raise UsageProblem(
                "drill --power injects its faults through Compose's variables: "
                'deploy_engine = "compose" only'
            )
        live = live_color(settings.haproxies(), settings.topology)
        if live is None:
            raise UsageProblem("no single color is live: the drill needs an idle color")
        idle = settings.topology.other(live)
        tags = TagsFile(settings.state.tags_file)
        tag, before = tags.tag_of(live), tags.tag_of(idle)
        if tag is None:
            raise UsageProblem(
                f"{live}'s deployed tag is not known ({tags.path}): drill --power deploys it "
                f"to {idle} with each fault"
            )
        scene = Scene(live, idle, tag, before)
        if settings.run.dry_run:
            return report_lines(dry_run_lines(settings, scene), ExitCode.OK)
        return measured(args, settings, extra, scene)

    return in_config(args, act)


def measured(
    args: argparse.Namespace, settings: Settings, extra: Sequence[str], scene: Scene
) -> int:
    drill = settings.drill
    live, idle, tag, before = scene.live, scene.idle, scene.tag, scene.before
    baseline = measure_baseline(settings, live)
    plan = Plan(drill.drill_power_latency, drill.drill_power_errors, drill.drill_power_runs,
                drill.drill_power_tail, baseline)  # fmt: skip
    progress(
        f"power: {live}'s median latency on {drill.drill_load_path}: {baseline:g} ms (of "
        f"{BASELINE_REQUESTS} requests), the latency ladder's 100%; at most {plan.most_gates} "
        f"gates of {tag} on {idle}"
    )
    logs = settings.reports.verdict_file.parent / "drill" / "power"
    logs.mkdir(parents=True, exist_ok=True)
    with DeferredSignals() as signals:
        trial = PowerTrial(args, settings, extra, idle, tag, signals, logs)
        try:
            report = run_ladder(
                plan,
                deploy=trial.deploy,
                gate=trial.gate,
                stopped=trial.stopped,
                progress=progress,
            )
        finally:
            restored = restore(settings, idle, before or tag)
    publish(settings, report, scene)
    if signals.received:
        return int(ExitCode.INTERRUPTED)
    if trial.no_verdict is not None:  # the gate's own code: its log says why
        return trial.no_verdict[1] or int(ExitCode.INTERNAL_ERROR)
    failed = trial.deploy_failed or not restored
    return int(ExitCode.DEPLOY_FAILED if failed else ExitCode.OK)


def restore(settings: Settings, idle: str, tag: str) -> bool:
    """The idle color back at ``tag``, without faults; False (said so) when it failed."""
    progress(f"power: {idle} back to {tag}, without faults")
    with fault_environment(idle, Fault(Kind.CONTROL, 0.0)):  # none, whatever the shell says
        if deploy_only(settings, idle, tag, skip_backup=True) == ExitCode.OK:
            return True
    progress(
        f"power: warning: {idle} is not back at {tag}: it may run a fault still (it takes no "
        f"traffic); deploy it again: bluegreen deploy --target-color {idle} "
        f"--deployment-tag {tag} --skip-tests"
    )
    return False


def power_document(report: PowerReport, scene: Scene, load_path: str) -> dict[str, Any]:
    """``power`` in verdict.json (docs/json.md)."""
    return {
        **report.as_dict(),
        **{"live": scene.live, "idle": scene.idle, "tag": scene.tag, "load_path": load_path},
    }


def publish(settings: Settings, report: PowerReport, scene: Scene) -> None:
    """``power`` in verdict.json and the Allure result, then the table and the lines (last:
    the result)."""
    data = power_document(report, scene, settings.drill.drill_load_path)
    path = settings.reports.verdict_file
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        verdict = {}
    warning = write_verdict(path, {**(verdict if isinstance(verdict, dict) else {}), "power": data})
    progress(warning or f"power: in {path} (power)")
    alluredir = settings.reports.allure_dir
    if alluredir is not None:
        result = CommandResult(
            name="drill --power",
            status="broken" if report.interrupted else "passed",
            message="; ".join(report.lines()),
            attachments={
                "power": "\n".join([*report.table(), "", *report.lines()]) + "\n",
                "power.json": json.dumps(data, indent=2),
            },
            steps=allure_steps(report),
        )
        try:
            written = write_command_result(alluredir, result)
        except OSError as exc:  # an optional report: the lines below are the result
            progress(f"power: warning: no Allure result in {alluredir}: {exc}")
        else:
            progress(f"power: the Allure result is {written}")
    for line in report.table():
        print(line)
    if report.interrupted:
        progress(f"power: {report.interrupted}: the lines count what ran")
    for line in report.lines():
        print(line, flush=True)


STEP_STATUS = {  # a magnitude's step in the Allure result
    Stop.REACHED: "passed",
    Stop.OUT_OF_REACH: "failed",
    Stop.NOT_RUN: "skipped",
    Stop.INTERRUPTED: "broken",
}


def allure_steps(report: PowerReport) -> list[Step]:
    steps = []
    for fault in report.plan.faults():
        m = report.of(fault)
        if fault.kind is Kind.CONTROL:
            shown = f"false alarms {m.false_alarms}/{len(m.runs)}"
            alarms = "failed" if m.false_alarms else "passed"
            status = alarms if m.stop is Stop.ALL_RUN else STEP_STATUS[m.stop]
        else:
            status, shown = STEP_STATUS[m.stop], f"caught {m.caught}/{len(m.runs)}"
        steps.append(
            Step(
                f"{fault.kind} {fault.label} ({fault.injected()}): {shown}",
                status,
                {"verdicts": m.verdicts_text(), "ended": m.stop.value},
            )
        )
    return steps
