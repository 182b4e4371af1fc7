"""Bringing HAProxy back to a consistent state after a switch was cut off (``bluegreen recover``),
and telling an inconsistent state when it is seen (``bluegreen status``).

Consistent means: exactly one color takes traffic on all its servers, the other on none, and
no server of either color is left in ``drain`` or ``maint``; and HAProxy's server-state file
holds what HAProxy shows, so that a reload keeps it.

An unfinished journal says how far the switch went. Cut off before its point of no return
(``verify`` not journaled), ``recover`` restores every server's prior state; past it, the
target was verified, so ``recover`` completes the switch (its remaining steps, idempotent, as
a signal there does). ``--to COLOR`` overrides either: that color is made live. Every path
ends by saving each instance's server-state file (a failure to save is exit 10 and leaves the
journal open), records ``recovered`` in the history saying which it did and why, and closes
the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from pytest_bluegreen.errors import ExitCode, OutOfOrder, Refused
from pytest_bluegreen.haproxy.instances import Haproxies, InstancesDisagree
from pytest_bluegreen.haproxy.lock import HaproxyLock
from pytest_bluegreen.haproxy.runtime import (
    AdminState,
    RuntimeApi,
    RuntimeApiError,
    ServerRef,
    ServerState,
    parse_servers_state,
)
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.record import recording, state
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import Settings, Topology

from . import transaction as switch
from .journal import (
    Journal,
    JournalEntry,
    JournalError,
    JournalMember,
    PriorState,
    read_journal,
)
from .reconcile import reconcile_recorded, record_missing

__all__ = [
    "RecoverReport",
    "group_problems",
    "inconsistencies",
    "past_point_of_no_return",
    "recover",
    "save_state_files",
    "stale_state_files",
]


@dataclass(frozen=True)
class RecoverReport:
    lines: tuple[str, ...]
    exit_code: int
    live: str | None


def inconsistencies(states: Mapping[ServerRef, ServerState], topology: Topology) -> list[str]:
    """What is not consistent in these states (empty: exactly one color live, none draining)."""
    problems: list[str] = []
    if topology.live_color(states) is None:
        taking = {
            color: [str(r) for r in topology.servers(color) if states[r].takes_traffic]
            for color in topology.colors
        }
        shown = "; ".join(f"{c}: {', '.join(refs) or 'none'}" for c, refs in taking.items())
        problems.append(f"not exactly one color takes traffic (servers taking it: {shown})")
    for ref in topology.all_servers:
        admin = states[ref].admin
        if admin is not AdminState.READY:
            problems.append(f"{ref} is in {admin.value}")
    return problems


def past_point_of_no_return(entry: JournalEntry) -> bool:
    """The journaled switch had verified its target (``verify`` journaled): completed, not
    undone, unless ``--to`` says otherwise."""
    return any(step.get("step") == switch.POINT_OF_NO_RETURN for step in entry.steps)


def _restore(api: RuntimeApi, desired: Sequence[PriorState]) -> list[str]:
    """Apply the states, read back (see ``switch.restore``); the servers not restored."""
    wanted = [switch.Wanted(p.ref, p.weight, p.admin_state) for p in desired]
    return list(switch.restore(api, wanted))


def save_state_files(
    group: Haproxies,
    topology: Topology,
    names: Sequence[str],
    wanted: Mapping[str, Sequence[switch.Wanted]],
) -> dict[str, str]:
    """Save the server-state file of each instance ``names`` that has one, only while it shows
    the states ``wanted`` (by instance) and is not reloaded during the save; the ones not
    saved, with why."""
    files = {i.name: i.state_file for i in group.instances if i.state_file and i.name in names}
    failed = {}
    for name, path in files.items():
        try:
            switch.save_server_state(
                group.clients[name], path, topology.all_servers, wanted=wanted.get(name, ())
            )
        except (RuntimeApiError, switch.StateFileError) as exc:
            failed[name] = str(exc)
    return failed


def stale_state_files(
    group: Haproxies, topology: Topology, every: Mapping[str, Mapping[ServerRef, ServerState]]
) -> dict[str, str]:
    """The instances whose server-state file does not hold what HAProxy shows now (``every``):
    a reload would bring back other states. Name -> what the file holds (a server the file
    lacks comes back at its configured weight, ready)."""
    stale: dict[str, str] = {}
    for one in group.instances:
        if one.state_file is None or one.name not in every:
            continue
        try:
            held = {s.ref: s for s in parse_servers_state(one.state_file.read_text())}
        except FileNotFoundError:
            held = {}
        except (OSError, RuntimeApiError, UnicodeDecodeError) as exc:
            stale[one.name] = f"unreadable ({exc})"
            continue
        differ = []
        for ref in topology.all_servers:
            shown = switch.Wanted.of(every[one.name][ref])
            if ref in held and not shown.shows(held[ref]):
                differ.append(f"{ref} weight {held[ref].uweight} {held[ref].admin.value}")
            elif ref not in held and (shown.weight, shown.admin) != (
                every[one.name][ref].iweight,
                AdminState.READY,
            ):
                differ.append(f"no {ref}: its configured weight")
        if differ:
            stale[one.name] = ", ".join(differ)
    return stale


def _live_states(settings: Settings, color: str) -> list[PriorState]:
    topology, weight = settings.topology, settings.switching.full_weight
    return [
        PriorState(str(ref), weight if name == color else 0, "ready")
        for name in topology.colors
        for ref in topology.servers(name)
    ]


def group_problems(
    every: Mapping[str, Mapping[ServerRef, ServerState]], group: Haproxies, topology: Topology
) -> list[str]:
    """What is inconsistent on each instance, and between them (another live color, other
    weights or admin states)."""
    problems = [
        group.label(name, problem)
        for name, states in every.items()
        for problem in inconsistencies(states, topology)
    ]
    if len(every) > 1:
        lives = {name: topology.live_color(states) for name, states in every.items()}
        if len(set(lives.values())) > 1:
            problems.append(InstancesDisagree(lives).first_line.split(";")[0])
        first, *others = every
        for other in others:
            for ref in topology.all_servers:
                a, b = every[first][ref], every[other][ref]
                if (a.uweight, a.admin) != (b.uweight, b.admin):
                    problems.append(
                        f"{ref}: weight {b.uweight} {b.admin.value} on {other}, "
                        f"weight {a.uweight} {a.admin.value} on {first}"
                    )
    return problems


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
        recorded = state.load_reconcile(settings.state.state_file)
        if unfinished is None and to is None and recorded is not None:
            if dry_run:
                return _dry_run(
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
                return _complete(
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
            return _dry_run(
                f"would {what}:", [*_describe(desired, group), *_saves(group, list(desired))]
            )
        return _apply(
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


def _saves(group: Haproxies, names: Sequence[str]) -> list[str]:
    return [
        "  " + group.label(i.name, f"then save HAProxy's server-state file {i.state_file}")
        for i in group.instances
        if i.state_file is not None and i.name in names
    ]


def _dry_run(what: str, lines: list[str]) -> RecoverReport:
    return RecoverReport(
        (f"dry run: {what}", *lines, "dry run: nothing changed"), ExitCode.OK, None
    )


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
    stale = stale_state_files(group, topology, every)
    if dry_run and stale:
        return _dry_run(
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


def _cut_off(entry: JournalEntry) -> str:
    done = ", ".join(s["step"] for s in entry.steps) or "no step"
    return f"the switch {entry.source or '(none)'} -> {entry.target} cut off after {done}"


def _complete(
    settings: Settings,
    group: Haproxies,
    unfinished: JournalEntry,
    *,
    secrets: Secrets,
    signals: DeferredSignals,
    progress: Callable[[str], None],
    dry_run: bool,
) -> RecoverReport:
    """The unfinished switch had verified its target: its remaining steps, not an undo."""
    topology, target = settings.topology, unfinished.target
    what = _cut_off(unfinished)
    why = (
        f"it had passed its point of no return ('{switch.POINT_OF_NO_RETURN}': {target} "
        "answered through the routed URL), so it is completed, not undone"
        + (f"; 'bluegreen recover --to {unfinished.source}' undoes it" if unfinished.source else "")
    )
    down = switch.down_servers(group, topology, target)
    if down:  # verified then, not now: completing would send users to a color that is down
        shown = ", ".join(f"{server} {status}" for server, status in down.items())
        undo = f"bluegreen recover --to {unfinished.source}" if unfinished.source else None
        raise Refused(
            f"{what} had passed its point of no return, but {target} is not UP in HAProxy now "
            f"({shown}): it is not completed; "
            + (f"'{undo}' undoes it" if undo else "bluegreen recover --to COLOR")
        )
    if dry_run:
        source = topology.other(target)
        return _dry_run(
            f"would complete {what} ({why}):",
            [
                *(
                    f"  {ref}: weight {settings.switching.full_weight}, ready"
                    for ref in topology.servers(target)
                ),
                *(
                    f"  {ref}: drain, wait for 0 sessions, then weight 0, ready"
                    for ref in topology.servers(source)
                ),
                *_saves(group, list(group.present)),
            ],
        )
    journal = Journal(settings.state.journal_file, redact=secrets.redact)
    journal.resume(unfinished)
    try:
        result = switch.complete(
            group,
            topology,
            settings.switching,
            source=unfinished.source,
            target=target,
            journal=journal,
            signals=signals,
            progress=progress,
        )
    except switch.SwitchIncomplete as exc:
        return RecoverReport(
            (f"recovery of {what} failed: {exc}", f"({why})"), ExitCode.REVERT_FAILED, None
        )
    reason = f"completed {what}: {why}"
    if len(group.present) > 1:
        reason += f", on every instance ({', '.join(group.present)})"
    lines = [reason, f"{target} is live alone; nothing is left in drain or maint", *result.notes]
    return _record(
        settings,
        group,
        journal,
        lines,
        from_color=unfinished.source,
        to_color=target,
        secrets=secrets,
        present=list(group.present),
        saved=True,  # its own save-state step did
    )


def _apply(
    settings: Settings,
    group: Haproxies,
    desired: Mapping[str, Sequence[PriorState]],
    *,
    unfinished: JournalEntry | None,
    problems: list[str],
    to: str | None,
    secrets: Secrets,
    restart_journal: bool = False,
) -> RecoverReport:
    topology = settings.topology
    failed_by = group.each(lambda name, api: _restore(api, desired[name]), names=list(desired))
    failed = [group.label(name, item) for name, items in failed_by.items() for item in items]
    what = (
        _cut_off(unfinished)
        if unfinished is not None
        else f"an inconsistent HAProxy ({'; '.join(problems)})"
    )
    try:
        after = group.states_by_instance(topology.all_servers, names=list(desired))
    except RuntimeApiError as exc:  # states were sent: not 'refused, nothing changed' (7)
        return RecoverReport(
            (
                f"recovery of {what} failed: {', '.join(failed) or 'states applied'}; "
                f"HAProxy not read back after the restore: {exc}",
                "HAProxy may be half-restored; "
                + (
                    "the journal stays open: run 'bluegreen recover' again once every "
                    "instance answers"
                    if unfinished is not None
                    else "run 'bluegreen recover' again once every instance answers"
                ),
            ),
            ExitCode.REVERT_FAILED,
            None,
        )
    left = group_problems(after, group, topology)
    lives = {topology.live_color(states) for states in after.values()}
    live = lives.pop() if len(lives) == 1 else None
    if to is not None:
        how = f"{to} made live, as asked (--to {to})"
    elif unfinished is not None:
        how = (
            "every server's state before it restored: it had not reached its point of no "
            f"return ('{switch.POINT_OF_NO_RETURN}')"
        )
    else:
        how = "every server's state before it restored"
    if len(desired) > 1:
        how += f", on every instance ({', '.join(desired)})"
    if failed or left or live is None:
        return RecoverReport(
            (
                f"recovery of {what} failed: {', '.join(failed) or 'states applied'}; still: "
                f"{'; '.join(left) or 'consistent'}",
            ),
            ExitCode.REVERT_FAILED,
            None,
        )
    lines = [
        f"recovered {what}: {how}",
        f"{live} is live alone; nothing is left in drain or maint",
    ]
    journal = None
    if unfinished is not None:
        journal = Journal(settings.state.journal_file, redact=secrets.redact)
        journal.resume(unfinished)
    return _record(
        settings,
        group,
        journal,
        lines,
        from_color=unfinished.target if unfinished is not None else None,
        to_color=live,
        secrets=secrets,
        present=list(desired),
        wanted={
            name: [switch.Wanted(p.ref, p.weight, p.admin_state) for p in priors]
            for name, priors in desired.items()
        },
        restart_journal=restart_journal,
    )


def _record(
    settings: Settings,
    group: Haproxies,
    journal: Journal | None,
    lines: list[str],
    *,
    from_color: str | None,
    to_color: str,
    secrets: Secrets,
    present: list[str],
    wanted: Mapping[str, Sequence[switch.Wanted]] | None = None,
    saved: bool = False,
    restart_journal: bool = False,
) -> RecoverReport:
    """A recovery that brought HAProxy to a consistent state: the server-state files saved
    (else exit 10, the journal left open so that the next recover saves them), the left-out
    instances recorded, the journal closed, the history and the webhooks told."""
    topology = settings.topology
    unsaved = {} if saved else save_state_files(group, topology, present, wanted or {})
    if unsaved:
        return RecoverReport(
            (
                *lines,
                *(group.label(name, why) for name, why in unsaved.items()),
                "a reload of HAProxy would bring back what that file holds; "
                + (
                    "the journal stays open: run 'bluegreen recover' again once it can be saved"
                    if journal is not None
                    else "run 'bluegreen recover' again once it can be saved"
                ),
            ),
            ExitCode.REVERT_FAILED,
            to_color,
        )
    reason = lines[0]
    skipped = [n for n in group.names if n not in present]
    if skipped:
        try:
            record_missing(settings.state.state_file, skipped, to_color)
            lines.append(
                f"instance(s) {', '.join(skipped)} missing: recorded to be brought in line "
                "when they answer"
            )
        except OSError as exc:
            lines.append(f"warning: could not record {', '.join(skipped)}: {exc}")
    if journal is not None:
        journal.close("recovered", detail=reason)
    if restart_journal:  # HAProxy is consistent now: a journal with no whole record goes
        Journal(settings.state.journal_file).restart()
        lines.append(f"journal {settings.state.journal_file} started anew")
    entry = state.HistoryEntry.now(
        from_color=from_color,
        to_color=to_color,
        tag=None,
        outcome=state.Outcome.RECOVERED,
        reason=reason,
    )
    lines += recording.record(settings, entry, secrets=secrets)  # the journal closed first
    return RecoverReport(tuple(lines), ExitCode.OK, to_color)
