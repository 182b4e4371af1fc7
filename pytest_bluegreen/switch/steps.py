"""The switch's steps as one transaction on every HAProxy instance (``Transaction``): promote,
drain, verify (the point of no return), wait-drained, idle, confirm, save-state; journaled,
reverted before the point of no return, completed after it (see :mod:`.transaction`)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_bluegreen.errors import Refused
from pytest_bluegreen.haproxy.answers import AdminState, RuntimeApiError, ServerRef, StatRow
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi, state_command, weight_command
from pytest_bluegreen.haproxy.sticky import new_canary_id
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.settings import SwitchingSettings, Topology

from .canary import (
    STICKY_STEP,
    CanaryFailed,
    CanaryInconclusive,
    CanaryJudge,
    CanaryStep,
    CanaryVerdict,
)
from .journal import Journal, JournalMember
from .outcome import (
    Abort,
    MemberPlan,
    NotSwitched,
    RevertFailed,
    SwitchError,
    SwitchIncomplete,
    SwitchPlan,
    SwitchResult,
    Verification,
    VerifyError,
    Wanted,
)
from .reading import identity
from .restoring import manual_restore, revert_every
from .serverstate import ServerStateFileError, StateMoved, save_server_state
from .verification import POLL_INTERVAL

__all__ = [
    "POINT_OF_NO_RETURN",
    "RETRY_PAUSES",
    "STEPS",
    "StepHook",
    "Transaction",
    "Verifier",
    "guarded",
]


def _stick(name: str, api: RuntimeApi, *, canary: str) -> None:
    """A canary's sticky users on, on one instance, with the group's one canary id."""
    api.set_sticky(True, canary=canary)


STEPS = ("promote", "drain", "verify", "wait-drained", "idle", "confirm", "save-state")
POINT_OF_NO_RETURN = "verify"  # once journaled, the switch is completed, never undone
# past the point of no return, a step HAProxy failed is tried again after these pauses (s)
RETRY_PAUSES = (0.05, 0.15, 0.3)


Verifier = Callable[[str, float], Verification]  # (target, deadline) -> first answers
StepHook = Callable[[str, SwitchPlan], None]


def guarded(progress: Callable[[str], None]) -> Callable[[str], None]:
    """Output never raises into a switch: a line nobody can take (a closed stdout, a terminal
    gone) is dropped, never read as a failure of HAProxy's."""

    def say(line: str) -> None:
        with contextlib.suppress(Exception):  # output is best effort; HAProxy's state is not
            progress(line)

    return say


@dataclass
class Transaction:
    group: Haproxies
    plan: SwitchPlan
    switching: SwitchingSettings
    topology: Topology
    journal: Journal | None
    signals: DeferredSignals
    server_state_files: Mapping[str, Path]
    verifier: Verifier
    on_step: StepHook
    progress: Callable[[str], None]
    step: str = "prepare"
    past_point_of_no_return: bool = False
    # past the point of no return: apply the switch's states again before the next step (a
    # reload since, an error that may have left a command half done)
    repair: bool = False
    idled: bool = False
    drain_deadline: float | None = None
    # the drain's end, once the old sessions' close was sent: why, and how many were open (a
    # step tried again after a lost answer counts and says them, not "drained")
    closing: tuple[str, int] | None = None
    processes: dict[str, InstanceIdentity] = field(default_factory=dict)
    # canary steps before 'promote' (switch/canary.py), each judged by ``judge``; ``sticky``:
    # users keep their color while they run (HAProxy's bluegreen_sticky cookie honoured)
    canary: tuple[CanaryStep, ...] = ()
    judge: CanaryJudge | None = None
    sticky: bool = False
    stuck: bool = False  # persistence was (or may have been) turned on: it must go off again
    result: SwitchResult = field(init=False)

    def __post_init__(self) -> None:
        self.processes = {m.name: m.instance for m in self.plan.members}
        self.result = SwitchResult(plan=self.plan, started=time.monotonic())

    @property
    def names(self) -> tuple[str, ...]:
        return self.plan.member_names()

    @property
    def files(self) -> dict[str, Path]:
        return {n: f for n, f in self.server_state_files.items() if n in self.names}

    def member(self, name: str) -> MemberPlan:
        return next(m for m in self.plan.members if m.name == name)

    def run(self) -> SwitchResult:
        result = self.result
        result.started = time.monotonic()
        if self.journal is not None:
            try:
                self.journal.begin(
                    source=self.plan.source,
                    target=self.plan.target,
                    instance=self.plan.members[0].instance,
                    prior=self.plan.prior,
                    members=[
                        JournalMember.of(m.name, m.instance, m.prior) for m in self.plan.members
                    ],
                )
            except OSError as exc:
                raise Refused(f"cannot write the journal {self.journal.path}: {exc}") from None
        try:
            self._canary()
            self._enter("promote")
            self._on_every(self._promote)
            result.promoted = time.monotonic()
            self._done()
            self._enter("drain")
            self._on_every(self._drain)
            self._done()
            self._enter("verify")
            verification = self.verifier(
                self.plan.target, time.monotonic() + self.switching.verify_timeout
            )
            result.first_target_response = verification.first_response
            result.version = verification.version
            self._done(version=result.version)  # journaled: the point of no return
        except (RuntimeApiError, VerifyError, OSError, Abort) as exc:
            self._revert(exc)
        except BaseException as exc:  # a bug of ours, a KeyboardInterrupt: before it, undo
            self._revert(Abort(f"{type(exc).__name__}: {exc}"))
        self.past_point_of_no_return = True
        self._complete()
        if self.signals.received:
            result.notes.append(
                f"{self.signals.received} came after the point of no return ('verify'): the "
                "switch was completed"
            )
        self._close("switched")
        result.finished = time.monotonic()
        return result

    def complete(self) -> SwitchResult:
        """Only what follows the point of no return, from HAProxy as it is now (``bluegreen
        recover`` after a switch cut off past it): every step idempotent, the switch's
        states applied first. The journal is left for the caller to close."""
        result = self.result
        result.started = time.monotonic()
        self.past_point_of_no_return = True
        self.repair = True
        self._complete()
        result.finished = time.monotonic()
        return result

    # -- the canary, before 'promote' ----------------------------------------------------------
    def _canary(self) -> None:
        """Each step's weights on every instance, journaled, then judged: a failed step raises
        (the transaction reverts to the states before the canary), ``bluegreen promote`` skips
        the steps left."""
        for step in self.canary:
            self._enter(step.name)
            if self.sticky and not self.stuck:
                # journaled before it is sent (a gate killed right after it leaves recover a
                # record to let the users go by), and counted as sent: a lost answer may hide it
                self._journal_intent(STICKY_STEP)
                self.stuck = True
                # one id for the group: a user answered by another instance keeps its color
                self._on_every(functools.partial(_stick, canary=new_canary_id()))
            self._on_every(functools.partial(self._weigh, step=step))
            until = round(time.time() + step.seconds, 3)
            self._done(**step.facts(), sticky=self.stuck, until=until)
            self.progress(
                f"switch {self.plan.source or '(none)'} -> {self.plan.target}: {step.describe()}"
            )
            if self.judge is None:
                continue
            try:
                verdict = self.judge(step)
            except CanaryFailed as exc:  # the decision, journaled before any weight goes back
                unjudged = isinstance(exc, CanaryInconclusive)
                self._judged(step, "inconclusive" if unjudged else "failed", str(exc))
                raise
            self._judged(step, verdict.value, "")
            self._check_instances()  # a reload during the step took its weights
            if verdict is CanaryVerdict.PROMOTE and step.number < step.of:
                self._warn(
                    f"bluegreen promote at canary step {step.number}/{step.of}: the steps left "
                    "were skipped"
                )
                break

    def _journal_intent(self, name: str) -> None:
        """A record before a change that recovery must know of; unwritten, nothing is sent."""
        if self.journal is not None and self.journal.entry is not None:
            self.journal.step(name)

    def _judged(self, step: CanaryStep, verdict: str, reason: str) -> None:
        """A step's judgement in the journal (what ``bluegreen status`` and a benchmark read):
        best effort, the judgement stands without it."""
        if self.journal is not None and self.journal.entry is not None:
            with contextlib.suppress(OSError):
                self.journal.step(f"{step.name}-judged", verdict=verdict, reason=reason)

    def _weigh(self, name: str, api: RuntimeApi, *, step: CanaryStep) -> None:
        """The step's weights, the new color's servers made ready (as 'promote' would)."""
        prior = self.member(name).prior
        for ref, weight in step.weights.items():
            api.set_weight(ref, weight)
            if ref in prior and prior[ref].admin is not AdminState.READY:
                api.set_state(ref, AdminState.READY)

    def _unstick_every(self) -> tuple[str, ...]:
        """Persistence off again on every instance (a revert, the full switch): what failed."""
        if not self.stuck:
            return ()
        failed: list[str] = []

        def unstick(name: str, api: RuntimeApi) -> None:
            try:
                api.set_sticky(False)
            except RuntimeApiError as exc:
                failed.append(
                    self.group.label(name, f"the canary's sticky users (set var failed: {exc})")
                )

        self.group.each(unstick, names=self.names)
        if not failed:
            self.stuck = False
        return tuple(failed)

    # -- past the point of no return: complete, never undo ------------------------------------
    def _complete(self) -> None:
        try:
            self._persist("wait-drained", self._wait_drained)
            self._persist("idle", lambda: self._on_every(self._idle))
            self.idled = True
            self._persist("confirm", self._confirm)
            if self.files:
                self._persist("save-state", self._save_states)
        except SwitchIncomplete:
            raise
        except BaseException as exc:  # a bug of ours: nothing undone, the journal left open
            raise self._incomplete(Abort(f"{type(exc).__name__}: {exc}")) from exc

    def _persist(self, step: str, action: Callable[[], None]) -> None:
        """One step past the point of no return: only HAProxy's own errors count, and they
        make the step be tried again (the switch's states applied first) before the switch
        is given up as incomplete."""
        for pause in (*RETRY_PAUSES, None):
            try:
                self._enter(step)
                if self.repair:
                    self._on_every(self._reapply)
                    self.repair = False
                action()
                break
            except (RuntimeApiError, ServerStateFileError, NotSwitched) as exc:
                if pause is None:
                    raise self._incomplete(exc) from exc
                self._warn(f"past the point of no return, '{step}' failed ({exc}); tried again")
                self.repair = True  # a command HAProxy applied may have lost its answer
                time.sleep(pause)
        facts = (
            {"drained": self.result.drained, "closed": self.result.closed_sessions}
            if step == "wait-drained"
            else {}
        )
        try:
            self._done(**facts)
        except OSError as exc:  # the switch stands; the journal says less than it did
            self._warn(f"warning: the journal did not take step '{step}': {exc}")

    def _reapply(self, name: str, api: RuntimeApi) -> None:
        """The states this point of the switch should show, whatever HAProxy shows now (a
        reload took its server-state file, a command's answer was lost): idempotent."""
        api.set_all(
            [
                command
                for ref in self.plan.promote
                for command in (
                    weight_command(ref, self.plan.full_weight),
                    state_command(ref, AdminState.READY),
                )
            ]
        )
        if self.stuck:
            api.set_sticky(False)
        if self.idled:
            self._idle(name, api)
        else:
            self._drain(name, api)

    def _incomplete(self, cause: Exception) -> SwitchIncomplete:
        detail = f"at '{self.step}': {cause}"
        if self.journal is not None and self.journal.entry is not None:
            # the journal stays open either way: recover completes the switch
            with contextlib.suppress(OSError):
                self.journal.step("incomplete", error=str(cause))
        return SwitchIncomplete(
            f"switch to {self.plan.target} passed its point of no return ({self.plan.target} "
            f"verified) but could not be completed {detail}; nothing was undone: HAProxy may "
            f"be half-switched or its server-state file stale; run 'bluegreen recover' (it "
            f"completes the switch; 'bluegreen recover --to {self.plan.source or 'COLOR'}' "
            "undoes it)",
            step=self.step,
            interrupted=self.signals.received,
        )

    def _close(self, outcome: str) -> None:
        if self.journal is None:
            return
        try:
            self.journal.close(outcome)
        except OSError as exc:
            self._warn(
                f"warning: the journal {self.journal.path} could not be closed ({exc}): the "
                "next gate asks for 'bluegreen recover', which completes this switch again"
            )

    # -- the changes, on one instance: each step's commands on one line (one connection) ------
    def _promote(self, name: str, api: RuntimeApi) -> None:
        prior = self.member(name).prior
        commands = []
        for ref in self.plan.promote:
            commands.append(weight_command(ref, self.plan.full_weight))
            if prior[ref].admin is not AdminState.READY:
                commands.append(state_command(ref, AdminState.READY))
        api.set_all(commands)
        if self.stuck:  # the full switch moves everyone: no user is held on the old color
            api.set_sticky(False)
        if self.canary:  # the old color as before the canary until it drains (not 256 to 100)
            api.set_all([weight_command(ref, prior[ref].uweight) for ref in self.plan.retire])

    def _drain(self, name: str, api: RuntimeApi) -> None:
        api.set_all([state_command(ref, AdminState.DRAIN) for ref in self.plan.retire])

    def _idle(self, name: str, api: RuntimeApi) -> None:
        api.set_all(
            [
                command
                for ref in self.plan.retire
                for command in (weight_command(ref, 0), state_command(ref, AdminState.READY))
            ]
        )

    def _on_every(self, change: Callable[[str, RuntimeApi], None]) -> None:
        """One change on every instance at once; any instance's error fails the step."""
        self.group.each(change, names=self.names)

    # -- steps -------------------------------------------------------------------------------
    def _enter(self, step: str) -> None:
        """Before a step: a signal before the point of no return aborts; the step hook runs
        (one that raises aborts before the point of no return, is reported after it); every
        HAProxy must still be the process the switch began with."""
        self.step = step
        self.progress(f"switch {self.plan.source or '(none)'} -> {self.plan.target}: {step}")
        self._check_signal()
        try:
            self.on_step(step, self.plan)
        except BaseException as exc:  # the user's hook: pytest.fail, sys.exit, a Ctrl-C too
            what = f"the step hook raised {type(exc).__name__}: {exc}"
            if not self.past_point_of_no_return:
                raise Abort(what) from exc
            self._warn(f"{what} at '{step}', past the point of no return: the switch goes on")
        self._check_signal()
        self._check_instances()

    def _warn(self, line: str) -> None:
        self.result.notes.append(line)

    def _done(self, **facts: object) -> None:
        if self.journal is not None:
            if len(self.names) > 1:
                facts["instances"] = list(self.names)
            self.journal.step(self.step, **facts)

    def _check_signal(self) -> None:
        if self.signals.received and not self.past_point_of_no_return:
            raise Abort(f"interrupted by {self.signals.received}")

    def _check_instances(self) -> None:
        if self.step == "promote":
            # read with the plan a moment ago; a reload since shows at 'drain', right after
            return
        now = self.group.each(lambda name, api: identity(api), names=self.names)
        for name, found in now.items():
            began = self.processes[name]
            if found.same_process(began):
                continue
            where = f"{self.group.label(name, 'HAProxy')} at {began.address}"
            if not self.past_point_of_no_return:
                raise Abort(
                    f"{where} was reloaded or restarted during the switch ({began} -> {found}): "
                    "its server states are no longer ours"
                )
            self._warn(
                f"{where} was reloaded or restarted past the point of no return ({began} -> "
                f"{found}): the switch's states applied again on the new process"
            )
            self.processes[name] = found
            self.repair = True

    def _wait_drained(self) -> None:
        result = self.result
        start = time.monotonic()
        if self.drain_deadline is None:  # a step tried again keeps its first deadline
            self.drain_deadline = start + self.switching.drain_timeout
        deadline = self.drain_deadline
        wanted = set(self.plan.retire)
        next_report = start + 1.0
        while True:
            rows = self.group.stat_by_instance(names=self.names)
            for name, stat in rows.items():
                seen = {row.ref for row in stat}
                if not wanted <= seen:  # an answer cut short reads as no sessions: not drained
                    lacking = ", ".join(str(ref) for ref in sorted(wanted - seen))
                    raise RuntimeApiError(
                        "show stat",
                        "",
                        f"{self.group.label(name, 'HAProxy')} answered 'show stat' without "
                        f"{lacking} (cut short?)",
                    )
            busy = [
                (name, row)
                for name, stat in rows.items()
                for row in stat
                if row.ref in wanted and row.scur > 0
            ]
            now = time.monotonic()
            if not busy:
                if self.closing is None:
                    result.drained = True
                else:  # the close was sent before, its answer lost: it took
                    self._closed(*self.closing)
                break
            open_sessions = sum(row.scur for _, row in busy)
            if self.signals.received or now >= deadline:  # the drain ends here
                why = (
                    f"drain wait cut short by {self.signals.received}"
                    if self.signals.received
                    else f"{self.switching.drain_timeout:g}s drain timeout"
                )
                if self.switching.drain_close:
                    # counted once, when first sent: a step tried again closes what is left
                    self.closing = self.closing or (why, open_sessions)
                    self._close_sessions(busy)
                    self._closed(*self.closing)
                else:
                    result.notes.append(
                        f"{why}: {open_sessions} old session(s) finish on their own "
                        "(drain_close = false)"
                    )
                break
            if now >= next_report:  # long drains say what they wait for, once a second
                sessions = ", ".join(
                    f"{self.group.label(name, str(row.ref))} {row.scur}" for name, row in busy
                )
                self.progress(f"draining: {sessions} session(s) open, {deadline - now:.0f}s left")
                next_report = now + 1.0
            time.sleep(POLL_INTERVAL)
        result.drain_seconds += time.monotonic() - start

    def _closed(self, why: str, open_sessions: int) -> None:
        self.result.closed_sessions = open_sessions
        self.result.notes.append(
            f"{why}: {open_sessions} old session(s) still open, closed (a stream ends, a request "
            f"in flight gets no answer; their clients' reconnects go to {self.plan.target})"
        )

    def _close_sessions(self, busy: list[tuple[str, StatRow]]) -> None:
        """The old color's sessions still open when the drain ends (a long-lived stream, a
        WebSocket, a slow download): HAProxy closes them, their clients reconnect and the
        weights send them to the target. Idempotent: a step tried again closes what is left."""
        refs: dict[str, list[ServerRef]] = {}
        for name, row in busy:
            refs.setdefault(name, []).append(row.ref)

        def close(name: str, api: RuntimeApi) -> None:
            for ref in refs[name]:
                api.shutdown_sessions(ref)

        self.group.each(close, names=list(refs))

    def _confirm(self) -> None:
        """Every instance's states are what the switch set (else tried again), and every routed
        URL answers from the target again (else a warning)."""
        every = self.group.states_by_instance(self.topology.all_servers, names=self.names)
        for name, states in every.items():
            wrong = [
                f"{ref} weight {states[ref].uweight} {states[ref].admin.value}"
                for ref in self.plan.promote
                if states[ref].uweight != self.plan.full_weight
                or states[ref].admin is not AdminState.READY
            ] + [
                f"{ref} weight {states[ref].uweight} {states[ref].admin.value}"
                for ref in self.plan.retire
                if states[ref].uweight != 0 or states[ref].admin is not AdminState.READY
            ]
            where = self.group.label(name, "HAProxy")
            if wrong:
                raise NotSwitched(f"{where}'s states are not the switch's: {', '.join(wrong)}")
            if self.topology.live_color(states) != self.plan.target:
                raise NotSwitched(f"{where} does not show {self.plan.target} as the one live color")
        try:
            self.verifier(self.plan.target, time.monotonic() + self.switching.verify_timeout)
        except VerifyError as exc:
            # the target answered at 'verify'; failing since is the color's doing, not
            # HAProxy's (whose states are the switch's): said, not undone -- the bake's to judge
            self._warn(
                f"warning: at 'confirm' {exc}; HAProxy's states are the switch's and "
                f"{self.plan.target} was verified at 'verify': nothing undone (a bake, --bake, "
                "switches back on failures after the switch)"
            )

    def _save_states(self) -> None:
        """Every switched instance's server-state file, so that a reload keeps what HAProxy
        shows now: the switch's states past the point of no return, the prior ones in a
        revert (StateMoved when HAProxy shows others, or was reloaded during the save)."""
        files = self.files
        if not files:
            return
        refs = self.topology.all_servers

        def save(name: str, api: RuntimeApi) -> None:
            save_server_state(api, files[name], refs, wanted=self._wanted(name))

        self.group.each(save, names=list(files))

    def _wanted(self, name: str) -> list[Wanted]:
        """What instance ``name`` should show now: the switch's states past the point of no
        return (its target at full weight, the old color idle), else its prior states."""
        if not self.past_point_of_no_return:
            return [Wanted.of(state) for state in self.member(name).prior.values()]
        return [
            *(Wanted(ref, self.plan.full_weight, AdminState.READY) for ref in self.plan.promote),
            *(Wanted(ref, 0, AdminState.READY) for ref in self.plan.retire),
        ]

    # -- undo (before the point of no return) -------------------------------------------------
    def _revert(self, cause: Exception) -> None:
        interrupted = self.signals.received if isinstance(cause, Abort) else None
        what = f"switch to {self.plan.target} failed at '{self.step}': {cause}"
        for again in (*RETRY_PAUSES, None):
            # no user held on the new color, then every weight as it was before the switch
            unrestored = self._unstick_every() + revert_every(self.group, self.plan.members)
            if unrestored:
                break
            try:
                self._save_states()
            except StateMoved as exc:
                # the new process took the file as it was: restore on it, then save again
                if again is None:
                    unrestored = (f"the server-state file ({exc})",)
                    break
                self._warn(f"undoing: {exc}; restored again")
                time.sleep(again)
                continue
            except (RuntimeApiError, ServerStateFileError) as exc:
                unrestored = (f"the server-state file ({exc})",)
            break
        if unrestored:
            if self.journal is not None and self.journal.entry is not None:
                self.journal.step("revert-failed", unrestored=list(unrestored))
            raise RevertFailed(
                f"{what}; REVERT FAILED for {', '.join(unrestored)}: HAProxy may be "
                "half-switched (or a reload would bring back other states); run 'bluegreen "
                f"recover' (by hand: {manual_restore(self.plan.members)})",
                step=self.step,
                unrestored=unrestored,
                interrupted=interrupted,
            ) from cause
        if self.journal is not None and self.journal.entry is not None:
            self.journal.close("reverted", detail=f"at '{self.step}': {cause}")
        everywhere = " on every instance" if len(self.names) > 1 else ""
        # a canary step judged worse (exit 11) or not judged in time (6); else exit 8
        kind = cause.reverted_as if isinstance(cause, CanaryFailed) else SwitchError
        raise kind(
            f"{what}; previous server states restored{everywhere}",
            step=self.step,
            interrupted=interrupted,
        ) from cause
