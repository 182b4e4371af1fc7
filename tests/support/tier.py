"""An HAProxy tier that grows: N real HAProxy processes on loopback (each its own Runtime API,
ports asked of the OS, server-state file) in front of the same two colors, switched by the
gate's own forced path, and what the machine's cores did meanwhile. Used by
``benchmarks/switch_under_load.py --instances 1,2,5,10,20``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pytest_bluegreen.gate.report import GateHooks, GateReport
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef
from pytest_bluegreen.haproxy.runtime import state_command, weight_command
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.outcome import SwitchPlan

from .fastcolors import FastColors
from .instances import CHECK_INTER, Group, names
from .stack import Backend, Stack, StackFactory, make_cert

__all__ = ["CpuMeter", "Tier", "forced_switch"]


@dataclass
class Tier:
    """The instances started so far (lb-1, lb-2, ...) and the colors behind them."""

    workdir: Path
    factory: StackFactory
    colors: FastColors
    stacks: dict[str, Stack] = field(default_factory=dict)

    @classmethod
    def start(cls, workdir: Path, blue: Backend, green: Backend, exit: ExitStack) -> Tier:
        """Torn down by ``exit``: every HAProxy started, the colors' too."""
        factory = StackFactory(workdir, make_cert(workdir / "cert.pem"), blue, green)
        exit.callback(factory.close)
        colors = FastColors.start(workdir / "colors")
        exit.callback(colors.stop)
        return cls(workdir, factory, colors)

    def group(self, count: int) -> Group:
        """The first ``count`` instances as one group (the ones missing started now), every
        instance with blue live; the group's own folder holds its settings (the history,
        journal and locks are lb-1's)."""
        for name in names(count):
            if name not in self.stacks:
                self.stacks[name] = self.factory(
                    name, env=CHECK_INTER, addresses=self.colors.addresses()
                )
        chosen = {name: self.stacks[name] for name in names(count)}
        self.show("blue")
        folder = self.workdir / f"group-{count}"
        folder.mkdir(exist_ok=True)
        return Group(chosen, folder)

    def show(self, color: str) -> None:
        """Every instance started shows ``color`` live (a test's starting point, not a
        switch: no drain, no journal), each on one connection."""
        for stack in self.stacks.values():
            api = stack.api()
            api.set_all(
                [
                    command
                    for c in ("blue", "green")
                    for server in (f"api_backend/{c}-api", f"frontend_backend/{c}-frontend")
                    for command in (
                        weight_command(ServerRef.parse(server), 100 if c == color else 0),
                        state_command(ServerRef.parse(server), AdminState.READY),
                    )
                ]
            )

    def pids(self) -> list[int]:
        """The processes the tier runs (every HAProxy, the colors')."""
        found = [self.colors.proc.pid]
        for stack in self.stacks.values():
            if stack.haproxy.proc is not None:
                found.append(stack.haproxy.proc.pid)
        return found


@dataclass(frozen=True)
class Forced:
    """One switch through the gate's forced path, and the prepare phase's time."""

    report: GateReport
    prepare: float  # s: from before the lock to the first change (the 'promote' step's start)


def forced_switch(
    settings: Settings, target: str, on_promote: Callable[[SwitchPlan], None]
) -> Forced:
    """``bluegreen switch-to TARGET --force`` as the command runs it (GateRun: the lock of
    every instance, its checks, the plan, the journal, the transaction; signals deferred),
    ``on_promote`` called right before the first change. A signal received meanwhile is
    raised once the switch has reverted or completed (KeyboardInterrupt)."""
    marks: dict[str, float] = {}

    def on_step(step: str, plan: SwitchPlan) -> None:
        if step == "promote":
            marks[step] = time.monotonic()
            on_promote(plan)

    began = time.monotonic()
    run = GateRun(settings, GateHooks(on_step=on_step))
    try:
        with DeferredSignals() as signals:
            run.start()
            report = run.switch_forced(target, "benchmark", signals=signals)
    finally:
        run.close()
        run.haproxies.close()
    if signals.received:
        raise KeyboardInterrupt(signals.received)
    return Forced(report, marks.get("promote", time.monotonic()) - began)


def _ticks(pid: int) -> int:
    """A process's user + system CPU time so far, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))


def _machine() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot (/proc/stat's first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is counted in user already
    return total - idle, total


def _stalled() -> int | None:
    """Microseconds some task waited for a core since boot (/proc/pressure/cpu), or None."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(line.rsplit("total=", 1)[1])


@dataclass
class CpuMeter:
    """What the cores did between :meth:`start` and :meth:`line`: how busy they were, how much
    of it was this benchmark's processes, and how long tasks waited for a core."""

    pids: Callable[[], Iterable[int]]
    _start: tuple[float, tuple[int, int], int, int | None] | None = None

    def _ours(self) -> int:
        return sum(_ticks(pid) for pid in {os.getpid(), *self.pids()})

    def start(self) -> None:
        self._start = (time.monotonic(), _machine(), self._ours(), _stalled())

    def line(self) -> tuple[str, bool]:
        """The line to print, and whether the cores were saturated (busy 90% or more)."""
        if self._start is None:
            return "cpu: not measured", False
        wall0, (busy0, total0), ours0, stalled0 = self._start
        wall = max(time.monotonic() - wall0, 1e-9)
        busy, total = _machine()
        cores = os.cpu_count() or 1
        share = (busy - busy0) / max(total - total0, 1)
        ours = (self._ours() - ours0) / os.sysconf("SC_CLK_TCK") / wall / cores
        stalled, waited = _stalled(), ""
        if stalled is not None and stalled0 is not None:
            waited = (
                f", a task waited for a core {(stalled - stalled0) / 1e6 / wall:.0%} of the time"
            )
        saturated = share >= 0.9
        text = (
            f"cpu: {cores} cores {share:.0%} busy (this benchmark's processes {ours:.0%}, "
            f"others {max(share - ours, 0):.0%}){waited}"
        )
        return text + (": SATURATED" if saturated else ""), saturated
