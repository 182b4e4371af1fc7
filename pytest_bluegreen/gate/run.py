"""One gate run, start to finish: lock, target, decision, switch or return, history.

Used by the pytest plugin (on the xdist controller only, through ``gateplugin.GatePlugin``) and
by the ``bluegreen`` command, so both take the same path. The decision itself is
:func:`.decision.decide`; the traffic moves in :mod:`pytest_bluegreen.switch.transaction`;
``--deploy`` is :mod:`.deploy`.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from pytest_bluegreen.engines import EngineBlind
from pytest_bluegreen.errors import BluegreenError, DeployError, ExitCode, Refused
from pytest_bluegreen.haproxy.instances import Haproxies, InstancesDisagree
from pytest_bluegreen.haproxy.lock import GateLock, GroupLock, HaproxyLock, lock_for_group
from pytest_bluegreen.haproxy.runtime import RuntimeApi, RuntimeApiError
from pytest_bluegreen.judge.bake import (
    DEFAULT_BAKE_THRESHOLDS,
    Bake,
    BakePlan,
    BakeResult,
    IntervalVerdict,
    PostResult,
    ServerWatch,
    parse_bake_thresholds,
)
from pytest_bluegreen.judge.blame import Blame, TwinRun, blame_failures
from pytest_bluegreen.process.signals import DeferredSignals, NoSignals
from pytest_bluegreen.record import recording, state
from pytest_bluegreen.record.state import Outcome
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import Settings, SettingsError
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal, UnfinishedJournal, read_journal
from pytest_bluegreen.switch.probe import Probe, ProbeSummary
from pytest_bluegreen.switch.reconcile import reconcile_recorded, record_missing

from . import aftercare
from .builds import BuildEvidence, Heard, resolve
from .decision import Decision, SessionFacts, Verdict, decide
from .outcomes import Outcomes

if TYPE_CHECKING:
    from pytest_bluegreen.engines import DeployEngine, DeployResult

    from .deploy import DeployStep

__all__ = ["GateHooks", "GateReport", "GateRun", "MetricsSink"]


def _no_veto(plan: switch.SwitchPlan, decision: Decision) -> str | None:
    return None


def _ignore_result(result: switch.SwitchResult) -> None:
    return None


def _ignore_rollback(from_color: str | None, to_color: str, reason: str) -> None:
    return None


def _ignore_step(step: str, plan: switch.SwitchPlan) -> None:
    return None


class MetricsSink(Protocol):
    """What a run tells the gate's own metrics (``report.metrics.RunMetrics``): the report
    lives above the gate, so the run knows them by this shape only."""

    def deployed(self, seconds: float) -> None: ...

    def concluded(self, report: GateReport) -> None: ...


class _NoMetrics:
    """No caller collects this run's metrics: what the run tells them goes nowhere."""

    def deployed(self, seconds: float) -> None:
        pass

    def concluded(self, report: GateReport) -> None:
        pass


@dataclass(frozen=True)
class GateHooks:
    """The user's hooks (``hookspecs.py``), bound to a config; no-ops by default."""

    before_switch: Callable[[switch.SwitchPlan, Decision], str | None] = _no_veto
    after_switch: Callable[[switch.SwitchResult], None] = _ignore_result
    after_rollback: Callable[[str | None, str, str], None] = _ignore_rollback
    on_step: Callable[[str, switch.SwitchPlan], None] = _ignore_step


@dataclass(frozen=True)
class GateReport:
    """What the gate did, for the terminal summary, the exit status and the reports."""

    decision: Decision | None  # None: no traffic decision (a deploy alone, an interruption)
    exit_code: int
    lines: tuple[str, ...]
    outcome: Outcome | None = None  # what the history recorded, if anything
    result: switch.SwitchResult | None = None
    traffic_on: str | None = None
    rolled_back: bool = False
    stat_before: str = ""  # HAProxy show stat around a switch, for the report
    stat_after: str = ""
    probe: ProbeSummary | None = None  # the zero-downtime probe's counts, when one ran
    bake: BakeResult | None = None  # the bake after the switch, when one ran
    blame: Blame | None = None  # failed checks tried on the other color, when they were

    @property
    def verdict_word(self) -> str:
        """The terminal summary's word: SWITCH, FAILED, REFUSED, ... or DONE/FAILED."""
        if self.decision is not None:
            return self.decision.verdict.value.upper()
        return "DONE" if self.exit_code == 0 else "FAILED"


@dataclass
class _Draft:
    """A report being put together; :meth:`GateRun._conclude` turns it into a GateReport."""

    decision: Decision | None
    exit_code: int
    lines: list[str] = field(default_factory=list)
    outcome: Outcome | None = None
    result: switch.SwitchResult | None = None
    traffic_on: str | None = None
    rolled_back: bool = False
    stat_before: str = ""
    stat_after: str = ""
    probe: ProbeSummary | None = None
    bake: BakeResult | None = None
    recorded: bool = False  # the history has this draft's outcome already
    to_history: bool = True  # False: refused before the lock was ours (notified, not written)
    went_back: bool = False  # the bake switched traffic back
    blame: Blame | None = None


class GateRun:
    def __init__(
        self,
        settings: Settings,
        hooks: GateHooks | None = None,
        api: RuntimeApi | None = None,
        *,
        progress: Callable[[str], None] = lambda line: None,
        secrets: Secrets | None = None,
        run_post: Callable[[], PostResult] | None = None,
        run_twin: TwinRun | None = None,
        metrics: MetricsSink | None = None,
        engine: DeployEngine | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine  # the deploy engine; default: the one deploy_engine names
        # the gate's own metrics: the switch, the bake and the deploy add to them here; the
        # caller collects the history's outcomes and publishes (report/metrics.py)
        self.metrics: MetricsSink = metrics if metrics is not None else _NoMetrics()
        self.run_post = run_post  # the post checks, run by the bake
        self.run_twin = run_twin  # a failed check's twin on the other color, run by blame
        self.secrets = secrets or Secrets()
        self.progress: Callable[[str], None] = switch.guarded(
            lambda line: progress(self.secrets.redact(line))
        )  # output (a closed stdout) never fails the switch, the bake or the deploy
        self.hooks = hooks or GateHooks()
        # every HAProxy instance as one group (a group of one by default); a client given by
        # the caller (tests, a fault-injecting proxy) is the one instance
        self.api: RuntimeApi | Haproxies = api or settings.haproxies()
        addresses = (
            self.api.addresses if isinstance(self.api, Haproxies) else [str(self.api.address)]
        )
        self.lock: GateLock | GroupLock | HaproxyLock = lock_for_group(
            settings.state.lock_dir, addresses
        )  # until start()
        self.journal = Journal(settings.state.journal_file, redact=self.secrets.redact)
        self.signals: DeferredSignals = NoSignals()
        self.target: str | None = settings.target
        self.outcomes = Outcomes()
        self.deployed: DeployResult | None = None
        self._deploy_step: DeployStep | None = None
        self.forced = False  # a switch without checks (bluegreen switch-to --force)
        self._said: set[str] = set()  # notes said once per run

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lock (unless a dry run) and settle the target.

        Raises lock.LockHeld, journal.UnfinishedJournal (a switch was cut off: recover first),
        RuntimeApiError (unreachable, not admin, unknown server), or SettingsError (a
        --rollback target that cannot be worked out or contradicts --env).
        """
        # the keys of every HAProxy, however its address is spelled; one named twice refused
        self.lock = HaproxyLock(self.settings.state.lock_dir, self.api)
        if not self.settings.run.dry_run:
            self.lock.acquire()
        try:
            self._leave_out_missing()
            if not self.settings.run.dry_run:
                for note in self.journal.prepare():  # refuses an unfinished journal
                    self.progress(note)
                state.ensure_folder(self.settings.state.state_file, "state_file")
                self._instances_in_line()
            else:  # a dry run says what the real one would: refused, nothing written
                state.check_history(self.settings.state.state_file, "state_file")
                entry = read_journal(self.journal.path)
                if entry is not None and entry.open:
                    raise UnfinishedJournal(self.journal.path, entry)
            # fail fast, before any check runs: every HAProxy answers, at admin level, and
            # knows every server the settings name
            if not self.settings.run.dry_run:
                self.api.require_admin()
            self.api.server_states(self.settings.topology.all_servers)
            if self.settings.run.switch or self.settings.run.rollback:
                switch.live_color(self.api, self.settings.topology)  # instances must agree
            if self.settings.run.rollback:
                self.target = self._rollback_target()
        except BaseException:
            self.lock.release()
            raise

    def _leave_out_missing(self) -> None:
        """Several instances: the allowed-missing ones that do not answer take no part."""
        group = self.api
        if isinstance(group, Haproxies) and group.several:
            for name in group.leave_out_missing():
                self.progress(
                    f"instance {name} does not answer: left out (--allow-missing-instance)"
                )

    def _instances_in_line(self) -> None:
        """Several instances: the ones a switch left out (recorded) are brought in line when
        they answer again."""
        group = self.api
        if not isinstance(group, Haproxies) or not group.several:
            return
        result = reconcile_recorded(group, self.settings, self.secrets)
        if result is None:
            return
        for line in result.lines():
            self.progress(line)

    def _rollback_target(self) -> str:
        topology = self.settings.topology
        live = switch.live_color(self.api, topology)
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

    # -- deploy ------------------------------------------------------------------------------
    @property
    def deploy_step(self) -> DeployStep:
        if self._deploy_step is None:
            from .deploy import DeployStep  # noqa: PLC0415 - engines load only to deploy

            self._deploy_step = DeployStep(self.settings, self.api, self.progress, self._engine)
        return self._deploy_step

    def deploy(self) -> DeployResult:
        """``--deploy TAG`` to the target. Raises DeployRefused (nothing changed), DeployError."""
        target, tag = self.target, self.settings.run.deploy
        assert target is not None
        assert tag is not None
        self.deployed = self.deploy_step.deploy(target, tag)
        self.metrics.deployed(self.deployed.seconds)
        return self.deployed

    # -- which build answers -----------------------------------------------------------------
    @property
    def expected_build(self) -> str | None:
        """The build the checks must judge: --deploy TAG, else --deployment-tag, else None
        (then the target's answers must at least all come from one build)."""
        run = self.settings.run
        return run.deploy or run.deployment_tag

    def before_checks(self) -> None:
        """Every HAProxy slot of the target runs the expected build before any check runs
        (a deploy in this run waited for it already). Raises SlotsNotReady, RuntimeApiError."""
        tag, target = self.expected_build, self.target
        if tag is None or target is None or self.deployed is not None:
            return
        self._wait_slots(target, tag)

    def _wait_slots(self, target: str, tag: str) -> None:
        """DeployStep's wait for the slots, within deploy_timeout; its note said once."""
        timeout = self.settings.compose.deploy_timeout
        note = self.deploy_step.wait_slots(target, tag, timeout=timeout, signals=self.signals)
        if note is not None and note not in self._said:
            self._said.add(note)
            self.progress(note)

    def _evidence(self, target: str) -> tuple[BuildEvidence, list[str]]:
        """What the target's answers said about their build, resolved through the engine (the
        image at the address HAProxy sent each to), and the lines to say about it."""
        heard: Counter[Heard] = self.outcomes[target].heard
        endpoints = {h.endpoint for h in heard if h.endpoint}
        lines = []
        expected = self.expected_build
        try:
            occupants = self.deploy_step.occupants(endpoints)
        except EngineBlind as exc:
            occupants = {}
            if expected is not None:
                lines.append(
                    f"what answered {target}'s checks behind HAProxy is not known ({exc}): "
                    "their version header says which build they came from"
                )
        found = resolve(heard, occupants)
        total, named = sum(heard.values()), sum(found.values())
        said = None
        if expected is not None and not total:
            said = (
                f"the checks noted no answer of {target} (the http fixture notes them; "
                "http.note_answers a load's)"
            )
        elif expected is not None and not named:
            said = (
                f"none of {target}'s {total} answer(s) said which build sent it (no "
                f"{self.settings.topology.version_header}, no "
                f"{self.settings.topology.server_header} the engine knows)"
            )
        unverified = None
        if said is not None and self.deploy_step.slots_shown.get(target) == expected:
            # the engine showed every HAProxy slot of the target running it: that ties them
            lines.append(
                f"warning: {said}; every HAProxy slot of {target} runs {expected}, as the "
                "deploy engine showed"
            )
        elif said is not None:
            unverified = (
                f"nothing ties the checks to {expected}: {said}, and the deploy engine did "
                f"not show what runs behind {target}'s HAProxy servers; the checks may have "
                "judged another build"
            )
        return BuildEvidence(expected, found, unverified), lines

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
        draft = _Draft(decision, exc.exit_code, [reason], to_history=record)
        if is_deploy:
            draft.outcome = Outcome.DEPLOY_FAILED
        elif isinstance(exc, Refused):  # a usage error is no outcome
            draft.outcome = Outcome.REFUSED
        return self._conclude(draft)

    def _live_or_none(self) -> str | None:
        """The live color, for the record of a refusal; None when HAProxy cannot tell."""
        try:
            return switch.live_color(self.api, self.settings.topology)
        except (RuntimeApiError, InstancesDisagree):
            return None

    # -- finish ------------------------------------------------------------------------------
    def finish(self, facts: SessionFacts, signals: DeferredSignals | None = None) -> GateReport:
        """Decide on the session's counts and facts, then switch, return or keep traffic.

        ``signals``: the DeferredSignals the caller holds around this call; a signal noted
        before the switch begins stops the gate with nothing changed, one noted during the
        switch reverts it or (past the point of no return) completes it.
        """
        assert self.target is not None, "finish() needs a target color"
        self.signals = signals or NoSignals()
        run = self.settings.run
        if facts.exitstatus not in (0, 1, 2, 5):  # an internal error, a usage error, ...
            line = f"session ended with status {facts.exitstatus}: nothing changed"
            draft = _Draft(None, facts.exitstatus, [line])
        elif (problem := self._deployed_version_problem()) is not None:
            try:
                live = switch.live_color(self.api, self.settings.topology)
            except RuntimeApiError:
                live = None
            decision = Decision(Verdict.FAILED, problem, self.target, live)
            lines = [problem, f"traffic stays on {live or 'no color'}"]
            draft = _Draft(decision, ExitCode.CHECKS_FAILED, lines, Outcome.FAILED, traffic_on=live)
        elif not (run.switch or run.rollback):
            draft = self._deploy_only(self.target, facts)
        else:
            draft = self._after_switch(self._finish(self.target, facts))
        deployed = self.deployed
        if (
            draft.exit_code != 0
            and deployed is not None
            and draft.traffic_on != deployed.color
            # where traffic is, is not known: the deployed color may be taking it
            and draft.outcome not in (Outcome.REVERT_FAILED, Outcome.INCOMPLETE)
            and not (draft.blame is not None and draft.blame.environmental)  # not the build
        ):
            draft.lines.append(self.deploy_step.after_failed_gate(deployed))
        return self._conclude(draft)

    def _deployed_version_problem(self) -> str | None:
        """With --deploy TAG, the target must answer with TAG before anything else counts (an
        answer another build gave is counted with the checks' answers instead)."""
        if self.deployed is None:
            return None
        return self.deploy_step.version_problem(
            self.deployed, self.outcomes[self.deployed.color].heard
        )

    def _deploy_only(self, target: str, facts: SessionFacts) -> _Draft:
        counts = self.outcomes[target]
        evidence, notes = self._evidence(target)
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
        return _Draft(None, 0 if passed else _failure_code(facts, decision), [*lines, *notes])

    def _down_after_wait(self, target: str, facts: SessionFacts) -> dict[str, str]:
        """The target's servers HAProxy does not count UP; when the checks passed and
        ``up_wait`` is set, after waiting up to that long for them (a replica being replaced
        comes back, and the slot of the one that died empties)."""
        topology = self.settings.topology
        down = switch.down_servers(self.api, topology, target)
        wait = self.settings.switching.up_wait
        if not down or not wait or facts.exitstatus != 0:
            return down
        self.progress(
            f"waiting up to {wait:g}s for {target} to be UP: "
            + ", ".join(f"{k} {v}" for k, v in sorted(down.items()))
        )
        deadline = time.monotonic() + wait
        while down and time.monotonic() < deadline and not self.signals.received:
            time.sleep(0.2)
            down = switch.down_servers(self.api, topology, target)
        return down

    def _finish(self, target: str, facts: SessionFacts) -> _Draft:
        topology = self.settings.topology
        if facts.exitstatus == ExitCode.NO_TESTS_COLLECTED:  # no check for the target ran
            facts = replace(facts, exitstatus=ExitCode.OK)
        try:
            live = switch.live_color(self.api, topology)
            down = self._down_after_wait(target, facts)
        except (RuntimeApiError, InstancesDisagree) as exc:
            disagree = isinstance(exc, InstancesDisagree)
            if facts.exitstatus != 0:
                what = "HAProxy" if disagree else "HAProxy unreachable"
                line = f"checks failed; {what}, nothing changed: {exc}"
                return _Draft(None, facts.exitstatus, [line])
            reason = f"refused: {exc}" if disagree else f"cannot read HAProxy: {exc}"
            decision = Decision(Verdict.REFUSED, reason, target, None)
            return _Draft(decision, ExitCode.REFUSED, [decision.reason], Outcome.REFUSED)

        evidence, notes = self._evidence(target)
        decision = decide(
            target=target,
            live=live,
            outcomes=self.outcomes.as_dict(),
            target_down=down,
            facts=facts,
            builds=evidence,
        )
        draft = self._decided(decision, facts, live)
        draft.lines += notes
        return draft

    def _decided(self, decision: Decision, facts: SessionFacts, live: str | None) -> _Draft:
        if decision.verdict is Verdict.FAILED:
            return self._failed(decision, facts)
        if decision.verdict is not Verdict.SWITCH:
            code = _failure_code(facts, decision)
            return _Draft(
                decision,
                code,
                [decision.reason],
                Outcome(decision.verdict.value),
                traffic_on=live,
            )
        slots = self._slots_before_switch(decision)
        if slots is not None:
            return slots
        if self.settings.run.promote_later:
            return self._pend(decision)
        return self._switch(decision, rollback=self.settings.run.rollback)

    def _slots_before_switch(self, decision: Decision) -> _Draft | None:
        """Right before the switch, again: every HAProxy slot of the target runs the expected
        build (none the old one); the refusal when not, else None."""
        tag, target = self.expected_build, decision.target
        if tag is None:
            return None
        try:
            self._wait_slots(target, tag)
        except Refused as exc:  # SlotsNotReady, a Runtime API error: nothing changed
            if self.signals.received:  # as a signal before the switch: nothing changed
                reason = (
                    f"interrupted by {self.signals.received} before the switch: nothing changed"
                )
                stopped = Decision(Verdict.INCONCLUSIVE, reason, target, decision.live)
                return _Draft(
                    stopped,
                    ExitCode.INTERRUPTED,
                    [reason],
                    Outcome.INCONCLUSIVE,
                    traffic_on=decision.live,
                )
            refused = Decision(Verdict.REFUSED, exc.first_line, target, decision.live)
            return _Draft(
                refused,
                ExitCode.REFUSED,
                [refused.reason],
                Outcome.REFUSED,
                traffic_on=decision.live,
            )
        return None

    def _failed(self, decision: Decision, facts: SessionFacts) -> _Draft:
        """Checks failed: blame first (not the build: inconclusive), then keep or return."""
        blamed = self._blame(decision.target, facts)
        if blamed is not None and blamed.environmental:
            return self._environmental(decision, blamed)
        draft = self._after_failure(decision, _failure_code(facts, decision))
        if blamed is not None:
            draft.lines[1:1] = [*blamed.lines(), blamed.summary()]
            draft.blame = blamed
        return draft

    def _blame(self, target: str, facts: SessionFacts) -> Blame | None:
        """Each failed check of the target, tried on the other color (see judge/blame.py)."""
        failed = self.outcomes[target].failed_ids
        if not (self.settings.blames and self.run_twin and failed) or facts.interrupted:
            return None
        other = self.settings.topology.other(target)
        self.progress(f"blame: running {len(failed)} failed check(s) of {target} on {other}")
        return blame_failures(target, other, failed, self.run_twin)

    def _environmental(self, failed: Decision, blamed: Blame) -> _Draft:
        """Every failed check of the target fails on the other color too: not the build."""
        decision = replace(
            failed, verdict=Verdict.INCONCLUSIVE, reason=f"inconclusive: {blamed.summary()}"
        )
        lines = [
            decision.reason,
            *blamed.lines(),
            f"traffic stays on {failed.live or 'no color'}; nothing rolled back",
        ]
        return _Draft(
            decision,
            ExitCode.INCONCLUSIVE,
            lines,
            Outcome.INCONCLUSIVE,
            traffic_on=failed.live,
            blame=blamed,
        )

    def _after_failure(self, decision: Decision, exitstatus: int) -> _Draft:
        """Checks failed: keep traffic where it is, or return it when the target is live and
        its own checks failed (never for a shared-only failure or an interrupted session)."""
        target, live = decision.target, decision.live
        if live != target or self.settings.run.rollback or not decision.may_return:
            lines = [decision.reason, f"traffic stays on {live or 'no color'}"]
            return _Draft(decision, exitstatus, lines, Outcome.FAILED, traffic_on=live)
        previous = self.settings.topology.other(target)
        try:
            down = switch.down_servers(self.api, self.settings.topology, previous)
        except RuntimeApiError as exc:
            down = {"Runtime API": str(exc)}
        if down:
            lines = [
                decision.reason,
                f"{target} is live and failing, but {previous} is not UP to take traffic back "
                f"({', '.join(f'{k} {v}' for k, v in down.items())}): traffic stays on {target}",
            ]
            return _Draft(decision, exitstatus, lines, Outcome.FAILED, traffic_on=live)
        back = Decision(Verdict.SWITCH, f"return traffic: {decision.reason}", previous, live)
        draft = self._switch(back, rollback=True)
        draft.lines.insert(0, decision.reason)
        draft.decision = decision
        if draft.exit_code == ExitCode.OK:
            draft.exit_code = exitstatus
        return draft

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
        self.forced = True
        self.signals = signals or NoSignals()
        topology = self.settings.topology
        live = switch.live_color(self.api, topology)
        if live == target:  # nothing to do: 0, as the gate's own no-op
            reason = f"{target} is already live; nothing to switch"
            decision = Decision(Verdict.NOOP, reason, target, live)
            return self._conclude(_Draft(decision, ExitCode.OK, [reason], traffic_on=live))
        down = switch.down_servers(self.api, topology, target)
        if down:
            servers = ", ".join(f"{k} {v}" for k, v in sorted(down.items()))
            decision = Decision(
                Verdict.REFUSED, f"HAProxy does not report {target} UP: {servers}", target, live
            )
            return self._conclude(
                _Draft(decision, ExitCode.REFUSED, [decision.reason], Outcome.REFUSED)
            )
        decision = Decision(Verdict.SWITCH, reason, target, live)
        slots = None if rollback else self._slots_before_switch(decision)
        if slots is not None:
            return self._conclude(slots)
        return self._conclude(self._switch(decision, rollback=rollback, ignore_veto=ignore_veto))

    def _switch(self, decision: Decision, *, rollback: bool, ignore_veto: bool = False) -> _Draft:
        settings, target = self.settings, decision.target
        verb = "roll back" if rollback else "switch"
        try:
            plan = switch.plan(self.api, settings.topology, target, settings.switching.full_weight)
        except (RuntimeApiError, InstancesDisagree) as exc:
            refused = Decision(Verdict.REFUSED, f"cannot {verb}: {exc}", target, decision.live)
            return _Draft(refused, ExitCode.REFUSED, [refused.reason], Outcome.REFUSED)
        if settings.run.dry_run:
            lines = [
                f"dry run: would {verb} because {decision.reason}",
                *plan.describe(),
                "dry run: nothing changed",
            ]
            return _Draft(decision, decision.exit_code, lines, traffic_on=decision.live)
        if self.signals.received:  # before anything changed: nothing to undo
            reason = f"interrupted by {self.signals.received} before the switch: nothing changed"
            stopped = Decision(Verdict.INCONCLUSIVE, reason, target, decision.live)
            return _Draft(
                stopped,
                ExitCode.INTERRUPTED,
                [reason],
                Outcome.INCONCLUSIVE,
                traffic_on=decision.live,
            )
        checked = self._veto(plan, decision, ignore_veto)
        if isinstance(checked, _Draft):
            return checked
        return self._apply(plan, checked, rollback)

    def _veto(
        self, plan: switch.SwitchPlan, decision: Decision, ignore_veto: bool
    ) -> Decision | _Draft:
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
            return _Draft(
                vetoed, ExitCode.REFUSED, [vetoed.reason], Outcome.REFUSED, traffic_on=plan.source
            )
        return decision

    def _apply(self, plan: switch.SwitchPlan, decision: Decision, rollback: bool) -> _Draft:
        """The switch itself, with the probe and HAProxy's stats around it."""
        settings, target = self.settings, decision.target
        stat_before = self._show_stat()
        probe = (
            Probe(settings.switching, settings.topology.color_header)
            if settings.switching.probe_requests
            else None
        )
        try:
            try:
                # still ours (no gate started since someone removed it), and every key of
                # this HAProxy held, read again now that it answers
                self.lock.verify()
                result = switch.apply(
                    self.api,
                    plan,
                    settings.switching,
                    settings.topology,
                    journal=self.journal,
                    signals=self.signals,
                    # a group's instances carry their own server-state files
                    server_state_file=None
                    if isinstance(self.api, Haproxies)
                    else settings.haproxy.haproxy_state_file,
                    on_step=self.hooks.on_step,
                    progress=self.progress,
                )
            finally:
                probe_summary = probe.finish() if probe else None
        except switch.SwitchError as exc:
            reverted = exc.reverted
            outcome = Outcome.REVERTED if reverted else Outcome.REVERT_FAILED
            if isinstance(exc, switch.SwitchIncomplete):  # verified, not undone: not complete
                outcome = Outcome.INCOMPLETE
            return _Draft(
                Decision(Verdict.REFUSED, str(exc), target, plan.source),
                exc.exit_code,
                [str(exc)],
                outcome,
                # unknown after a failed revert or an incomplete switch
                traffic_on=plan.source if reverted else None,
                stat_before=stat_before,
                stat_after=self._show_stat(),
                probe=probe_summary,
            )
        except Refused as exc:  # before any change (the journal could not be written, ...)
            refused = Decision(Verdict.REFUSED, exc.first_line, target, plan.source)
            return _Draft(
                refused, exc.exit_code, [refused.reason], Outcome.REFUSED, traffic_on=plan.source
            )
        lines = [
            f"{'rolled back' if rollback else 'switched'} {plan.source or '(none)'} -> {target}: "
            f"{decision.reason}",
            f"verified through {self._verified_through(plan)}: first answer from "
            f"{target} {result.latency_ms:.1f} ms after the switch began"
            + (f", version {result.version}" if result.version else ""),
            *result.notes,
            *self._left_out(target),
        ]
        if probe_summary is not None:
            lines.append(probe_summary.line(settings.switching.routed_api_url))
        lines += self._after_hooks(rollback, plan.source, target, decision.reason, result)
        return _Draft(
            decision,
            ExitCode.OK,
            lines,
            Outcome.ROLLED_BACK if rollback else Outcome.SWITCHED,
            result=result,
            traffic_on=target,
            rolled_back=rollback,
            stat_before=stat_before,
            stat_after=self._show_stat(),
            probe=probe_summary,
        )

    def _verified_through(self, plan: switch.SwitchPlan) -> str:
        if len(plan.members) > 1:
            return f"every instance's routed URL ({', '.join(plan.member_names())})"
        return self.settings.switching.verify_url

    def _left_out(self, target: str) -> list[str]:
        """Instances left out of this switch: recorded to be brought in line."""
        if not isinstance(self.api, Haproxies) or not self.api.skipped:
            return []
        missing = sorted(self.api.skipped)
        try:
            record_missing(self.settings.state.state_file, missing, target)
        except (OSError, state.StateFileError) as exc:
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
        result: switch.SwitchResult,
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

    def _show_stat(self) -> str:
        try:
            return self.api.execute("show stat")
        except RuntimeApiError as exc:
            return f"(show stat failed: {exc})"

    # -- after the switch: the bake, the old color kept warm, a pending promotion -------------
    def _after_switch(self, draft: _Draft) -> _Draft:
        """A switch that stands (or a --rollback): the bake, then the old color's warm window."""
        moved = draft.outcome is Outcome.SWITCHED or (
            draft.outcome is Outcome.ROLLED_BACK and self.settings.run.rollback
        )
        if not moved or draft.result is None or self.settings.run.dry_run:
            return draft
        old, new = draft.result.plan.source, draft.result.plan.target
        if self.settings.bake.enabled and self.run_post is not None:
            draft = self._bake(draft)
            stopped = draft.bake is not None and draft.bake.changed
            if draft.went_back or draft.exit_code == ExitCode.INTERRUPTED or stopped:
                # the old color is live again, the bake was cut short, or someone changed
                # the servers by hand: no warm window on states the switch no longer holds
                return draft
        if old is not None:
            # recorded (and notified) now: with after_bake_old_color = stop, the warm window
            # is waited out before the gate ends
            self._record(draft)
            draft.lines += aftercare.keep_warm(self, old, new)
        return draft

    def _bake(self, draft: _Draft) -> _Draft:
        """Run the bake; a failed one (or one that cannot judge, by default) switches back."""
        switched = draft.result
        assert switched is not None
        self._record(draft)  # the switch happened: the history says so before the bake
        settings = self.settings.bake
        plan = BakePlan(
            seconds=settings.bake_seconds or 0.0,
            interval=settings.bake_interval,
            failure_limit=settings.bake_failure_limit,
            consecutive_successes=settings.bake_consecutive_successes,
            min_requests=settings.bake_min_requests,
            thresholds=(
                settings.thresholds
                if settings.thresholds is not None
                else parse_bake_thresholds(DEFAULT_BAKE_THRESHOLDS)
            ),
            prometheus=settings.prometheus,
        )
        target = switched.plan.target
        assert self.run_post is not None
        asks_prometheus = bool(plan.prometheus) and self.settings.prometheus.prometheus_url
        client = self.settings.prometheus.client() if asks_prometheus else None
        try:  # the servers as the switch left them: a change outside the gate stops the bake
            watch: ServerWatch | None = ServerWatch(self.api, self.settings.topology.all_servers)
        except RuntimeApiError:
            watch = None  # unreadable now: the bake's readings say so, interval by interval
        with client or contextlib.nullcontext() as prometheus:
            result = Bake(
                plan,
                self.api,
                self.settings.topology.servers(target),
                self.run_post,
                signals=self.signals,
                progress=self.progress,
                color=target,
                prometheus=prometheus,
                watch=watch,
            ).run()
        draft.bake = result
        if result.changed:
            draft.lines.append(
                f"bake {result.reason}: nothing switched back over that change; traffic is "
                "where it was set (bluegreen status)"
            )
            draft.exit_code = ExitCode.INCONCLUSIVE
            return draft
        back = result.verdict is IntervalVerdict.FAILED or (
            result.verdict is IntervalVerdict.INCONCLUSIVE
            and settings.bake_on_inconclusive == "rollback"
            and result.interrupted is None
        )
        if result.interrupted is not None:
            draft.lines.append(
                f"bake {result.reason}: traffic stays on {target} (switched and verified); "
                "nothing else was judged"
            )
            draft.exit_code = ExitCode.INTERRUPTED
            return draft
        if not back:
            kept = "" if result.verdict is IntervalVerdict.PASSED else " (bake_on_inconclusive)"
            draft.lines.append(f"bake {result.verdict.value}{kept}: {result.reason}")
            return draft
        source = switched.plan.source
        if source is None:
            draft.lines.append(
                f"bake {result.verdict.value}: {result.reason}; no color to go back to"
            )
            draft.exit_code = ExitCode.BAKE_FAILED
            return draft
        return self._switch_back(draft, source, result)

    def _switch_back(self, draft: _Draft, source: str, result: BakeResult) -> _Draft:
        """Return traffic to ``source`` through the same journaled switch; a signal now
        completes it (the safe direction), a user's veto does not hold it back."""
        reason = f"bake {result.verdict.value}: {result.reason}"
        live = draft.result.plan.target if draft.result is not None else None
        back = Decision(Verdict.SWITCH, reason, source, live)
        signals, self.signals = self.signals, NoSignals()
        try:
            plan = switch.plan(
                self.api, self.settings.topology, source, self.settings.switching.full_weight
            )
            returned = self._apply(plan, back, rollback=True)
        except (RuntimeApiError, InstancesDisagree) as exc:
            returned = _Draft(
                Decision(Verdict.REFUSED, f"cannot switch back: {exc}", source, live),
                ExitCode.REVERT_FAILED,
                [f"cannot switch back to {source}: {exc}"],
                Outcome.REVERT_FAILED,
            )
        finally:
            self.signals = signals
        evidence = result.failing.line() if result.failing is not None else ""
        returned.lines = [*draft.lines, reason, *([evidence] if evidence else []), *returned.lines]
        returned.bake = result
        returned.went_back = True
        if returned.outcome is Outcome.ROLLED_BACK:
            returned.exit_code = ExitCode.BAKE_FAILED
        return returned

    def _pend(self, decision: Decision) -> _Draft:
        """--switch=manual: verified, recorded as a pending promotion; nothing switched."""
        lines = aftercare.pend(self, decision)
        return _Draft(decision, ExitCode.OK, lines, Outcome.PENDING, traffic_on=decision.live)

    def _conclude(self, draft: _Draft) -> GateReport:
        """Record the outcome (the history and the webhooks; not for a dry run) and build the
        report; no secret value reaches any of them (an exception message may hold one)."""
        draft.lines = [self.secrets.redact(line) for line in draft.lines]
        if draft.decision is not None:
            draft.decision = replace(
                draft.decision, reason=self.secrets.redact(draft.decision.reason)
            )
        self._record(draft)
        report = GateReport(
            decision=draft.decision,
            exit_code=draft.exit_code,
            lines=tuple(draft.lines),
            outcome=draft.outcome,
            result=draft.result,
            traffic_on=draft.traffic_on,
            rolled_back=draft.rolled_back,
            stat_before=draft.stat_before,
            stat_after=draft.stat_after,
            probe=draft.probe,
            bake=draft.bake,
            blame=draft.blame,
        )
        if not self.settings.run.dry_run:
            self.metrics.concluded(report)
        return report

    def tag(self, result: switch.SwitchResult | None) -> str | None:
        """The version this run is about: --deploy, --deployment-tag, else what answered."""
        run = self.settings.run
        return run.deploy or run.deployment_tag or (result.version if result else None)

    def _record(self, draft: _Draft) -> None:
        """Record the draft's outcome once (the history, the webhooks; not for a dry run),
        its warning lines added to the draft's."""
        decision, outcome, result = draft.decision, draft.outcome, draft.result
        if outcome is None or decision is None or draft.recorded or self.settings.run.dry_run:
            return
        # a switch that happened names its own direction (returning traffic from a failing
        # live color: the decision is about that color, the switch went to the other)
        source, target = (
            (result.plan.source, result.plan.target)
            if result is not None
            else (decision.live, decision.target)
        )
        entry = state.HistoryEntry.now(
            from_color=source,
            to_color=target,
            tag=self.tag(result),
            outcome=outcome,
            reason=self.secrets.redact(decision.reason),
            forced=self.forced,
        )
        draft.lines += recording.record(
            self.settings,
            entry,
            secrets=self.secrets,
            exit_code=draft.exit_code,
            to_history=draft.to_history,
        )
        draft.recorded = True


def _failure_code(facts: SessionFacts, decision: Decision) -> int:
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
