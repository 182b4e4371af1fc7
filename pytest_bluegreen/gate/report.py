"""What a gate run did, and how it is written down: the user's hooks (``GateHooks``), the
report every phase of the run returns (``GateReport``: the decision, the lines, the switch, the
bake, and the target, tag and counts the verdict and the Allure writer read), and ``Recorder``,
which records a report's outcome once (the history, then the webhooks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.record import history, recording
from pytest_bluegreen.record.history import Outcome

if TYPE_CHECKING:
    from pytest_bluegreen.judge.bake import BakeResult
    from pytest_bluegreen.judge.blame import Blame
    from pytest_bluegreen.redaction import Secrets
    from pytest_bluegreen.settings import Settings
    from pytest_bluegreen.switch.outcome import SwitchPlan, SwitchResult
    from pytest_bluegreen.switch.probe import ProbeSummary

    from .decision import Decision
    from .outcomes import ColorOutcomes

__all__ = ["GateHooks", "GateReport", "Recorder"]


def _no_veto(plan: SwitchPlan, decision: Decision) -> str | None:
    return None


def _ignore_result(result: SwitchResult) -> None:
    return None


def _ignore_rollback(from_color: str | None, to_color: str, reason: str) -> None:
    return None


def _ignore_step(step: str, plan: SwitchPlan) -> None:
    return None


@dataclass(frozen=True)
class GateHooks:
    """The user's hooks (``hookspecs.py``), bound to a config; no-ops by default."""

    before_switch: Callable[[SwitchPlan, Decision], str | None] = _no_veto
    after_switch: Callable[[SwitchResult], None] = _ignore_result
    after_rollback: Callable[[str | None, str, str], None] = _ignore_rollback
    on_step: Callable[[str, SwitchPlan], None] = _ignore_step


@dataclass(frozen=True)
class GateReport:
    """What the gate did, for the terminal summary, the exit status and the reports. Each
    phase of the run returns one; the run adds the target, the tag and the counts at the end."""

    decision: Decision | None  # None: no traffic decision (a deploy alone, an interruption)
    exit_code: int
    lines: tuple[str, ...]
    outcome: Outcome | None = None  # what the history recorded, if anything
    result: SwitchResult | None = None
    traffic_on: str | None = None
    rolled_back: bool = False
    stat_before: str = ""  # HAProxy show stat around a switch, for the report
    stat_after: str = ""
    probe: ProbeSummary | None = None  # the zero-downtime probe's counts, when one ran
    bake: BakeResult | None = None  # the bake after the switch, when one ran
    blame: Blame | None = None  # failed checks tried on the other color, when they were
    went_back: bool = False  # the bake switched traffic back
    to_history: bool = True  # False: refused before the lock was ours (notified, not written)
    recorded: bool = False  # the history has this report's outcome already
    # what the run was about, added when it concludes (verdict.json, the Allure results)
    target: str | None = None
    tag: str | None = None
    counts: Mapping[str | None, ColorOutcomes] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def verdict_word(self) -> str:
        """The terminal summary's word: SWITCH, FAILED, REFUSED, ... or DONE/FAILED."""
        if self.decision is not None:
            return self.decision.verdict.value.upper()
        return "DONE" if self.exit_code == ExitCode.OK else "FAILED"

    def adding(self, *lines: str) -> GateReport:
        """The same report, ``lines`` said after its own."""
        return replace(self, lines=(*self.lines, *lines)) if lines else self


@dataclass
class Recorder:
    """Records a report's outcome once (the history, the webhooks; not for a dry run)."""

    settings: Settings
    secrets: Secrets
    forced: bool = False  # a switch without checks (bluegreen switch-to --force)

    def tag(self, result: SwitchResult | None) -> str | None:
        """The version the run is about: --deploy, --deployment-tag, else what answered."""
        run = self.settings.run
        return run.deploy or run.deployment_tag or (result.version if result else None)

    def record(self, report: GateReport) -> GateReport:
        """The report, its outcome recorded (once) and the recording's warnings added."""
        decision, outcome, result = report.decision, report.outcome, report.result
        if outcome is None or decision is None or report.recorded or self.settings.run.dry_run:
            return report
        # a switch that happened names its own direction (returning traffic from a failing
        # live color: the decision is about that color, the switch went to the other)
        source, target = (
            (result.plan.source, result.plan.target)
            if result is not None
            else (decision.live, decision.target)
        )
        entry = history.HistoryEntry.now(
            from_color=source,
            to_color=target,
            tag=self.tag(result),
            outcome=outcome,
            reason=self.secrets.redact(decision.reason),
            forced=self.forced,
        )
        warnings = recording.record(
            self.settings,
            entry,
            secrets=self.secrets,
            exit_code=report.exit_code,
            to_history=report.to_history,
        )
        return replace(report.adding(*warnings), recorded=True)
