"""``bluegreen drill --power``, the pure part: how sensitive the gate is.

For each kind of fault -- latency (a share of the live color's median latency, added to the
idle color's ``/api/*`` answers) and errors (a share of its ``/api/*`` requests answering 500)
-- a ladder of magnitudes, smallest first. Each magnitude is deployed to the idle color and
gated up to ``runs`` times as the drill gates a variant (a dry run of ``--switch``); a run
*caught* it when the gate's verdict is ``failed``. A zero-fault control (the same build, no
fault) is gated ``runs`` times first: any verdict but ``switch`` there is a false alarm.

Bounded: a magnitude stops as soon as catching it in 90% of ``runs`` (:data:`GOAL`) is
certain or out of reach (its ``n`` says how many ran), and a kind climbs its ladder only until
a magnitude reaches 90%, on the assumption that a larger fault is caught at least as often.
The result per kind: the smallest magnitude caught in at least 90% of its runs, the control's
false alarms and the median seconds a verdict took (:meth:`PowerReport.lines`); the table has
every magnitude (:meth:`PowerReport.table`). The orchestration (deploys, gates, signals) is
:mod:`.powerdrill`.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GOAL",
    "Fault",
    "Kind",
    "Measured",
    "Plan",
    "PowerReport",
    "Run",
    "Stop",
    "needed",
    "run_ladder",
    "settled",
]

GOAL = 0.9  # a magnitude is caught when the gate fails it in at least this share of its runs
CAUGHT = "failed"  # the verdict that catches a fault
PASSED = "switch"  # the verdict a fault-free build must get; any other is a false alarm


class Kind(enum.StrEnum):
    CONTROL = "control"
    LATENCY = "latency"
    ERRORS = "errors"


class Stop(enum.StrEnum):
    """Why a magnitude's runs ended."""

    REACHED = "reached"  # caught in 90% of the runs: certain
    OUT_OF_REACH = "out of reach"  # 90% can no longer be reached
    ALL_RUN = "all run"  # the control: every run, no early stop
    NOT_RUN = "not run"  # a smaller magnitude reached 90%, or the drill ended before
    INTERRUPTED = "interrupted"  # a signal: the runs so far count


@dataclass(frozen=True)
class Fault:
    """One magnitude of one kind, and what it injects into the idle color."""

    kind: Kind
    percent: float  # of the baseline latency (latency), of the requests (errors); 0: control
    latency_ms: float = 0.0
    latency_share: float = 1.0
    error_rate: float = 0.0

    @property
    def label(self) -> str:
        """``+10%`` (latency), ``1%`` (errors), ``0`` (the control)."""
        if self.kind is Kind.CONTROL:
            return "0"
        return f"{'+' if self.kind is Kind.LATENCY else ''}{self.percent:g}%"

    @property
    def slug(self) -> str:
        """For a file name: ``latency-10pct``."""
        return self.kind.value + ("" if self.kind is Kind.CONTROL else f"-{self.percent:g}pct")

    def injected(self) -> str:
        if self.kind is Kind.LATENCY:
            on = "every" if self.latency_share == 1 else f"{self.latency_share:.0%} of the"
            return f"+{self.latency_ms:g} ms on {on} /api/* request(s)"
        if self.kind is Kind.ERRORS:
            return f"HTTP 500 on {self.error_rate:.2%} of /api/* requests"
        return "nothing"

    def variables(self) -> dict[str, str]:
        """The fault's Compose variables, each to be prefixed with the idle color's name
        (``BLUE_FAULT_LATENCY_MS``); the control sets them too, to none."""
        return {
            "FAULT_LATENCY_MS": f"{self.latency_ms:g}",
            "FAULT_LATENCY_SHARE": f"{self.latency_share:g}",
            "FAULT_ERROR_RATE": f"{self.error_rate:g}",
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "label": self.label,
            "injected": self.injected(),
            "latency_ms": self.latency_ms,
            "latency_share": self.latency_share,
            "error_rate": self.error_rate,
        }


@dataclass(frozen=True)
class Plan:
    """The ladders, scaled: latency percentages of ``baseline_ms`` made milliseconds."""

    latency: tuple[float, ...]
    errors: tuple[float, ...]
    runs: int
    tail: float  # the share of /api/* requests the latency is added to
    baseline_ms: float  # the live color's median latency on the load path

    @property
    def control(self) -> Fault:
        return Fault(Kind.CONTROL, 0.0)

    def ladder(self, kind: Kind) -> list[Fault]:
        if kind is Kind.LATENCY:
            return [
                Fault(
                    kind,
                    pct,
                    latency_ms=round(self.baseline_ms * pct / 100, 2),
                    latency_share=self.tail,
                )
                for pct in self.latency
            ]
        if kind is Kind.ERRORS:
            return [Fault(kind, pct, error_rate=round(pct / 100, 6)) for pct in self.errors]
        return [self.control]

    def faults(self) -> list[Fault]:
        """Every magnitude, in the order the drill gates them: the control first."""
        return [self.control, *self.ladder(Kind.LATENCY), *self.ladder(Kind.ERRORS)]

    @property
    def most_gates(self) -> int:
        return self.runs * len(self.faults())


def needed(runs: int) -> int:
    """Runs that must catch a magnitude for 90% of ``runs`` (9 of 10, 2 of 2, 1 of 1)."""
    return math.ceil(round(GOAL * runs, 9))


def settled(caught: int, ran: int, runs: int) -> Stop | None:
    """REACHED once ``caught`` is enough whatever the rest do, OUT_OF_REACH once the rest
    cannot make it enough; None while it is open."""
    if caught >= needed(runs):
        return Stop.REACHED
    if caught + (runs - ran) < needed(runs):
        return Stop.OUT_OF_REACH
    return None


@dataclass(frozen=True)
class Run:
    verdict: str  # the gate's verdict word (``failed``, ``switch``, ``inconclusive``, ...)
    seconds: float  # the gate's, from start to its verdict

    @property
    def caught(self) -> bool:
        return self.verdict == CAUGHT


@dataclass(frozen=True)
class Measured:
    fault: Fault
    runs: tuple[Run, ...]
    stop: Stop

    @property
    def caught(self) -> int:
        return sum(run.caught for run in self.runs)

    @property
    def false_alarms(self) -> int:
        return sum(run.verdict != PASSED for run in self.runs)

    @property
    def verdicts(self) -> Counter[str]:
        return Counter(run.verdict for run in self.runs)

    def verdicts_text(self) -> str:
        return ", ".join(f"{v} {n}" for v, n in self.verdicts.most_common()) or "-"

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.fault.as_dict(),
            "runs": len(self.runs),
            "caught": self.caught,
            "stop": self.stop.value,
            "verdicts": dict(self.verdicts),
            "seconds": [round(run.seconds, 1) for run in self.runs],
        }


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


@dataclass(frozen=True)
class PowerReport:
    plan: Plan
    measured: tuple[Measured, ...]  # in the order gated; the control first when it ran
    interrupted: str | None = None  # what stopped the drill early (a signal, a failed deploy)

    def of(self, fault: Fault) -> Measured:
        found = [m for m in self.measured if m.fault == fault]
        return found[0] if found else Measured(fault, (), Stop.NOT_RUN)

    @property
    def control(self) -> Measured:
        return self.of(self.plan.control)

    def smallest_caught(self, kind: Kind) -> Measured | None:
        """The smallest magnitude of ``kind`` caught in at least 90% of its runs."""
        return next(
            (self.of(f) for f in self.plan.ladder(kind) if self.of(f).stop is Stop.REACHED), None
        )

    def seconds(self, kind: Kind) -> list[float]:
        return [run.seconds for m in self.measured if m.fault.kind is kind for run in m.runs]

    def line(self, kind: Kind) -> str:
        """``latency: caught>=90% at +10% (n=10), false_alarms=0/10, seconds=12.3``"""
        best = self.smallest_caught(kind)
        at = "none" if best is None else f"{best.fault.label} (n={len(best.runs)})"
        control = self.control
        alarms = f"{control.false_alarms}/{len(control.runs)}" if control.runs else "-"
        return (
            f"{kind.value}: caught>={GOAL:.0%} at {at}, false_alarms={alarms}, "
            f"seconds={_median(self.seconds(kind))}"
        )

    def lines(self) -> list[str]:
        return [self.line(Kind.LATENCY), self.line(Kind.ERRORS)]

    def table(self) -> list[str]:
        """One row per magnitude: what it injected, caught k/n, the verdicts, why it ended."""
        header = ("kind", "magnitude", "injected", "caught", "verdicts", "")
        cells = []
        for fault in self.plan.faults():
            m = self.of(fault)
            if fault.kind is Kind.CONTROL:
                caught = "-"
                note = f"false alarms {m.false_alarms}/{len(m.runs)}" if m.runs else m.stop.value
            else:
                caught = f"{m.caught}/{len(m.runs)}" if m.runs else "-"
                note = m.stop.value
            cells.append(
                (fault.kind.value, fault.label, fault.injected(), caught, m.verdicts_text(), note)
            )
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        return [
            "  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *cells]
        ]

    def as_dict(self) -> dict[str, Any]:
        """``verdict.json``'s ``power`` (docs/json.md)."""
        control = self.control
        kinds = {}
        for kind in (Kind.LATENCY, Kind.ERRORS):
            best = self.smallest_caught(kind)
            seconds = self.seconds(kind)
            kinds[kind.value] = {
                "caught_at": None if best is None else best.fault.percent,
                "n": None if best is None else len(best.runs),
                "seconds": round(statistics.median(seconds), 1) if seconds else None,
                "magnitudes": [self.of(f).as_dict() for f in self.plan.ladder(kind)],
            }
        return {
            "goal": GOAL,
            "runs": self.plan.runs,
            "baseline_ms": self.plan.baseline_ms,
            "tail": self.plan.tail,
            "false_alarms": control.false_alarms,
            "control_runs": len(control.runs),
            "control": control.as_dict(),
            **kinds,
            "interrupted": self.interrupted,
            "lines": self.lines(),
        }


def run_ladder(
    plan: Plan,
    *,
    deploy: Callable[[Fault], str | None],
    gate: Callable[[Fault, int], Run],
    stopped: Callable[[], str | None],
    progress: Callable[[str], None],
) -> PowerReport:
    """The control, then each kind's ladder smallest first, each magnitude deployed once
    (``deploy`` returns why it failed, or None) and gated run by run (``gate(fault, n)``, n
    from 1) until :func:`settled`. ``stopped()`` says what ended the drill early (a signal, a
    gate interrupted): the run under way then does not count, and nothing more is gated."""
    measured: list[Measured] = []
    for kind in (Kind.CONTROL, Kind.LATENCY, Kind.ERRORS):
        for fault in plan.ladder(kind):
            why = stopped() or deploy(fault)
            if why is not None:
                why = stopped() or why  # a Ctrl-C that cut the deploy short: the signal
                return PowerReport(plan, tuple(measured), why)
            result = _gated(plan, fault, gate, stopped, progress)
            measured.append(result)
            if result.stop is Stop.INTERRUPTED:
                return PowerReport(plan, tuple(measured), stopped())
            if result.stop is Stop.REACHED:
                break  # a larger fault is caught at least as often: the ladder ends here
    return PowerReport(plan, tuple(measured))


def _gated(
    plan: Plan,
    fault: Fault,
    gate: Callable[[Fault, int], Run],
    stopped: Callable[[], str | None],
    progress: Callable[[str], None],
) -> Measured:
    """One deployed magnitude gated until settled (the control: every run). A stop noted
    before a gate (during the deploy, between two runs) starts none: no child is there to pass
    the signal on to, and a whole gate would run for nothing."""
    runs: list[Run] = []
    while True:
        if stopped():
            return Measured(fault, tuple(runs), Stop.INTERRUPTED)
        run = gate(fault, len(runs) + 1)
        if stopped():
            return Measured(fault, tuple(runs), Stop.INTERRUPTED)
        runs.append(run)
        if fault.kind is Kind.CONTROL:
            done = Stop.ALL_RUN if len(runs) == plan.runs else None
        else:
            done = settled(sum(r.caught for r in runs), len(runs), plan.runs)
        progress(
            f"power: {fault.kind} {fault.label} run {len(runs)}: {run.verdict} "
            f"in {run.seconds:.1f}s" + (f" ({done}: n={len(runs)})" if done else "")
        )
        if done is not None:
            return Measured(fault, tuple(runs), done)
