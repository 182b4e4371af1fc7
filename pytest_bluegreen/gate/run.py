"""One gate run, start to finish: lock, target, decision, switch or return, history.

Used by the pytest plugin (on the xdist controller only, through ``gateplugin.GatePlugin``) and
by the ``bluegreen`` command, so both take the same path. ``GateRun`` holds the run's state and
its order; each phase is its own module and gets only what it uses: the deploy phase
(:mod:`.deployphase`), the decision (:mod:`.verify`, :func:`.decision.decide`), the switch
(:mod:`.traffic`), what comes after it (:mod:`.afterswitch`, :mod:`.aftercare`), and the report
and its record (:mod:`.report`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import (
    CHECKS_RAN,
    BluegreenError,
    DeployError,
    ExitCode,
    OutOfOrder,
    Refused,
)
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import HAPROXY_UNREADABLE, Haproxies
from pytest_bluegreen.haproxy.lock import HaproxyLock, lock_for_group
from pytest_bluegreen.haproxy.lockfile import GateLock, GroupLock
from pytest_bluegreen.process.signals import DeferredSignals, NoSignals
from pytest_bluegreen.record import faults, history
from pytest_bluegreen.record.history import Outcome
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import Settings, SettingsError
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal, UnfinishedJournal, read_journal
from pytest_bluegreen.switch.leftout import reconcile_recorded

from . import aftercare
from .afterswitch import AfterSwitch
from .decision import Decision, SessionFacts, Verdict
from .deployphase import DeployPhase
from .outcomes import Outcomes
from .report import GateHooks, GateReport, Recorder
from .traffic import Switcher
from .verify import Verification, slots_before_switch

if TYPE_CHECKING:
    from pytest_bluegreen.engines import DeployEngine, DeployResult
    from pytest_bluegreen.judge.bake import PostResult
    from pytest_bluegreen.judge.blame import TwinRun

    from .deploy import DeployStep

__all__ = ["GateHooks", "GateReport", "GateRun"]


class GateRun:
    def __init__(
        self,
        settings: Settings,
        hooks: GateHooks | None = None,
        haproxies: Haproxies | None = None,
        *,
        progress: Callable[[str], None] = lambda line: None,
        secrets: Secrets | None = None,
        run_post: Callable[[], PostResult] | None = None,
        run_twin: TwinRun | None = None,
        engine: DeployEngine | None = None,
    ) -> None:
        self.settings = settings
        self.run_post = run_post  # the post checks, run by the bake
        self.run_twin = run_twin  # a failed check's twin on the other color, run by blame
        self.secrets = secrets or Secrets()
        self.progress: Callable[[str], None] = switch.guarded(
            lambda line: progress(self.secrets.redact(line))
        )  # output (a closed stdout) never fails the switch, the bake or the deploy
        self.hooks = hooks or GateHooks()
        # every HAProxy instance as one group (a group of one by default); a group given by
        # the caller (tests, a fault-injecting proxy) in place of the settings'
        self.haproxies: Haproxies = haproxies or settings.haproxies()
        self.lock: GateLock | GroupLock | HaproxyLock = lock_for_group(
            settings.state.lock_dir, self.haproxies.addresses
        )  # until start()
        self.journal = Journal(settings.state.journal_file, redact=self.secrets.redact)
        self.signals: DeferredSignals = NoSignals()
        self.target: str | None = settings.target
        self.outcomes = Outcomes()
        self.deploys = DeployPhase(settings, self.haproxies, self.progress, engine)
        self.recorder = Recorder(settings, self.secrets)

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lock (unless a dry run) and settle the target.

        Raises lock.LockHeld, journal.UnfinishedJournal (a switch was cut off: recover first),
        RuntimeApiError (unreachable, not admin, unknown server), SettingsError (a
        --rollback target that cannot be worked out or contradicts --env), or
        FaultsLeftRefused (the target may run a power drill's fault).
        """
        # the keys of every HAProxy, however its address is spelled; one named twice refused
        self.lock = HaproxyLock(self.settings.state.lock_dir, self.haproxies)
        if not self.settings.run.dry_run:
            self.lock.acquire()
        try:
            self._leave_out_missing()
            self._no_faults_left()  # before the journal's slots are made: nothing changed
            if not self.settings.run.dry_run:
                for note in self.journal.prepare():  # refuses an unfinished journal
                    self.progress(note)
                history.ensure_folder(self.settings.state.state_file, "state_file")
                self._instances_in_line()
            else:  # a dry run says what the real one would: refused, nothing written
                history.check_history(self.settings.state.state_file, "state_file")
                entry = read_journal(self.journal.path)
                if entry is not None and entry.open:
                    raise UnfinishedJournal(self.journal.path, entry)
            # fail fast, before any check runs: every HAProxy answers, at admin level, and
            # knows every server the settings name
            if not self.settings.run.dry_run:
                self.haproxies.require_admin()
            self.haproxies.server_states(self.settings.topology.all_servers)
            if self.settings.run.switch or self.settings.run.rollback:
                switch.live_color(self.haproxies, self.settings.topology)  # instances must agree
            if self.settings.run.rollback:
                self.target = self._rollback_target()
        except BaseException:
            self.lock.release()
            raise

    def _no_faults_left(self) -> None:
        """A switch to a color a power drill may have left a fault on is refused (unless this
        run deploys it first: that deploy replaces it). Raises FaultsLeftRefused, RecordError."""
        run = self.settings.run
        if not (run.switch or run.rollback) or run.deploy is not None:
            return
        target = self.target
        if target is None and run.rollback:  # the color a rollback returns to, read quietly
            try:  # (HAProxy not answering, or not one live color: said by the steps below)
                live = switch.live_color(self.haproxies, self.settings.topology)
            except HAPROXY_UNREADABLE:
                live = None
            target = None if live is None else self.settings.topology.other(live)
        if target is not None:
            faults.require_none(self.settings.state.state_file, target, dry_run=run.dry_run)

    def _leave_out_missing(self) -> None:
        """Several instances: the allowed-missing ones that do not answer take no part."""
        if self.haproxies.several:
            for name in self.haproxies.leave_out_missing():
                self.progress(
                    f"instance {name} does not answer: left out (--allow-missing-instance)"
                )

    def _instances_in_line(self) -> None:
        """Several instances: the ones a switch left out (recorded) are brought in line when
        they answer again."""
        if not self.haproxies.several:
            return
        result = reconcile_recorded(self.haproxies, self.settings, self.secrets)
        if result is None:
            return
        for line in result.lines():
            self.progress(line)

    def _rollback_target(self) -> str:
        topology = self.settings.topology
        live = switch.live_color(self.haproxies, topology)
        if live is None:
            raise SettingsError(
                "bluegreen: --rollback: HAProxy shows no single live color to roll back from"
            )
        previous = topology.other(live)
        if self.settings.target is not None and self.settings.target != previous:
            raise SettingsError(
                f"bluegreen: --rollback returns traffic to {previous} ({live} is live), "
                f"but --env {self.settings.target} was given"
            )
        return previous

    def close(self) -> None:
        self.lock.release()

    # -- the deploy phase (deployphase.py) ---------------------------------------------------
    @property
    def deploy_step(self) -> DeployStep:
        return self.deploys.step

    @property
    def deployed(self) -> DeployResult | None:
        return self.deploys.deployed

    @property
    def expected_build(self) -> str | None:
        return self.deploys.expected_build

    @property
    def forced(self) -> bool:
        """A switch without checks (bluegreen switch-to --force)."""
        return self.recorder.forced

    def deploy(self) -> DeployResult:
        """``--deploy TAG`` to the target. Raises DeployRefused (nothing changed), DeployError."""
        target, tag = self.target, self.settings.run.deploy
        if target is None or tag is None:
            raise OutOfOrder("deploy() needs a target color and --deploy TAG")
        return self.deploys.deploy(target, tag)

    def before_checks(self) -> None:
        """Every HAProxy slot of the target runs the expected build before any check runs
        (a deploy in this run waited for it already). Raises SlotsNotReady, RuntimeApiError."""
        self.deploys.before_checks(self.target, self.signals)

    def tag(self, result: switch.SwitchResult | None) -> str | None:
        """The version this run is about: --deploy, --deployment-tag, else what answered."""
        return self.recorder.tag(result)

    # -- the phases, each given what it uses -------------------------------------------------
    def _switcher(self, signals: DeferredSignals) -> Switcher:
        return Switcher(
            self.settings,
            self.haproxies,
            self.lock,
            self.journal,
            self.hooks,
            signals,
            self.progress,
            run_post=self.run_post,
        )

    def _verification(self) -> Verification:
        return Verification(
            self.settings,
            self.haproxies,
            self.outcomes,
            self.deploys,
            self.signals,
            self.progress,
            self.run_twin,
            self._switcher(self.signals),
            self._pend,
        )

    def _after_switch(self) -> AfterSwitch:
        return AfterSwitch(
            self.settings,
            self.haproxies,
            self.run_post,
            self.signals,
            self.progress,
            # going back after a failed bake: a signal now completes it (the safe direction)
            back=self._switcher(NoSignals()),
            record=self.recorder.record,
            keep_warm=self.keep_warm,
        )

    def keep_warm(self, old: str, new: str) -> list[str]:
        """After a switch old -> new: the old color's warm window (aftercare.py)."""
        care = aftercare.Aftercare(
            self.settings, self.haproxies, self.lock, self.signals, self.progress, self._engine
        )
        entry = self.journal.entry
        return aftercare.keep_warm(
            care, old, new, tag=self.tag(None), switch_id=entry.id if entry else None
        )

    def _engine(self) -> DeployEngine:
        return self.deploys.step.engine

    def _pend(self, decision: Decision) -> GateReport:
        """--switch=manual: verified, recorded as a pending promotion; nothing switched."""
        lines = aftercare.pend(
            self.settings,
            decision,
            tag=self.tag(None),
            checks_passed=self.outcomes[decision.target].passed,
            engine=self._engine,
        )
        return GateReport(
            decision, ExitCode.OK, tuple(lines), Outcome.PENDING, traffic_on=decision.live
        )

    # -- refused, finish, forced -------------------------------------------------------------
    def refused(self, exc: BluegreenError, *, record: bool) -> GateReport:
        """The gate could not start or deploy: nothing changed. Written to the history when
        ``record`` (not when another gate may hold the lock), notified either way."""
        is_deploy = isinstance(exc, DeployError)
        reason = exc.first_line.removeprefix("bluegreen: ")
        if is_deploy:
            reason = f"deploy failed: {reason}"
        elif isinstance(exc, Refused) and not reason.startswith("refused"):
            reason = f"refused: {reason}"
        # the color live now, read again unless HAProxy itself is what failed
        live = None if isinstance(exc, RuntimeApiError) else self._live_or_none()
        decision = Decision(Verdict.REFUSED, reason, self.target or "?", live)
        outcome = None  # a usage error is no outcome
        if is_deploy:
            outcome = Outcome.DEPLOY_FAILED
        elif isinstance(exc, Refused):
            outcome = Outcome.REFUSED
        report = GateReport(decision, exc.exit_code, (reason,), outcome, to_history=record)
        return self._conclude(report)

    def _live_or_none(self) -> str | None:
        """The live color, for the record of a refusal; None when HAProxy cannot tell."""
        try:
            return switch.live_color(self.haproxies, self.settings.topology)
        except HAPROXY_UNREADABLE:
            return None

    def finish(self, facts: SessionFacts, signals: DeferredSignals | None = None) -> GateReport:
        """Decide on the session's counts and facts, then switch, return or keep traffic.

        ``signals``: the DeferredSignals the caller holds around this call; a signal noted
        before the switch begins stops the gate with nothing changed, one noted during the
        switch reverts it or (past the point of no return) completes it.
        """
        target = self.target
        if target is None:
            raise OutOfOrder("finish() needs a target color")
        self.signals = signals or NoSignals()
        run = self.settings.run
        if facts.exitstatus not in CHECKS_RAN:  # an internal error, a usage error, ...
            line = f"session ended with status {facts.exitstatus}: nothing changed"
            report = GateReport(None, facts.exitstatus, (line,))
        elif (problem := self.deploys.version_problem(self.outcomes)) is not None:
            try:
                live = switch.live_color(self.haproxies, self.settings.topology)
            except RuntimeApiError:
                live = None
            decision = Decision(Verdict.FAILED, problem, target, live)
            lines = (problem, f"traffic stays on {live or 'no color'}")
            report = GateReport(
                decision, ExitCode.CHECKS_FAILED, lines, Outcome.FAILED, traffic_on=live
            )
        elif not (run.switch or run.rollback):
            report = self._verification().deploy_only(target, facts)
        else:
            report = self._after_switch()(self._verification().decide(target, facts))
        note = self.deploys.after_failed_gate(report)
        if note is not None:
            report = report.adding(note)
        return self._conclude(report)

    def switch_forced(
        self,
        target: str,
        reason: str,
        *,
        rollback: bool = False,
        ignore_veto: bool = False,
        signals: DeferredSignals | None = None,
    ) -> GateReport:
        """Switch without running checks (an operator's ``--force``), recorded as forced.

        The target must still be UP in HAProxy (when it is live already there is nothing to do:
        exit 0, as the gate's no-op); the switch takes the same
        drain / verify / revert path as the gate, and the user's vetoes still apply unless
        ``ignore_veto`` (recorded in the history).
        """
        self.recorder.forced = True
        self.signals = signals or NoSignals()
        topology = self.settings.topology
        live = switch.live_color(self.haproxies, topology)
        if live == target:  # nothing to do: 0, as the gate's own no-op
            reason = f"{target} is already live; nothing to switch"
            decision = Decision(Verdict.NOOP, reason, target, live)
            return self._conclude(GateReport(decision, ExitCode.OK, (reason,), traffic_on=live))
        down = switch.down_servers(self.haproxies, topology, target)
        if down:
            servers = ", ".join(f"{k} {v}" for k, v in sorted(down.items()))
            decision = Decision(
                Verdict.REFUSED, f"HAProxy does not report {target} UP: {servers}", target, live
            )
            return self._conclude(
                GateReport(decision, ExitCode.REFUSED, (decision.reason,), Outcome.REFUSED)
            )
        decision = Decision(Verdict.SWITCH, reason, target, live)
        slots = None if rollback else slots_before_switch(self.deploys, self.signals, decision)
        if slots is not None:
            return self._conclude(slots)
        switcher = replace(self._switcher(self.signals), with_canary=False)  # moves at once
        return self._conclude(switcher.switch(decision, rollback=rollback, ignore_veto=ignore_veto))

    def _conclude(self, report: GateReport) -> GateReport:
        """Record the outcome (the history and the webhooks; not for a dry run) and finish the
        report: what the run was about added, no secret value in it (an exception message may
        hold one)."""
        redact = self.secrets.redact
        decision = report.decision
        report = replace(
            report,
            lines=tuple(redact(line) for line in report.lines),
            decision=None
            if decision is None
            else replace(decision, reason=redact(decision.reason)),
        )
        report = self.recorder.record(report)
        return replace(
            report,
            target=self.target,
            tag=self.tag(report.result),
            counts=self.outcomes.as_dict(),
            dry_run=self.settings.run.dry_run,
        )
