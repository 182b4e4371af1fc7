"""The switch as a transaction: a plan, then journaled, checked steps on every HAProxy (promote,
drain, verify, wait-drained, idle, confirm, save-state), undone on any failure before its point
of no return (``verify``), completed after it. The steps, the journal, reverts and completion
are described in docs/gate.md.

The parts are modules of their own, their names handed on from here: :mod:`.outcome` (the plan,
the result, the errors), :mod:`.reading` (the live color, the plan read from HAProxy),
:mod:`.verification` (the ``verify`` step), :mod:`.steps` (the transaction itself),
:mod:`.restoring` (a revert) and :mod:`.serverstate` (the server-state file saved whole).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.process.signals import DeferredSignals, NoSignals
from pytest_bluegreen.settings import SwitchingSettings, Topology

from .canary import CanaryJudge, CanaryStep
from .journal import Journal
from .outcome import (
    MemberPlan,
    RevertFailed,
    SwitchError,
    SwitchIncomplete,
    SwitchPlan,
    SwitchResult,
    Verification,
    VerifyError,
    Wanted,
)
from .reading import down_servers, identity, live_color, plan, plan_of, read_members
from .restoring import restore, revert, revert_every
from .serverstate import ServerStateFileError, StateMoved, save_server_state
from .steps import POINT_OF_NO_RETURN, STEPS, StepHook, Transaction, Verifier, guarded
from .verification import verify, verify_every, verify_urls

__all__ = [
    "POINT_OF_NO_RETURN",
    "STEPS",
    "Canary",
    "MemberPlan",
    "RevertFailed",
    "ServerStateFileError",
    "StateMoved",
    "StepHook",
    "SwitchError",
    "SwitchIncomplete",
    "SwitchPlan",
    "SwitchResult",
    "Verification",
    "Verifier",
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

if not TYPE_CHECKING:  # its old name, for one release (the history's is record.history's)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"StateFileError": "ServerStateFileError"})


@dataclass(frozen=True)
class Canary:
    """A canary to run before the full switch: its steps, their judge, sticky users or not."""

    steps: tuple[CanaryStep, ...]
    judge: CanaryJudge
    sticky: bool = True


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
    canary: Canary | None = None,
) -> Transaction:
    files = {i.name: i.state_file for i in group.instances if i.state_file is not None}
    if server_state_file is not None:
        files = {group.names[0]: server_state_file}
    noted = signals if signals is not None else NoSignals()
    transaction = Transaction(
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
    if canary is not None:
        transaction.canary, transaction.judge = canary.steps, canary.judge
        transaction.sticky = canary.sticky
    if verifier is None:
        urls = verify_urls(group, switching, switch_plan.member_names())

        def default_verifier(target: str, deadline: float) -> Verification:
            # a signal stops the verification only before the point of no return
            interruptible = None if transaction.past_point_of_no_return else noted
            return verify_every(
                switching, topology, target, deadline, interruptible, urls=urls, group=group
            )

        transaction.verifier = default_verifier
    return transaction


def apply(
    group: Haproxies,
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
    canary: Canary | None = None,
) -> SwitchResult:
    """Carry out the plan as a transaction on every instance (see the module's docstring).

    Raises SwitchError (every prior state restored, exit 8), RevertFailed or SwitchIncomplete
    (exit 10). ``signals``: the caller's DeferredSignals, looked at between steps; ``on_step``
    is called before each step (the ``pytest_bluegreen_switch_step`` hook); ``progress`` gets a
    line as each step begins (guarded: it cannot fail the switch). ``server_state_file``: the
    first instance's, in place of the one it carries (a group of one around a bare client).
    ``canary``: steps before 'promote', each judged (switch/canary.py); a failed one reverts.
    """
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
        canary=canary,
    ).run()


def complete(
    group: Haproxies,
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
    members = read_members(group, topology, group.present)
    switch_plan = plan_of(members, topology, source, target, switching.full_weight)
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
