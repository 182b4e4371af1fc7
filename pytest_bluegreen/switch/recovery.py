"""Bringing HAProxy back to a consistent state after a switch was cut off (``bluegreen recover``),
and telling an inconsistent state when it is seen (``bluegreen status``).

Consistent means: exactly one color takes traffic on all its servers, the other on none, and
no server of either color is left in ``drain`` or ``maint``; and HAProxy's server-state file
holds what HAProxy shows, so that a reload keeps it (:mod:`.consistency`, whose names are
handed on from here).

An unfinished journal says how far the switch went. Cut off before its point of no return
(``verify`` not journaled), ``recover`` restores every server's prior state; past it, the
target was verified, so ``recover`` completes the switch (its remaining steps, idempotent, as
a signal there does). ``--to COLOR`` overrides either: that color is made live. Every path
ends by saving each instance's server-state file (a failure to save is exit 10 and leaves the
journal open), records ``recovered`` in the history saying which it did and why, and closes
the journal. This module decides which path; :mod:`.recoveryactions` carries it out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

from pytest_bluegreen.errors import ExitCode, OutOfOrder, Refused
from pytest_bluegreen.haproxy.answers import ServerRef, ServerState
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.lock import HaproxyLock
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.record import history
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import Settings, Topology

from . import transaction as switch
from .consistency import (
    group_problems,
    held_sticky,
    inconsistencies,
    save_state_files,
    stale_state_files,
)
from .journal import (
    JournalEntry,
    JournalError,
    JournalMember,
    PriorState,
    read_journal,
)
from .leftout import reconcile_recorded
from .recoveryactions import (
    RecoverReport,
    apply_desired,
    complete_unfinished,
    dry_run_report,
    save_lines,
)

__all__ = [
    "RecoverReport",
    "group_problems",
    "inconsistencies",
    "past_point_of_no_return",
    "recover",
    "save_state_files",
    "stale_state_files",
]


def past_point_of_no_return(entry: JournalEntry) -> bool:
    """The journaled switch had verified its target (``verify`` journaled): completed, not
    undone, unless ``--to`` says otherwise."""
    return any(step.get("step") == switch.POINT_OF_NO_RETURN for step in entry.steps)


def _live_states(settings: Settings, color: str) -> list[PriorState]:
    topology, weight = settings.topology, settings.switching.full_weight
    return [
        PriorState(str(ref), weight if name == color else 0, "ready")
        for name in topology.colors
        for ref in topology.servers(name)
    ]


def recover(
    settings: Settings,
    *,
    to: str | None = None,
    secrets: Secrets | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> RecoverReport:
    """Bring every instance to a consistent state, under the lock, signals deferred: complete
    an unfinished switch that passed its point of no return, restore the prior states of one
    that had not (or make ``to`` live on every instance, whatever the journal says); bring
    recorded left-out instances in line; save every instance's server-state file. Recorded
    (the history, the webhooks) with ``secrets`` kept out. ``dry_run``: say what would be
    done; no lock, nothing changed.

    Raises Refused when there is nothing that says what to restore, LockHeld, RuntimeApiError.
    """
    group = settings.haproxies()
    topology = settings.topology
    secrets = secrets or Secrets()
    lock = HaproxyLock(settings.state.lock_dir, group)
    with nullcontext() if dry_run else lock.hold(), DeferredSignals() as signals:
        group.leave_out_missing()  # the allowed-missing ones that do not answer take no part
        if not dry_run:
            lock.verify()  # every key of these HAProxies held, read now that they answer
        unfinished, torn = _unfinished(settings, to)
        before = group.states_by_instance(topology.all_servers)
        problems = group_problems(before, group, topology)
        recorded = history.load_reconcile(settings.state.state_file)
        if unfinished is None and to is None and recorded is not None:
            if dry_run:
                return dry_run_report(
                    f"would bring instance(s) {', '.join(recorded.instances)} in line with "
                    f"the others ({recorded.color} live) when they answer",
                    [],
                )
            return _reconcile(settings, group, secrets)
        if unfinished is None and not torn:
            consistent = _without_journal(group, topology, before, problems, to, dry_run=dry_run)
            if consistent is not None:
                return consistent
        if to is not None:
            desired = dict.fromkeys(group.present, _live_states(settings, to))
        else:
            unfinished = _followed(unfinished)
            members = _journal_members(unfinished, group)
            if past_point_of_no_return(unfinished):
                return complete_unfinished(
                    settings,
                    group,
                    unfinished,
                    secrets=secrets,
                    signals=signals,
                    progress=progress,
                    dry_run=dry_run,
                )
            desired = {m.name: list(m.prior) for m in members if m.name in group.present}
        if dry_run:
            what = f"make {to} live" if to else "restore the states before the unfinished switch"
            return dry_run_report(
                f"would {what}:", [*_describe(desired, group), *save_lines(group, list(desired))]
            )
        return apply_desired(
            settings,
            group,
            desired,
            unfinished=unfinished,
            problems=problems or (["the journal holds no whole record"] if torn else []),
            to=to,
            secrets=secrets,
            restart_journal=torn,
        )


def _without_journal(
    group: Haproxies,
    topology: Topology,
    before: Mapping[str, Mapping[ServerRef, ServerState]],
    problems: Sequence[str],
    to: str | None,
    *,
    dry_run: bool,
) -> RecoverReport | None:
    """No switch is unfinished: a consistent HAProxy's report (nothing to recover), or None
    when ``to`` says what to make of an inconsistent one. Raises Refused for ``--to`` another
    color of a consistent HAProxy (that is a switch), and for an inconsistent one without it."""
    lives = {topology.live_color(states) for states in before.values()}
    live = lives.pop() if len(lives) == 1 else None
    if not problems and to not in (None, live):
        raise Refused(
            f"HAProxy is consistent ({live} is live) and no switch is unfinished: "
            f"move traffic with 'bluegreen switch-to {to}'"
        )
    if not problems:
        return _consistent(group, topology, before, live, dry_run=dry_run)
    if to is None:
        raise Refused(
            f"HAProxy is inconsistent ({'; '.join(problems)}) and no unfinished "
            "journal says how it was: bluegreen recover --to COLOR"
        )
    return None


def _journal_members(unfinished: JournalEntry, group: Haproxies) -> tuple[JournalMember, ...]:
    """The instances the unfinished switch changed; Refused when the settings lost one."""
    members = unfinished.every_member(group.names[0])
    gone = [m.name for m in members if m.name not in group.names]
    if gone:
        raise Refused(
            f"the unfinished switch names instance(s) {', '.join(gone)} that the "
            "settings no longer have: restore them by hand, or bluegreen recover --to "
            "COLOR"
        )
    return members


def _describe(desired: Mapping[str, Sequence[PriorState]], group: Haproxies) -> list[str]:
    return [
        "  " + group.label(name, f"{prior.server}: weight {prior.weight}, {prior.admin}")
        for name, priors in desired.items()
        for prior in priors
    ]


def _unfinished(settings: Settings, to: str | None) -> tuple[JournalEntry | None, bool]:
    """The journal's unfinished switch (or None), and whether the journal holds no whole
    record: then it cannot say what to restore, and only ``--to COLOR`` gets past it (the
    JournalError says so)."""
    try:
        entry = read_journal(settings.state.journal_file)
    except JournalError:
        if to is None:
            raise
        return None, True
    return (entry if entry is not None and entry.open else None), False


def _consistent(
    group: Haproxies,
    topology: Topology,
    every: Mapping[str, Mapping[ServerRef, ServerState]],
    live: str | None,
    *,
    dry_run: bool,
) -> RecoverReport:
    """Nothing to recover in HAProxy; a server-state file that does not hold what it shows
    (a recovery or a switch could not save it) is saved now."""
    lines = [f"nothing to recover: no unfinished switch, and {live} is live alone"]
    sticky = held_sticky(group, list(every))
    if sticky and dry_run:
        lines += [group.label(name, "would let a canary's sticky users go") for name in sticky]
    elif sticky:
        lines[0] = f"no unfinished switch, and {live} is live"
        lines += _let_go(group, sticky)
    stale = stale_state_files(group, topology, every)
    if dry_run and stale:
        return dry_run_report(
            lines[0],
            [
                group.label(name, f"would save HAProxy's server-state file: it holds {held}")
                for name, held in stale.items()
            ],
        )
    shown = {name: [switch.Wanted.of(s) for s in states.values()] for name, states in every.items()}
    failed = save_state_files(group, topology, list(stale), shown)
    for name, held in stale.items():
        where = group.label(name, "HAProxy's server-state file")
        if name in failed:
            lines.append(
                f"{where} does not hold what HAProxy shows ({held}) and was not saved: "
                f"{failed[name]}"
            )
        else:
            lines.append(
                f"{where} did not hold what HAProxy shows ({held}): a reload would have "
                "brought that back; saved now"
            )
    return RecoverReport(tuple(lines), ExitCode.REVERT_FAILED if failed else ExitCode.OK, live)


def _let_go(group: Haproxies, held: Sequence[str]) -> list[str]:
    """Persistence off where a canary left it on (its gate killed before its journal said so):
    the users it held go where the weights send them. Raises RuntimeApiError."""
    group.each(lambda name, api: api.set_sticky(False), names=held)
    return [
        group.label(
            name,
            "a canary's sticky users were still held (persistence on with no "
            "canary running): let go",
        )
        for name in held
    ]


def _followed(unfinished: JournalEntry | None) -> JournalEntry:
    """The unfinished switch recovery follows (without --to there is one, or it refused)."""
    if unfinished is None:
        raise OutOfOrder("recover: neither --to nor an unfinished journal to follow")
    return unfinished


def _reconcile(settings: Settings, group: Haproxies, secrets: Secrets) -> RecoverReport:
    """Only left-out instances to bring in line (no unfinished switch)."""
    result = reconcile_recorded(group, settings, secrets)
    if result is None:
        raise OutOfOrder("recover: no left-out instance recorded to bring in line")
    lines = result.lines()
    code = ExitCode.REVERT_FAILED if result.failed else ExitCode.OK
    if result.waiting and not result.done:
        code = ExitCode.REFUSED
    return RecoverReport(tuple(lines), code, result.color)
