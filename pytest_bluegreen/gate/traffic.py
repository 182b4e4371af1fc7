"""The run's switch phase: a decision to switch becomes a journaled switch on every HAProxy.

``Switcher`` plans the switch, says what a dry run would do, stops on a signal noted before
anything changed, asks the user's ``before_switch`` hooks (a veto refuses), applies the switch
(:mod:`pytest_bluegreen.switch.transaction`) with the probe and HAProxy's stats around it, and
calls the after-hooks. It returns a :class:`.report.GateReport`; recording it is the run's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import ExitCode, Refused
from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef
from pytest_bluegreen.haproxy.instances import HAPROXY_UNREADABLE, Haproxies
from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import Outcome
from pytest_bluegreen.switch import canary, transaction
from pytest_bluegreen.switch.canary import CanaryPlanError
from pytest_bluegreen.switch.leftout import record_missing
from pytest_bluegreen.switch.outcome import CanaryReverted, CanaryUnjudged
from pytest_bluegreen.switch.probe import Probe

from .decision import Decision, Verdict
from .report import GateHooks, GateReport

if TYPE_CHECKING:
    from pytest_bluegreen.haproxy.lock import HaproxyLock
    from pytest_bluegreen.haproxy.lockfile import GateLock, GroupLock
    from pytest_bluegreen.judge.bake import PostResult
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings
    from pytest_bluegreen.switch.journal import Journal

    from .canary import CanaryJudge

__all__ = ["Switcher", "interrupted_before"]


def interrupted_before(signal: str, decision: Decision) -> GateReport:
    """A signal noted before the switch began: nothing changed, the run stops."""
    reason = f"interrupted by {signal} before the switch: nothing changed"
    stopped = Decision(Verdict.INCONCLUSIVE, reason, decision.target, decision.live)
    return GateReport(
        stopped, ExitCode.INTERRUPTED, (reason,), Outcome.INCONCLUSIVE, traffic_on=decision.live
    )


@dataclass(frozen=True)
class Switcher:
    """What a switch needs: HAProxy (every instance), the lock to verify, the journal, the
    user's hooks, the signals held around it, and where to say what happens."""

    settings: Settings
    haproxies: Haproxies
    lock: GateLock | GroupLock | HaproxyLock
    journal: Journal
    hooks: GateHooks
    signals: DeferredSignals
    progress: Callable[[str], None]
    # the post checks a canary step runs (the bake's); None: a step judges HAProxy's counters
    run_post: Callable[[], PostResult] | None = None
    # --canary applies to a gate's switch; a forced one (switch-to --force, a pending
    # promotion) moves at once, as asked
    with_canary: bool = True

    def switch(
        self, decision: Decision, *, rollback: bool, ignore_veto: bool = False
    ) -> GateReport:
        settings, target = self.settings, decision.target
        verb = "roll back" if rollback else "switch"
        try:
            plan = transaction.plan(
                self.haproxies, settings.topology, target, settings.switching.full_weight
            )
        except HAPROXY_UNREADABLE as exc:
            refused = Decision(Verdict.REFUSED, f"cannot {verb}: {exc}", target, decision.live)
            return GateReport(refused, ExitCode.REFUSED, (refused.reason,), Outcome.REFUSED)
        try:
            steps = self.canary_steps(plan, rollback)
        except CanaryPlanError as exc:
            refused = Decision(Verdict.REFUSED, exc.first_line, target, decision.live)
            return GateReport(refused, ExitCode.REFUSED, (refused.reason,), Outcome.REFUSED)
        if settings.run.dry_run:
            lines = (
                f"dry run: would {verb} because {decision.reason}",
                *(f"dry run: would run {step.describe()}" for step in steps),
                *plan.describe(),
                "dry run: nothing changed",
            )
            return GateReport(decision, decision.exit_code, lines, traffic_on=decision.live)
        if self.signals.received:  # before anything changed: nothing to undo
            return interrupted_before(self.signals.received, decision)
        checked = self._veto(plan, decision, ignore_veto)
        if isinstance(checked, GateReport):
            return checked
        return self.apply(plan, checked, rollback)

    def canary_steps(
        self, plan: transaction.SwitchPlan, rollback: bool
    ) -> tuple[canary.CanaryStep, ...]:
        """The canary's steps before this switch (none for a return to the old color).
        Raises CanaryPlanError (no live color to share with, a share weights cannot give)."""
        settings = self.settings.canary
        if rollback or not settings.enabled or not self.with_canary:
            return ()
        if plan.source is None:
            raise CanaryPlanError(
                "bluegreen: --canary: no color is live to share traffic with; switch without it"
            )
        topology = self.settings.topology

        def filled(color: str) -> list[ServerRef]:
            """A color's servers but its empty Swarm slots (no replica: they take nothing, and
            counted they would skew the share)."""
            return [
                ref
                for ref in topology.servers(color)
                if not (ref in plan.prior and plan.prior[ref].empty)
            ]

        return canary.canary_steps(
            settings.canary_steps,
            filled(plan.source),
            filled(plan.target),
            seconds=settings.canary_step_seconds,
        )

    def _veto(
        self, plan: transaction.SwitchPlan, decision: Decision, ignore_veto: bool
    ) -> Decision | GateReport:
        """The user's before_switch hooks: the decision to go on with, or the refusal."""
        try:
            veto = self.hooks.before_switch(plan, decision)
        except BaseException as exc:  # a hook that cannot decide (pytest.fail too) vetoes
            veto = f"the before_switch hook raised {type(exc).__name__}: {exc}"
        if veto and ignore_veto:  # said in the summary and recorded in the history
            return replace(
                decision, reason=f"{decision.reason}; veto ignored (--ignore-veto): {veto}"
            )
        if veto:
            vetoed = decision.vetoed(veto)
            return GateReport(
                vetoed, ExitCode.REFUSED, (vetoed.reason,), Outcome.REFUSED, traffic_on=plan.source
            )
        return decision

    def apply(self, plan: transaction.SwitchPlan, decision: Decision, rollback: bool) -> GateReport:
        """The switch itself, with the probe and HAProxy's stats around it."""
        settings, target = self.settings, decision.target
        stat_before = self.show_stat()
        probe = (
            Probe(settings.switching, settings.topology.color_header)
            if settings.switching.probe_requests
            else None
        )
        judge, run_canary = self._canary(plan, rollback)
        try:
            try:
                # still ours (no gate started since someone removed it), and every key of
                # this HAProxy held, read again now that it answers
                self.lock.verify()
                result = transaction.apply(
                    self.haproxies,
                    plan,
                    settings.switching,
                    settings.topology,
                    journal=self.journal,
                    signals=self.signals,
                    on_step=self.hooks.on_step,
                    progress=self.progress,
                    canary=run_canary,
                )
            finally:
                probe_summary = probe.finish() if probe else None
        except transaction.SwitchError as exc:
            reverted = exc.reverted
            outcome = Outcome.REVERTED if reverted else Outcome.REVERT_FAILED
            if isinstance(exc, transaction.SwitchIncomplete):  # verified, not undone: not complete
                outcome = Outcome.INCOMPLETE
            verdict = Verdict.REFUSED
            if isinstance(exc, CanaryReverted):  # judged worse on real traffic: a failed gate
                verdict = Verdict.FAILED
            elif isinstance(exc, CanaryUnjudged):
                verdict = Verdict.INCONCLUSIVE
            return GateReport(
                Decision(verdict, str(exc), target, plan.source),
                exc.exit_code,
                (str(exc),),
                outcome,
                # unknown after a failed revert or an incomplete switch
                traffic_on=plan.source if reverted else None,
                stat_before=stat_before,
                stat_after=self.show_stat(),
                probe=probe_summary,
            )
        except Refused as exc:  # before any change (the journal could not be written, ...)
            refused = Decision(Verdict.REFUSED, exc.first_line, target, plan.source)
            return GateReport(
                refused, exc.exit_code, (refused.reason,), Outcome.REFUSED, traffic_on=plan.source
            )
        lines = [
            f"{'rolled back' if rollback else 'switched'} {plan.source or '(none)'} -> {target}: "
            f"{decision.reason}",
            f"verified through {self._verified_through(plan)}: first answer from "
            f"{target} {result.latency_ms:.1f} ms after the switch began"
            + (f", version {result.version}" if result.version else ""),
            *result.notes,
            *([judge.reached()] if judge is not None and judge.windows else []),
            *self._left_out(target),
        ]
        if probe_summary is not None:
            lines.append(probe_summary.line(settings.switching.routed_api_url))
        lines += self._after_hooks(rollback, plan.source, target, decision.reason, result)
        return GateReport(
            decision,
            ExitCode.OK,
            tuple(lines),
            Outcome.ROLLED_BACK if rollback else Outcome.SWITCHED,
            result=result,
            traffic_on=target,
            rolled_back=rollback,
            stat_before=stat_before,
            stat_after=self.show_stat(),
            probe=probe_summary,
        )

    def _canary(
        self, plan: transaction.SwitchPlan, rollback: bool
    ) -> tuple[CanaryJudge | None, transaction.Canary | None]:
        """The canary to run before this switch, and its judge (whose windows say what it saw)."""
        from .canary import CanaryJudge  # noqa: PLC0415 - a canary's only (the judge, statistics)

        steps = self.canary_steps(plan, rollback)
        if not steps or plan.source is None:
            return None, None
        journal = self.journal

        def requests() -> str | None:
            entry = journal.entry
            return canary.take_request(journal.path, entry.id) if entry is not None else None

        judge = CanaryJudge(
            self.settings,
            self.haproxies,
            plan.source,
            plan.target,
            self.run_post,
            self.signals,
            self.progress,
            requests=requests,
        )
        return judge, transaction.Canary(steps, judge, self.settings.canary.canary_sticky)

    def _verified_through(self, plan: transaction.SwitchPlan) -> str:
        if len(plan.members) > 1:
            return f"every instance's routed URL ({', '.join(plan.member_names())})"
        return self.settings.switching.verify_url

    def _left_out(self, target: str) -> list[str]:
        """Instances left out of this switch: recorded to be brought in line."""
        if not self.haproxies.skipped:
            return []
        missing = sorted(self.haproxies.skipped)
        try:
            record_missing(self.settings.state.state_file, missing, target)
        except (OSError, history.StateFileError) as exc:
            return [f"warning: could not record {', '.join(missing)} to be brought in line: {exc}"]
        return [
            f"instance(s) {', '.join(missing)} left out (missing): recorded to be brought in "
            "line when they answer (the next gate or bluegreen recover)"
        ]

    def _after_hooks(
        self,
        rollback: bool,
        source: str | None,
        target: str,
        reason: str,
        result: transaction.SwitchResult,
    ) -> list[str]:
        """The user's after-hooks: an error there is reported, never undoes the switch."""
        try:
            if rollback:
                self.hooks.after_rollback(source, target, reason)
            else:
                self.hooks.after_switch(result)
        except BaseException as exc:  # the switch stands, recorded: a hook cannot undo that
            which = "after_rollback" if rollback else "after_switch"
            return [f"warning: pytest_bluegreen_{which} hook raised {type(exc).__name__}: {exc}"]
        return []

    def show_stat(self) -> str:
        try:
            return self.haproxies.execute("show stat")
        except RuntimeApiError as exc:
            return f"(show stat failed: {exc})"
