"""The run's decision phase: the session's counts and facts, HAProxy's view of the target and
the build evidence become a decision (:func:`.decision.decide`), and the decision becomes what
to do: keep traffic, refuse, blame a failure on the environment, return traffic from a failing
live color, make a promotion pending, or hand the switch to the switch phase.

``Verification`` reads; ``Switcher`` (:mod:`.traffic`) and the ``pend`` it is given act.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import ExitCode, Refused
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import HAPROXY_UNREADABLE, InstancesDisagree
from pytest_bluegreen.judge.blame import Blame, TwinRun, blame_failures
from pytest_bluegreen.record.history import Outcome
from pytest_bluegreen.switch import transaction as switch

from .decision import Decision, SessionFacts, Verdict, decide
from .report import GateReport
from .traffic import interrupted_before

if TYPE_CHECKING:
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings

    from .deployphase import DeployPhase
    from .outcomes import Outcomes
    from .traffic import Switcher

__all__ = ["Verification", "failure_code", "slots_before_switch"]


def failure_code(facts: SessionFacts, decision: Decision) -> int:
    """The exit status of a gate that did not switch: pytest's own when it reports a failure
    or an interruption (1, 2), else the decision's (an inconclusive run is never 0)."""
    if facts.exitstatus == ExitCode.INTERRUPTED or (
        # another build answered: the failures are not this build's, the run judged nothing
        facts.exitstatus == ExitCode.CHECKS_FAILED and decision.verdict is not Verdict.INCONCLUSIVE
    ):
        return facts.exitstatus
    if decision.verdict is Verdict.FAILED:
        return ExitCode.CHECKS_FAILED
    return decision.exit_code


def slots_before_switch(
    deploys: DeployPhase, signals: DeferredSignals, decision: Decision
) -> GateReport | None:
    """Right before the switch, again: every HAProxy slot of the target runs the expected
    build (none the old one); the refusal when not, else None."""
    tag, target = deploys.expected_build, decision.target
    if tag is None:
        return None
    try:
        deploys.wait_slots(target, tag, signals)
    except Refused as exc:  # SlotsNotReady, a Runtime API error: nothing changed
        if signals.received:  # as a signal before the switch: nothing changed
            return interrupted_before(signals.received, decision)
        refused = Decision(Verdict.REFUSED, exc.first_line, target, decision.live)
        return GateReport(
            refused, ExitCode.REFUSED, (refused.reason,), Outcome.REFUSED, traffic_on=decision.live
        )
    return None


@dataclass(frozen=True)
class Verification:
    """What deciding needs: the settings, HAProxy, the session's counts, the deploy phase
    (the build evidence), the signals held, the failed checks' twins (blame), the switch
    phase and what makes a promotion pending."""

    settings: Settings
    haproxies: Haproxies
    outcomes: Outcomes
    deploys: DeployPhase
    signals: DeferredSignals
    progress: Callable[[str], None]
    run_twin: TwinRun | None
    switcher: Switcher
    pend: Callable[[Decision], GateReport]

    def deploy_only(self, target: str, facts: SessionFacts) -> GateReport:
        """--deploy without --switch: the deployed color's checks judged, traffic unchanged."""
        counts = self.outcomes[target]
        evidence, notes = self.deploys.evidence(target, counts.heard)
        decision = decide(
            target=target,
            live=None,
            outcomes=self.outcomes.as_dict(),
            target_down={},
            facts=facts,
            builds=evidence,
        )
        passed = decision.verdict in (Verdict.SWITCH, Verdict.NOOP)
        line = (
            f"deployed {target} {self.settings.run.deploy}; its checks "
            f"{'passed' if passed else 'did not pass'} ({counts.summary()}); no --switch: "
            "traffic unchanged"
        )
        lines = [line] if passed else [line, decision.reason]
        code = ExitCode.OK if passed else failure_code(facts, decision)
        return GateReport(None, code, (*lines, *notes))

    def _down_after_wait(self, target: str, facts: SessionFacts) -> dict[str, str]:
        """The target's servers HAProxy does not count UP; when the checks passed and
        ``up_wait`` is set, after waiting up to that long for them (a replica being replaced
        comes back, and the slot of the one that died empties)."""
        topology = self.settings.topology
        down = switch.down_servers(self.haproxies, topology, target)
        wait = self.settings.switching.up_wait
        if not down or not wait or facts.exitstatus != ExitCode.OK:
            return down
        self.progress(
            f"waiting up to {wait:g}s for {target} to be UP: "
            + ", ".join(f"{k} {v}" for k, v in sorted(down.items()))
        )
        deadline = time.monotonic() + wait
        while down and time.monotonic() < deadline and not self.signals.received:
            time.sleep(0.2)
            down = switch.down_servers(self.haproxies, topology, target)
        return down

    def decide(self, target: str, facts: SessionFacts) -> GateReport:
        """Decide on the target, then act on the decision (a switch through the switcher)."""
        topology = self.settings.topology
        if facts.exitstatus == ExitCode.NO_TESTS_COLLECTED:  # no check for the target ran
            facts = replace(facts, exitstatus=ExitCode.OK)
        try:
            live = switch.live_color(self.haproxies, topology)
            down = self._down_after_wait(target, facts)
        except HAPROXY_UNREADABLE as exc:
            disagree = isinstance(exc, InstancesDisagree)
            if facts.exitstatus != ExitCode.OK:
                what = "HAProxy" if disagree else "HAProxy unreachable"
                line = f"checks failed; {what}, nothing changed: {exc}"
                return GateReport(None, facts.exitstatus, (line,))
            reason = f"refused: {exc}" if disagree else f"cannot read HAProxy: {exc}"
            decision = Decision(Verdict.REFUSED, reason, target, None)
            return GateReport(decision, ExitCode.REFUSED, (decision.reason,), Outcome.REFUSED)

        evidence, notes = self.deploys.evidence(target, self.outcomes[target].heard)
        decision = decide(
            target=target,
            live=live,
            outcomes=self.outcomes.as_dict(),
            target_down=down,
            facts=facts,
            builds=evidence,
        )
        return self._decided(decision, facts, live).adding(*notes)

    def _decided(self, decision: Decision, facts: SessionFacts, live: str | None) -> GateReport:
        if decision.verdict is Verdict.FAILED:
            return self._failed(decision, facts)
        if decision.verdict is not Verdict.SWITCH:
            code = failure_code(facts, decision)
            return GateReport(
                decision,
                code,
                (decision.reason,),
                Outcome(decision.verdict.value),
                traffic_on=live,
            )
        slots = slots_before_switch(self.deploys, self.signals, decision)
        if slots is not None:
            return slots
        if self.settings.run.promote_later:
            return self.pend(decision)
        return self.switcher.switch(decision, rollback=self.settings.run.rollback)

    def _failed(self, decision: Decision, facts: SessionFacts) -> GateReport:
        """Checks failed: blame first (not the build: inconclusive), then keep or return."""
        blamed = self._blame(decision.target, facts)
        if blamed is not None and blamed.environmental:
            return self._environmental(decision, blamed)
        report = self._after_failure(decision, failure_code(facts, decision))
        if blamed is not None:
            first, rest = report.lines[:1], report.lines[1:]
            lines = (*first, *blamed.lines(), blamed.summary(), *rest)
            report = replace(report, lines=lines, blame=blamed)
        return report

    def _blame(self, target: str, facts: SessionFacts) -> Blame | None:
        """Each failed check of the target, tried on the other color (see judge/blame.py)."""
        failed = self.outcomes[target].failed_ids
        if not (self.settings.blames and self.run_twin and failed) or facts.interrupted:
            return None
        other = self.settings.topology.other(target)
        self.progress(f"blame: running {len(failed)} failed check(s) of {target} on {other}")
        return blame_failures(target, other, failed, self.run_twin)

    def _environmental(self, failed: Decision, blamed: Blame) -> GateReport:
        """Every failed check of the target fails on the other color too: not the build."""
        decision = replace(
            failed, verdict=Verdict.INCONCLUSIVE, reason=f"inconclusive: {blamed.summary()}"
        )
        lines = (
            decision.reason,
            *blamed.lines(),
            f"traffic stays on {failed.live or 'no color'}; nothing rolled back",
        )
        return GateReport(
            decision,
            ExitCode.INCONCLUSIVE,
            lines,
            Outcome.INCONCLUSIVE,
            traffic_on=failed.live,
            blame=blamed,
        )

    def _after_failure(self, decision: Decision, exitstatus: int) -> GateReport:
        """Checks failed: keep traffic where it is, or return it when the target is live and
        its own checks failed (never for a shared-only failure or an interrupted session)."""
        target, live = decision.target, decision.live
        if live != target or self.settings.run.rollback or not decision.may_return:
            lines = (decision.reason, f"traffic stays on {live or 'no color'}")
            return GateReport(decision, exitstatus, lines, Outcome.FAILED, traffic_on=live)
        previous = self.settings.topology.other(target)
        try:
            down = switch.down_servers(self.haproxies, self.settings.topology, previous)
        except RuntimeApiError as exc:
            down = {"Runtime API": str(exc)}
        if down:
            lines = (
                decision.reason,
                f"{target} is live and failing, but {previous} is not UP to take traffic back "
                f"({', '.join(f'{k} {v}' for k, v in down.items())}): traffic stays on {target}",
            )
            return GateReport(decision, exitstatus, lines, Outcome.FAILED, traffic_on=live)
        back = Decision(Verdict.SWITCH, f"return traffic: {decision.reason}", previous, live)
        report = self.switcher.switch(back, rollback=True)
        return replace(
            report,
            lines=(decision.reason, *report.lines),
            decision=decision,
            exit_code=exitstatus if report.exit_code == ExitCode.OK else report.exit_code,
        )
