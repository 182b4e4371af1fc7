"""The switch as a transaction: plan, then steps that are journaled and checked; undone on any
failure before its point of no return, completed after it.

The steps, in this order (no moment without a server taking new requests):

1. ``promote``: the target's servers get the full weight and ``ready``;
2. ``drain``: the old color's servers go to ``drain`` (no new requests, in-flight ones finish);
3. ``verify``: the routed URL is polled until ``verify_responses`` answers in a row come from
   the target. **This is the point of no return**: before it, a signal (Ctrl-C, SIGTERM,
   SIGHUP) reverts the switch; after it, a signal completes it, cutting the drain wait short;
4. ``wait-drained``: the old servers' ``scur`` is polled until 0 (bounded by the drain timeout);
5. ``idle``: the old servers rest at weight 0 and ``ready``;
6. ``confirm``: HAProxy's states are read back (the target takes traffic, the old color at
   weight 0, nothing left in ``drain``) and the routed URL answers from the target again;
7. ``save-state``: ``show servers state`` into HAProxy's server-state-file.

Why weight 0 rather than ``maint`` for the idle color: HAProxy keeps health-checking a weight-0
server, so the idle color's health stays visible (``show stat``), the next gate can require it
UP, and a rollback target is known healthy. ``maint`` would stop the checks.

Before the first change the intent (target, every server's prior weight and admin state, the
instance's identity) goes to the journal; each step appends its progress.

**Before the point of no return** any failure -- a Runtime API error (also one whose answer
was lost after HAProxy applied the command), a failed verification, a reload or restart of
HAProxy (another pid or start time: its server states are no longer ours), a step hook that
raises, a signal -- restores every server's exact prior state, continuing past individual
errors and judging by what HAProxy reads back, never by which command answered; the
server-state file is saved again. A revert that could not restore everything is its own
outcome (exit 10), and leaves the journal open for ``bluegreen recover``.

**Past the point of no return** (``verify`` journaled: the target answered through every
routed URL) the switch is completed, never undone: only HAProxy's own errors count there, and
each remaining step is tried again (a reload since is met by applying the switch's states to
the new process again); a step hook that raises, a signal, output nobody reads (a closed
stdout) or the routed URL failing at ``confirm`` (the color's doing since it was verified: the
bake's to judge) is reported and the switch goes on. When HAProxy's errors persist (it was killed,
it keeps refusing), the switch is *incomplete* (exit 10): the journal stays open and
``bluegreen recover`` completes it. Output never raises into the switch: the progress
callback is guarded.

**Several HAProxy instances** (``haproxy/instances.py``) switch as one: the plan reads every
instance (each must answer at admin level, know every server and show the same live color),
every step runs on every instance at once, the verification goes through every instance's
routed URL, and any failure on any instance before the point of no return reverts every
instance to its own exact prior states.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from pytest_bluegreen.errors import ExitCode, Refused
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.haproxy.instances import Haproxies, InstancesDisagree
from pytest_bluegreen.haproxy.runtime import (
    AdminState,
    RuntimeApi,
    RuntimeApiError,
    ServerRef,
    ServerState,
    parse_servers_state,
)
from pytest_bluegreen.process.signals import DeferredSignals, NoSignals
from pytest_bluegreen.record.durable import write_durably
from pytest_bluegreen.settings import SwitchingSettings, Topology

from .journal import Journal, JournalMember

__all__ = [
    "POINT_OF_NO_RETURN",
    "STEPS",
    "MemberPlan",
    "RevertFailed",
    "StateFileError",
    "StateMoved",
    "SwitchError",
    "SwitchIncomplete",
    "SwitchPlan",
    "SwitchResult",
    "VerifyError",
    "Wanted",
    "apply",
    "complete",
    "down_servers",
    "guarded",
    "identity",
    "live_color",
    "plan",
    "restore",
    "revert",
    "revert_every",
    "save_server_state",
    "verify",
    "verify_every",
]

POLL_INTERVAL = 0.02
STEPS = ("promote", "drain", "verify", "wait-drained", "idle", "confirm", "save-state")
POINT_OF_NO_RETURN = "verify"  # once journaled, the switch is completed, never undone
# past the point of no return, a step HAProxy failed is tried again after these pauses (s)
RETRY_PAUSES = (0.05, 0.15, 0.3)


class VerifyError(Exception):
    """The routed URL did not answer from the target color in time."""


class StateFileError(Exception):
    """HAProxy's server-state file could not be written (the folder, the disk)."""


class StateMoved(StateFileError):
    """While its server-state file was saved, HAProxy showed other states than wanted or was
    reloaded or restarted: the new process may run what the file held before (the save is
    done again after the states are applied again, or it counts as not saved)."""


class _Abort(Exception):
    """A reason to revert that is not an error of HAProxy's (a signal, a reload, a hook)."""


class _NotSwitched(Exception):
    """Past the point of no return: HAProxy reads back other states than the switch's."""


class SwitchError(Refused):
    """A switch step failed and every server's prior state was restored (exit 8)."""

    exit_code = ExitCode.SWITCH_REVERTED

    def __init__(self, message: str, *, step: str, interrupted: str | None = None) -> None:
        self.step = step
        self.interrupted = interrupted
        super().__init__(message)

    @property
    def reverted(self) -> bool:
        return True


class RevertFailed(SwitchError):
    """A switch step failed, and restoring the prior states failed too (exit 10): HAProxy may
    be half-switched; ``unrestored`` names the servers (or the server-state file); the journal
    stays open."""

    exit_code = ExitCode.REVERT_FAILED

    def __init__(
        self, message: str, *, step: str, unrestored: tuple[str, ...], interrupted: str | None
    ) -> None:
        self.unrestored = unrestored
        super().__init__(message, step=step, interrupted=interrupted)

    @property
    def reverted(self) -> bool:
        return False


class SwitchIncomplete(SwitchError):
    """Past its point of no return the switch could not complete a step: HAProxy's own errors
    persisted (killed, refusing). Nothing was undone -- the target was verified -- but HAProxy
    may be half-switched or its server-state file stale; the journal stays open and
    ``bluegreen recover`` completes the switch (exit 10)."""

    exit_code = ExitCode.REVERT_FAILED

    @property
    def reverted(self) -> bool:
        return False


@dataclass(frozen=True)
class MemberPlan:
    """One HAProxy instance's part of a switch: the process and its servers' prior states."""

    name: str
    prior: Mapping[ServerRef, ServerState]
    instance: InstanceIdentity


@dataclass(frozen=True)
class SwitchPlan:
    source: str | None
    target: str
    promote: tuple[ServerRef, ...]
    retire: tuple[ServerRef, ...]
    prior: Mapping[ServerRef, ServerState]  # the first instance's (all agree on the colors)
    full_weight: int
    instance: InstanceIdentity | None = None  # the HAProxy process the prior states are from
    members: tuple[MemberPlan, ...] = ()  # every instance switched (none: the one of ``api``)

    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def describe(self) -> list[str]:
        lines = [f"switch {self.source or '(no live color)'} -> {self.target}"]
        if len(self.members) > 1:
            lines.append(f"  on every instance at once: {', '.join(self.member_names())}")
        for ref in self.promote:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: weight {was.uweight} -> {self.full_weight}, "
                f"state {was.admin.value} -> ready{_EMPTY if was.empty else ''}"
            )
        for ref in self.retire:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: state {was.admin.value} -> drain, wait for 0 sessions, "
                f"then weight {was.uweight} -> 0, state ready (idle, health-checked)"
                f"{_EMPTY if was.empty else ''}"
            )
        return lines


_EMPTY = " (empty slot: for the replica that resolves into it)"


@dataclass
class SwitchResult:
    plan: SwitchPlan
    started: float
    promoted: float = 0.0
    first_target_response: float = 0.0
    drained: bool = False
    drain_seconds: float = 0.0
    version: str | None = None
    finished: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        """From the start of the switch to the first routed response from the target."""
        return (self.first_target_response - self.started) * 1000


@dataclass(frozen=True)
class Verification:
    first_response: float
    version: str | None
    responses: int


@dataclass(frozen=True)
class Wanted:
    """A server's weight and admin state, as a revert or a recovery restores them."""

    ref: ServerRef
    weight: int
    admin: AdminState

    @classmethod
    def of(cls, state: ServerState) -> Wanted:
        return cls(state.ref, state.uweight, state.admin)

    @property
    def takes_traffic(self) -> bool:
        return self.weight > 0 and self.admin is AdminState.READY

    def shows(self, state: ServerState) -> bool:
        return (state.uweight, state.admin) == (self.weight, self.admin)


def _group(api: RuntimeApi | Haproxies) -> Haproxies:
    return api if isinstance(api, Haproxies) else Haproxies.single(api)


def live_color(api: RuntimeApi | Haproxies, topology: Topology) -> str | None:
    """The color HAProxy sends traffic to now (None when neither or both). Several instances
    must agree: InstancesDisagree (a refusal) when they do not."""
    group = _group(api)
    states = group.states_by_instance(topology.all_servers)
    lives = {name: topology.live_color(s) for name, s in states.items()}
    if len(set(lives.values())) > 1:
        raise InstancesDisagree(lives)
    return next(iter(lives.values()))


def down_servers(api: RuntimeApi | Haproxies, topology: Topology, color: str) -> dict[str, str]:
    """The color's servers that health checks do not report UP, with their status; with
    several instances, on any of them (named)."""
    group = _group(api)
    wanted = set(topology.servers(color))
    down: dict[str, str] = {}
    for name, rows in group.stat_by_instance().items():
        found = {row.ref: row for row in rows if row.ref in wanted}
        for ref in sorted(wanted):
            row = found.get(ref)
            if row is None:
                down[group.label(name, str(ref))] = "missing"
            elif not row.is_up and not row.empty:  # an empty slot waits for a replica
                status = f"{row.status} ({row.check_status or 'no check'})"
                down[group.label(name, str(ref))] = status
        if found and all(row.empty for row in found.values()):
            down[group.label(name, f"{color}'s servers")] = "every slot empty: no replica resolved"
    return down


def identity(api: RuntimeApi) -> InstanceIdentity:
    return InstanceIdentity.from_info(str(api.address), api.show_info())


def _read_members(
    group: Haproxies, topology: Topology, names: Sequence[str]
) -> tuple[MemberPlan, ...]:
    def read(name: str, client: RuntimeApi) -> MemberPlan:
        client.require_admin()
        return MemberPlan(name, client.server_states(topology.all_servers), identity(client))

    return tuple(group.each(read, names=names).values())


def _plan_of(
    members: tuple[MemberPlan, ...],
    topology: Topology,
    source: str | None,
    target: str,
    full_weight: int,
) -> SwitchPlan:
    # a server held in maint stays there; an empty slot is retired too (weight 0), so that a
    # replica resolving into it later takes no traffic on the idle color
    retire = tuple(
        ref
        for name, cfg in topology.color.items()
        if name != target
        for ref in cfg.servers
        if any(m.prior[ref].admin is not AdminState.MAINT or m.prior[ref].empty for m in members)
    )
    first = members[0]
    return SwitchPlan(
        source=source,
        target=target,
        promote=topology.servers(target),
        retire=retire,
        prior=first.prior,
        full_weight=full_weight,
        instance=first.instance,
        members=members,
    )


def plan(
    api: RuntimeApi | Haproxies, topology: Topology, target: str, full_weight: int
) -> SwitchPlan:
    """Read every instance and say what a switch to ``target`` would do. Changes nothing.

    Raises RuntimeApiError (unreachable, not admin, unknown server: named after the instance)
    or InstancesDisagree before any change.
    """
    group = _group(api)
    members = _read_members(group, topology, group.present)
    lives = {m.name: topology.live_color(m.prior) for m in members}
    if len(set(lives.values())) > 1:
        raise InstancesDisagree(lives)
    return _plan_of(members, topology, lives[members[0].name], target, full_weight)


def verify(
    switching: SwitchingSettings,
    topology: Topology,
    target: str,
    deadline: float,
    signals: DeferredSignals | None = None,
    *,
    url: str | None = None,
) -> Verification:
    """Poll the routed URL (``url``, default ``verify_url``) until ``verify_responses`` answers
    in a row come from ``target``. A signal noted in ``signals`` stops the wait (before the
    point of no return)."""
    url = url or switching.verify_url
    streak = 0
    first = 0.0
    version: str | None = None
    last = "no answer yet"
    with requests.Session() as session:
        while True:
            if signals is not None and signals.received:
                raise _Abort(f"interrupted by {signals.received}")
            try:
                response = session.get(
                    url,
                    timeout=max(min(deadline - time.monotonic(), 2.0), 0.05),
                    headers={"Connection": "close"},
                )
                answer = topology.answered_by(response)
                if response.ok and answer.color == target:
                    if streak == 0:
                        first = time.monotonic()
                    streak += 1
                    version = answer.version or version
                    if streak >= switching.verify_responses:
                        return Verification(first, version, streak)
                else:
                    streak = 0
                    last = f"HTTP {response.status_code} from color {answer.color or 'unknown'}"
            except requests.RequestException as exc:
                streak = 0
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise VerifyError(
                    f"{url} did not answer from {target} {switching.verify_responses} time(s) "
                    f"in a row within {switching.verify_timeout:g}s (last: {last})"
                )
            time.sleep(POLL_INTERVAL)


Verifier = Callable[[str, float], Verification]  # (target, deadline) -> first answers
StepHook = Callable[[str, SwitchPlan], None]


def guarded(progress: Callable[[str], None]) -> Callable[[str], None]:
    """Output never raises into a switch: a line nobody can take (a closed stdout, a terminal
    gone) is dropped, never read as a failure of HAProxy's."""

    def say(line: str) -> None:
        with contextlib.suppress(Exception):  # output is best effort; HAProxy's state is not
            progress(line)

    return say


def save_server_state(
    api: RuntimeApi,
    path: Path,
    refs: Iterable[ServerRef],
    *,
    wanted: Iterable[Wanted] = (),
) -> None:
    """``show servers state`` into HAProxy's server-state file ``path``, durably, and only a
    whole answer: it must parse and name every server in ``refs`` (an answer lost or cut short
    would write a file from which a reload takes the configuration's weights instead), show
    every server of ``wanted`` as wanted, and come from one HAProxy process from before the
    answer to after the write (``show info``'s Pid and Start_time_sec): a reload during the
    save starts a process from the file as it *was*, so a save it overlapped saves nothing.

    Raises StateMoved (HAProxy showed other states, or another process took over), another
    StateFileError (the file) or RuntimeApiError (HAProxy's answer); except for a StateMoved
    after the write, the file is the one before."""
    before = identity(api)
    text = api.servers_state_text()
    found = {state.ref: state for state in parse_servers_state(text)}
    missing = [str(ref) for ref in refs if ref not in found]
    if missing:
        raise RuntimeApiError(
            "show servers state",
            "",
            f"HAProxy at {api.address} answered 'show servers state' without "
            f"{', '.join(missing)} (cut short?): {path} was not written",
        )
    differ = [
        f"{want.ref} weight {found[want.ref].uweight} {found[want.ref].admin.value}"
        for want in wanted
        if want.ref in found and not want.shows(found[want.ref])
    ]
    if differ:
        raise StateMoved(
            f"HAProxy at {api.address} shows other states than it should while its "
            f"server-state file is saved ({', '.join(differ)}; reloaded from an older file?): "
            f"{path} was not written"
        )
    try:
        write_durably(path, text)
    except OSError as exc:
        raise StateFileError(f"HAProxy's server-state file {path} was not saved: {exc}") from exc
    after = identity(api)
    if not after.same_process(before):
        raise StateMoved(
            f"HAProxy at {api.address} was reloaded or restarted while its server-state file "
            f"{path} was saved ({before} -> {after}): the new process started from the file "
            "as it was, and may serve other states than the ones saved"
        )


@dataclass
class _Transaction:
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
    processes: dict[str, InstanceIdentity] = field(default_factory=dict)
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
        except (RuntimeApiError, VerifyError, OSError, _Abort) as exc:
            self._revert(exc)
        except BaseException as exc:  # a bug of ours, a KeyboardInterrupt: before it, undo
            self._revert(_Abort(f"{type(exc).__name__}: {exc}"))
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
            raise self._incomplete(_Abort(f"{type(exc).__name__}: {exc}")) from exc

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
            except (RuntimeApiError, StateFileError, _NotSwitched) as exc:
                if pause is None:
                    raise self._incomplete(exc) from exc
                self._warn(f"past the point of no return, '{step}' failed ({exc}); tried again")
                self.repair = True  # a command HAProxy applied may have lost its answer
                time.sleep(pause)
        facts = {"drained": self.result.drained} if step == "wait-drained" else {}
        try:
            self._done(**facts)
        except OSError as exc:  # the switch stands; the journal says less than it did
            self._warn(f"warning: the journal did not take step '{step}': {exc}")

    def _reapply(self, name: str, api: RuntimeApi) -> None:
        """The states this point of the switch should show, whatever HAProxy shows now (a
        reload took its server-state file, a command's answer was lost): idempotent."""
        for ref in self.plan.promote:
            api.set_weight(ref, self.plan.full_weight)
            api.set_state(ref, AdminState.READY)
        for ref in self.plan.retire:
            if self.idled:
                api.set_weight(ref, 0)
                api.set_state(ref, AdminState.READY)
            else:
                api.set_state(ref, AdminState.DRAIN)

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

    # -- the changes, on one instance --------------------------------------------------------
    def _promote(self, name: str, api: RuntimeApi) -> None:
        prior = self.member(name).prior
        for ref in self.plan.promote:
            api.set_weight(ref, self.plan.full_weight)
            if prior[ref].admin is not AdminState.READY:
                api.set_state(ref, AdminState.READY)

    def _drain(self, name: str, api: RuntimeApi) -> None:
        for ref in self.plan.retire:
            api.set_state(ref, AdminState.DRAIN)

    def _idle(self, name: str, api: RuntimeApi) -> None:
        for ref in self.plan.retire:
            api.set_weight(ref, 0)
            api.set_state(ref, AdminState.READY)

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
                raise _Abort(what) from exc
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
            raise _Abort(f"interrupted by {self.signals.received}")

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
                raise _Abort(
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
                result.drained = True
                break
            open_sessions = sum(row.scur for _, row in busy)
            if self.signals.received:  # past the point of no return: finish now
                result.notes.append(
                    f"drain wait cut short by {self.signals.received}: "
                    f"{open_sessions} old session(s) finish on their own"
                )
                break
            if now >= deadline:
                result.notes.append(
                    f"old sessions still open after {self.switching.drain_timeout:g}s drain "
                    "timeout; they finish on their own (HAProxy does not cut them)"
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
                raise _NotSwitched(f"{where}'s states are not the switch's: {', '.join(wrong)}")
            if self.topology.live_color(states) != self.plan.target:
                raise _NotSwitched(
                    f"{where} does not show {self.plan.target} as the one live color"
                )
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
        interrupted = self.signals.received if isinstance(cause, _Abort) else None
        what = f"switch to {self.plan.target} failed at '{self.step}': {cause}"
        for again in (*RETRY_PAUSES, None):
            unrestored = revert_every(self.group, self.plan.members)
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
            except (RuntimeApiError, StateFileError) as exc:
                unrestored = (f"the server-state file ({exc})",)
            break
        if unrestored:
            if self.journal is not None and self.journal.entry is not None:
                self.journal.step("revert-failed", unrestored=list(unrestored))
            raise RevertFailed(
                f"{what}; REVERT FAILED for {', '.join(unrestored)}: HAProxy may be "
                "half-switched (or a reload would bring back other states); run 'bluegreen "
                f"recover' (by hand: {_manual_restore(self.plan.members)})",
                step=self.step,
                unrestored=unrestored,
                interrupted=interrupted,
            ) from cause
        if self.journal is not None and self.journal.entry is not None:
            self.journal.close("reverted", detail=f"at '{self.step}': {cause}")
        everywhere = " on every instance" if len(self.names) > 1 else ""
        raise SwitchError(
            f"{what}; previous server states restored{everywhere}",
            step=self.step,
            interrupted=interrupted,
        ) from cause


def _transaction(
    group: Haproxies,
    switch_plan: SwitchPlan,
    switching: SwitchingSettings,
    topology: Topology,
    *,
    journal: Journal | None,
    signals: DeferredSignals | None,
    server_state_file: Path | None,
    verifier: Verifier | None,
    on_step: StepHook | None,
    progress: Callable[[str], None],
) -> _Transaction:
    files = {i.name: i.state_file for i in group.instances if i.state_file is not None}
    if server_state_file is not None:
        files = {group.names[0]: server_state_file}
    noted = signals if signals is not None else NoSignals()
    transaction = _Transaction(
        group=group,
        plan=switch_plan,
        switching=switching,
        topology=topology,
        journal=journal,
        signals=noted,
        server_state_files=files,
        verifier=verifier or (lambda target, deadline: Verification(0.0, None, 0)),
        on_step=on_step or (lambda step, plan: None),
        progress=guarded(progress),
    )
    if verifier is None:
        urls = _verify_urls(group, switching, switch_plan.member_names())

        def default_verifier(target: str, deadline: float) -> Verification:
            # a signal stops the verification only before the point of no return
            interruptible = None if transaction.past_point_of_no_return else noted
            return verify_every(switching, topology, target, deadline, interruptible, urls=urls)

        transaction.verifier = default_verifier
    return transaction


def apply(
    api: RuntimeApi | Haproxies,
    switch_plan: SwitchPlan,
    switching: SwitchingSettings,
    topology: Topology,
    *,
    journal: Journal | None = None,
    signals: DeferredSignals | None = None,
    server_state_file: Path | None = None,
    verifier: Verifier | None = None,
    on_step: StepHook | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> SwitchResult:
    """Carry out the plan as a transaction on every instance (see the module's docstring).

    Raises SwitchError (every prior state restored, exit 8), RevertFailed or SwitchIncomplete
    (exit 10). ``signals``: the caller's DeferredSignals, looked at between steps; ``on_step``
    is called before each step (the ``pytest_bluegreen_switch_step`` hook); ``progress`` gets a
    line as each step begins (guarded: it cannot fail the switch). ``server_state_file``: for
    a single RuntimeApi; a group's instances carry their own.
    """
    group = _group(api)
    if not switch_plan.members:  # a plan made by hand (tests): the one instance, as planned
        only = group.names[0]
        instance = switch_plan.instance or identity(group.clients[only])
        member = MemberPlan(only, switch_plan.prior, instance)
        switch_plan = replace(switch_plan, members=(member,), instance=instance)
    return _transaction(
        group,
        switch_plan,
        switching,
        topology,
        journal=journal,
        signals=signals,
        server_state_file=server_state_file,
        verifier=verifier,
        on_step=on_step,
        progress=progress,
    ).run()


def complete(
    api: RuntimeApi | Haproxies,
    topology: Topology,
    switching: SwitchingSettings,
    *,
    source: str | None,
    target: str,
    journal: Journal | None = None,
    signals: DeferredSignals | None = None,
    server_state_file: Path | None = None,
    verifier: Verifier | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> SwitchResult:
    """Complete a switch to ``target`` that was cut off past its point of no return (``bluegreen
    recover``): its remaining steps, each idempotent and run on HAProxy as it is now (it may
    have been restarted from an older server-state file): the target promoted and the old
    color drained again, the drain waited for, the old color idle, every state read back and
    every routed URL answering from the target, the server-state files saved. ``journal``
    (resumed) gets the steps; the caller closes it.

    Raises SwitchIncomplete when HAProxy's errors persist (nothing is undone), RuntimeApiError
    when an instance cannot be read at all.
    """
    group = _group(api)
    members = _read_members(group, topology, group.present)
    switch_plan = _plan_of(members, topology, source, target, switching.full_weight)
    return _transaction(
        group,
        switch_plan,
        switching,
        topology,
        journal=journal,
        signals=signals,
        server_state_file=server_state_file,
        verifier=verifier,
        on_step=None,
        progress=progress,
    ).complete()


def _verify_urls(group: Haproxies, switching: SwitchingSettings, names: Sequence[str]) -> list[str]:
    """Each switched instance's routed verification URL (the settings' for one without)."""
    urls = []
    for name in names:
        routed = group.instance(name).routed_api_url
        urls.append(routed + switching.verify_path if routed else switching.verify_url)
    return urls


def verify_every(
    switching: SwitchingSettings,
    topology: Topology,
    target: str,
    deadline: float,
    signals: DeferredSignals | None,
    *,
    urls: Sequence[str],
) -> Verification:
    """``verify`` through every routed URL at once; all must answer from the target. The
    first response is when the last of them first did (traffic is moved when all have)."""
    if len(urls) == 1:
        return verify(switching, topology, target, deadline, signals, url=urls[0])
    with concurrent.futures.ThreadPoolExecutor(len(urls), "bluegreen-verify") as pool:
        futures = [
            pool.submit(verify, switching, topology, target, deadline, signals, url=url)
            for url in urls
        ]
        done = [future.result() for future in futures]  # the first error, in order
    return Verification(
        first_response=max(v.first_response for v in done),
        version=next((v.version for v in done if v.version), None),
        responses=min(v.responses for v in done),
    )


def revert_every(group: Haproxies, members: Sequence[MemberPlan]) -> tuple[str, ...]:
    """Every instance back to its own prior states, at once; what could not be restored."""

    def one(name: str, api: RuntimeApi) -> tuple[str, ...]:
        prior = next(m.prior for m in members if m.name == name)
        return tuple(group.label(name, s) for s in revert(api, prior))

    failed = group.each(one, names=[m.name for m in members])
    return tuple(item for name in failed for item in failed[name])


def revert(api: RuntimeApi, prior: Mapping[ServerRef, ServerState]) -> tuple[str, ...]:
    """Restore every server's weight and admin state (see :func:`restore`)."""
    return restore(api, [Wanted.of(state) for state in prior.values()])


def restore(api: RuntimeApi, wanted: Sequence[Wanted], *, tries: int = 2) -> tuple[str, ...]:
    """Give every server its wanted weight and admin state, the servers that take traffic
    first so none is left empty; returns the servers HAProxy does not show so (with why).

    A command's error does not say that nothing changed (HAProxy may have applied it and
    the answer was lost), nor does it stop the other commands: every command is sent, then
    HAProxy's states are read back and decide; what differs is sent again (``tries``)."""
    left = sorted(wanted, key=lambda w: not w.takes_traffic)
    errors: dict[ServerRef, str] = {}
    for _ in range(tries):
        errors = {}
        for want in left:
            try:
                api.set_weight(want.ref, want.weight)
            except RuntimeApiError as exc:
                errors.setdefault(want.ref, exc.answer or type(exc).__name__)
            try:
                api.set_state(want.ref, want.admin)
            except RuntimeApiError as exc:
                errors.setdefault(want.ref, exc.answer or type(exc).__name__)
        try:
            now = api.server_states(w.ref for w in left)
        except RuntimeApiError as exc:
            errors = {w.ref: errors.get(w.ref) or f"not read back: {exc}" for w in left}
            continue
        left = [w for w in left if not w.shows(now[w.ref])]
        if not left:
            return ()
        for want in left:
            state = now[want.ref]
            errors.setdefault(want.ref, f"reads back weight {state.uweight} {state.admin.value}")
    return tuple(f"{w.ref} ({errors.get(w.ref, 'not restored')})" for w in left)


def _manual_restore(members: Sequence[MemberPlan]) -> str:
    several = len(members) > 1
    return "; ".join(
        (f"on {m.name}: " if several else "")
        + "; ".join(
            f"set server {s.ref} weight {s.uweight}; set server {s.ref} state {s.admin.value}"
            for s in m.prior.values()
        )
        for m in members
    )
