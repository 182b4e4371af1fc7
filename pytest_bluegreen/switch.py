"""The switch as a transaction: plan, then steps that are journaled, checked and undone on any
failure.

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
instance's identity) goes to the journal; each step appends its progress. Before every step the
instance's identity is checked: a reload or restart of HAProxy (another pid or start time)
aborts the switch. Any failure -- a Runtime API error, a failed verification, a reload, a step
hook that raises, a signal before the point of no return -- restores every server's exact
prior state, continuing past individual errors; a revert that could not restore everything is
its own outcome (exit 10), and leaves the journal open for ``bluegreen recover``.

**Several HAProxy instances** (``instances.py``) switch as one: the plan reads every instance
(each must answer at admin level, know every server and show the same live color), every step
runs on every instance at once, the verification goes through every instance's routed URL,
and any failure on any instance reverts every instance to its own exact prior states.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from .errors import ExitCode, Refused
from .haproxy import AdminState, RuntimeApi, RuntimeApiError, ServerRef, ServerState
from .instances import Haproxies, InstancesDisagree
from .journal import InstanceIdentity, Journal, JournalMember
from .settings import SwitchingSettings, Topology
from .signals import DeferredSignals, NoSignals

__all__ = [
    "POINT_OF_NO_RETURN",
    "STEPS",
    "MemberPlan",
    "RevertFailed",
    "SwitchError",
    "SwitchPlan",
    "SwitchResult",
    "VerifyError",
    "apply",
    "down_servers",
    "identity",
    "live_color",
    "plan",
    "revert",
    "revert_every",
    "verify",
    "verify_every",
]

POLL_INTERVAL = 0.02
STEPS = ("promote", "drain", "verify", "wait-drained", "idle", "confirm", "save-state")
POINT_OF_NO_RETURN = "verify"  # once verified, a signal completes the switch


class VerifyError(Exception):
    """The routed URL did not answer from the target color in time."""


class _Abort(Exception):
    """A reason to revert that is not an error of HAProxy's (a signal, a reload, a hook)."""


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
    be half-switched; ``unrestored`` names the servers; the journal stays open."""

    exit_code = ExitCode.REVERT_FAILED

    def __init__(
        self, message: str, *, step: str, unrestored: tuple[str, ...], interrupted: str | None
    ) -> None:
        self.unrestored = unrestored
        super().__init__(message, step=step, interrupted=interrupted)

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


def plan(
    api: RuntimeApi | Haproxies, topology: Topology, target: str, full_weight: int
) -> SwitchPlan:
    """Read every instance and say what a switch to ``target`` would do. Changes nothing.

    Raises RuntimeApiError (unreachable, not admin, unknown server: named after the instance)
    or InstancesDisagree before any change.
    """
    group = _group(api)

    def read(name: str, client: RuntimeApi) -> MemberPlan:
        client.require_admin()
        return MemberPlan(name, client.server_states(topology.all_servers), identity(client))

    members = tuple(group.each(read, names=group.present).values())
    lives = {m.name: topology.live_color(m.prior) for m in members}
    if len(set(lives.values())) > 1:
        raise InstancesDisagree(lives)
    first = members[0]
    # a server held in maint stays there; an empty slot is retired too (weight 0), so that a
    # replica resolving into it later takes no traffic on the idle color
    retire = tuple(
        ref
        for name, cfg in topology.color.items()
        if name != target
        for ref in cfg.servers
        if any(m.prior[ref].admin is not AdminState.MAINT or m.prior[ref].empty for m in members)
    )
    return SwitchPlan(
        source=lives[first.name],
        target=target,
        promote=topology.servers(target),
        retire=retire,
        prior=first.prior,
        full_weight=full_weight,
        instance=first.instance,
        members=members,
    )


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

    @property
    def names(self) -> tuple[str, ...]:
        return self.plan.member_names()

    def member(self, name: str) -> MemberPlan:
        return next(m for m in self.plan.members if m.name == name)

    def run(self) -> SwitchResult:
        result = SwitchResult(plan=self.plan, started=time.monotonic())
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
            self.past_point_of_no_return = True
            self._done(version=result.version)
            self._enter("wait-drained")
            self._wait_drained(result)
            self._done(drained=result.drained)
            self._enter("idle")
            self._on_every(self._idle)
            self._done()
            self._enter("confirm")
            self._confirm()
            self._done()
            files = {n: f for n, f in self.server_state_files.items() if n in self.names}
            if files:
                self._enter("save-state")
                self.group.each(
                    lambda name, api: api.save_server_state(files[name]), names=list(files)
                )
                self._done()
        except (RuntimeApiError, VerifyError, OSError, _Abort) as exc:
            self._revert(exc)
        except Exception as exc:  # a step hook that raises: a failure at this step
            self._revert(_Abort(f"the step hook raised {type(exc).__name__}: {exc}"))
        if self.signals.received:
            result.notes.append(
                f"{self.signals.received} came after the point of no return ('verify'): the "
                "switch was completed"
            )
        if self.journal is not None:
            self.journal.close("switched")
        result.finished = time.monotonic()
        return result

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
        """Before a step: a signal before the point of no return aborts; the step hook runs;
        every HAProxy must still be the process the switch began with."""
        self.step = step
        self._check_signal()
        self.on_step(step, self.plan)
        self._check_signal()
        self._check_instances()

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
            began = self.member(name).instance
            if not found.same_process(began):
                raise _Abort(
                    f"{self.group.label(name, 'HAProxy')} at {began.address} was reloaded or "
                    f"restarted during the switch ({began} -> {found}): its server states are "
                    "no longer ours"
                )

    def _wait_drained(self, result: SwitchResult) -> None:
        start = time.monotonic()
        deadline = start + self.switching.drain_timeout
        wanted = set(self.plan.retire)
        next_report = start + 1.0
        while True:
            rows = self.group.stat_by_instance(names=self.names)
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
        result.drain_seconds = time.monotonic() - start

    def _confirm(self) -> None:
        """Every instance's states are what the switch set, and every routed URL answers from
        the target again."""
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
                raise _Abort(f"{where}'s states are not the switch's: {', '.join(wrong)}")
            if self.topology.live_color(states) != self.plan.target:
                raise _Abort(f"{where} does not show {self.plan.target} as the one live color")
        self.verifier(self.plan.target, time.monotonic() + self.switching.verify_timeout)

    # -- undo --------------------------------------------------------------------------------
    def _revert(self, cause: Exception) -> None:
        interrupted = self.signals.received if isinstance(cause, _Abort) else None
        unrestored = revert_every(self.group, self.plan.members)
        what = f"switch to {self.plan.target} failed at '{self.step}': {cause}"
        if unrestored:
            if self.journal is not None and self.journal.entry is not None:
                self.journal.step("revert-failed", unrestored=list(unrestored))
            raise RevertFailed(
                f"{what}; REVERT FAILED for {', '.join(unrestored)}: HAProxy may be "
                "half-switched; run 'bluegreen recover' (by hand: "
                f"{_manual_restore(self.plan.members)})",
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

    Raises SwitchError (every prior state restored, exit 8) or RevertFailed (exit 10).
    ``signals``: the caller's DeferredSignals, looked at between steps; ``on_step`` is called
    before each step (the ``pytest_bluegreen_switch_step`` hook). ``server_state_file``: for
    a single RuntimeApi; a group's instances carry their own.
    """
    group = _group(api)
    if not switch_plan.members:  # a plan made by hand (tests): the one instance, as planned
        only = group.names[0]
        instance = switch_plan.instance or identity(group.clients[only])
        member = MemberPlan(only, switch_plan.prior, instance)
        switch_plan = replace(switch_plan, members=(member,), instance=instance)
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
        progress=progress,
    )
    if verifier is None:
        urls = _verify_urls(group, switching, switch_plan.member_names())

        def default_verifier(target: str, deadline: float) -> Verification:
            # a signal stops the verification only before the point of no return
            interruptible = None if transaction.past_point_of_no_return else noted
            return verify_every(switching, topology, target, deadline, interruptible, urls=urls)

        transaction.verifier = default_verifier
    return transaction.run()


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
        try:
            return tuple(group.label(name, s) for s in revert(api, prior))
        except RuntimeApiError as exc:  # not even reachable
            return (group.label(name, f"every server ({exc})"),)

    failed = group.each(one, names=[m.name for m in members])
    return tuple(item for name in failed for item in failed[name])


def revert(api: RuntimeApi, prior: Mapping[ServerRef, ServerState]) -> tuple[str, ...]:
    """Restore every server's weight and admin state, the servers that took traffic first so
    none is left empty; continue past errors. Returns the servers that could not be restored."""
    failed: list[str] = []
    for state in sorted(prior.values(), key=lambda s: not s.takes_traffic):
        try:
            api.set_weight(state.ref, state.uweight)
            api.set_state(state.ref, state.admin)
        except RuntimeApiError as exc:
            failed.append(f"{state.ref} ({exc.answer or type(exc).__name__})")
    return tuple(failed)


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
