"""The run's after-switch phase: a switch that stands (or a --rollback) is baked, then the old
color is kept warm.

``AfterSwitch`` records the switch, runs the bake (:mod:`pytest_bluegreen.judge.bake`: the post
checks and HAProxy's counters, interval by interval), switches back through the same journaled
switch when the bake fails (or cannot judge, by default), and keeps the old color warm
(:func:`.aftercare.keep_warm`) when traffic stays on the new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import ExitCode, OutOfOrder
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import HAPROXY_UNREADABLE
from pytest_bluegreen.judge.bake import Bake, BakeResult, PostResult, ServerWatch
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.record.history import BAKE_REASON, Outcome
from pytest_bluegreen.switch import transaction as switch

from .decision import Decision, Verdict
from .report import GateReport

if TYPE_CHECKING:
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings

    from .traffic import Switcher

__all__ = ["AfterSwitch"]


@dataclass(frozen=True)
class AfterSwitch:
    """What comes after a switch needs: the settings, HAProxy, the post checks (None: no bake),
    the signals held, a switcher that goes back (no signal holds it back), the recorder and
    the warm window (old, new -> the lines to say)."""

    settings: Settings
    haproxies: Haproxies
    run_post: Callable[[], PostResult] | None
    signals: DeferredSignals
    progress: Callable[[str], None]
    back: Switcher
    record: Callable[[GateReport], GateReport]
    keep_warm: Callable[[str, str], list[str]]

    def __call__(self, report: GateReport) -> GateReport:
        """A switch that stands (or a --rollback): the bake, then the old color's warm window."""
        moved = report.outcome is Outcome.SWITCHED or (
            report.outcome is Outcome.ROLLED_BACK and self.settings.run.rollback
        )
        if not moved or report.result is None or self.settings.run.dry_run:
            return report
        old, new = report.result.plan.source, report.result.plan.target
        if self.settings.bake.enabled and self.run_post is not None:
            report = self.bake(report, self.run_post)
            stopped = report.bake is not None and report.bake.changed
            if report.went_back or report.exit_code == ExitCode.INTERRUPTED or stopped:
                # the old color is live again, the bake was cut short, or someone changed
                # the servers by hand: no warm window on states the switch no longer holds
                return report
        if old is not None:
            # recorded (and notified) now: with after_bake_old_color = stop, the warm window
            # is waited out before the gate ends
            report = self.record(report)
            report = report.adding(*self.keep_warm(old, new))
        return report

    def bake(self, report: GateReport, run_post: Callable[[], PostResult]) -> GateReport:
        """Run the bake; a failed one (or one that cannot judge, by default) switches back."""
        switched = report.result
        if switched is None:
            raise OutOfOrder("the bake needs a switch that happened")
        report = self.record(report)  # the switch happened: the history says so before the bake
        settings = self.settings
        plan = settings.bake.plan()
        target = switched.plan.target
        asks_prometheus = bool(plan.prometheus) and settings.prometheus.prometheus_url
        client = settings.prometheus.client() if asks_prometheus else None
        try:  # the servers as the switch left them: a change outside the gate stops the bake
            watch: ServerWatch | None = ServerWatch(self.haproxies, settings.topology.all_servers)
        except RuntimeApiError:
            watch = None  # unreadable now: the bake's readings say so, interval by interval
        with client or contextlib.nullcontext() as prometheus:
            result = Bake(
                plan,
                self.haproxies,
                settings.topology.servers(target),
                run_post,
                signals=self.signals,
                progress=self.progress,
                color=target,
                prometheus=prometheus,
                watch=watch,
            ).run()
        report = replace(report, bake=result)
        if result.changed:
            return replace(
                report.adding(
                    f"bake {result.reason}: nothing switched back over that change; traffic is "
                    "where it was set (bluegreen status)"
                ),
                exit_code=ExitCode.INCONCLUSIVE,
            )
        back = result.judgement is Judgement.FAILED or (
            result.judgement is Judgement.INCONCLUSIVE
            and settings.bake.bake_on_inconclusive == "rollback"
            and result.interrupted is None
        )
        if result.interrupted is not None:
            return replace(
                report.adding(
                    f"bake {result.reason}: traffic stays on {target} (switched and verified); "
                    "nothing else was judged"
                ),
                exit_code=ExitCode.INTERRUPTED,
            )
        if not back:
            kept = "" if result.judgement is Judgement.PASSED else " (bake_on_inconclusive)"
            return report.adding(f"bake {result.judgement.value}{kept}: {result.reason}")
        source = switched.plan.source
        if source is None:
            return replace(
                report.adding(
                    f"bake {result.judgement.value}: {result.reason}; no color to go back to"
                ),
                exit_code=ExitCode.BAKE_FAILED,
            )
        return self.switch_back(report, source, result)

    def switch_back(self, report: GateReport, source: str, result: BakeResult) -> GateReport:
        """Return traffic to ``source`` through the same journaled switch; a signal now
        completes it (the safe direction: ``back`` holds none), a user's veto does not hold
        it back."""
        reason = f"{BAKE_REASON}{result.judgement.value}: {result.reason}"
        live = report.result.plan.target if report.result is not None else None
        decision = Decision(Verdict.SWITCH, reason, source, live)
        try:
            plan = switch.plan(
                self.haproxies, self.settings.topology, source, self.settings.switching.full_weight
            )
            returned = self.back.apply(plan, decision, rollback=True)
        except HAPROXY_UNREADABLE as exc:
            returned = GateReport(
                Decision(Verdict.REFUSED, f"cannot switch back: {exc}", source, live),
                ExitCode.REVERT_FAILED,
                (f"cannot switch back to {source}: {exc}",),
                Outcome.REVERT_FAILED,
            )
        evidence = result.failing.line() if result.failing is not None else ""
        lines = (*report.lines, reason, *([evidence] if evidence else []), *returned.lines)
        code = ExitCode.BAKE_FAILED if returned.outcome is Outcome.ROLLED_BACK else None
        return replace(
            returned,
            lines=lines,
            bake=result,
            went_back=True,
            exit_code=returned.exit_code if code is None else code,
        )
