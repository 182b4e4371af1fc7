"""Bringing HAProxy back to a consistent state after a switch was cut off (``bluegreen recover``),
and telling an inconsistent state when it is seen (``bluegreen status``).

Consistent means: exactly one color takes traffic on all its servers, the other on none, and
no server of either color is left in ``drain`` or ``maint``. An unfinished journal names the
prior state of every server; ``recover`` restores it (or, with ``--to COLOR``, makes that
color live), records ``recovered`` in the history and closes the journal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from . import recording, state
from .errors import ExitCode, Refused
from .haproxy import AdminState, RuntimeApi, RuntimeApiError, ServerRef, ServerState
from .instances import Haproxies, InstancesDisagree, lock_keys
from .journal import Journal, JournalEntry, JournalError, PriorState, read_journal
from .reconcile import reconcile_recorded, record_missing
from .redaction import Secrets
from .settings import Settings, Topology

__all__ = ["RecoverReport", "group_problems", "inconsistencies", "recover"]


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


def _restore(api: RuntimeApi, desired: Sequence[PriorState]) -> list[str]:
    """Apply the states (the ones that take traffic first), past errors; the failures."""
    failed: list[str] = []
    for prior in sorted(desired, key=lambda p: not (p.weight > 0 and p.admin == "ready")):
        try:
            api.set_weight(prior.ref, prior.weight)
            api.set_state(prior.ref, prior.admin_state)
        except RuntimeApiError as exc:
            failed.append(f"{prior.server} ({exc.answer or type(exc).__name__})")
    return failed


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
) -> RecoverReport:
    """Restore the unfinished journal's prior states on every instance it names (or make ``to``
    live on every instance), bring recorded left-out instances in line; under the lock. A
    recovery is recorded (the history, the webhooks) with ``secrets`` kept out. ``dry_run``:
    say what would be restored; no lock, nothing changed.

    Raises Refused when there is nothing that says what to restore, LockHeld, RuntimeApiError.
    """
    group = settings.haproxies()
    topology = settings.topology
    secrets = secrets or Secrets()
    lock = state.lock_for_group(settings.state.lock_dir, lock_keys(group))
    with nullcontext() if dry_run else lock.hold():
        group.leave_out_missing()  # the allowed-missing ones that do not answer take no part
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
            lives = {topology.live_color(states) for states in before.values()}
            live = lives.pop() if len(lives) == 1 else None
            if not problems and to not in (None, live):
                raise Refused(
                    f"HAProxy is consistent ({live} is live) and no switch is unfinished: "
                    f"move traffic with 'bluegreen switch-to {to}'"
                )
            if not problems:
                return RecoverReport(
                    (f"nothing to recover: no unfinished switch, and {live} is live alone",),
                    ExitCode.OK,
                    live,
                )
            if to is None:
                raise Refused(
                    f"HAProxy is inconsistent ({'; '.join(problems)}) and no unfinished "
                    "journal says how it was: bluegreen recover --to COLOR"
                )
        if to is not None:
            desired = dict.fromkeys(group.present, _live_states(settings, to))
        else:
            assert unfinished is not None
            members = unfinished.every_member(group.names[0])
            desired = {m.name: list(m.prior) for m in members if m.name in group.present}
            gone = [m.name for m in members if m.name not in group.names]
            if gone:
                raise Refused(
                    f"the unfinished switch names instance(s) {', '.join(gone)} that the "
                    "settings no longer have: restore them by hand, or bluegreen recover --to "
                    "COLOR"
                )
        if dry_run:
            what = f"make {to} live" if to else "restore the states before the unfinished switch"
            return _dry_run(f"would {what}:", _describe(desired, group))
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


def _describe(desired: Mapping[str, Sequence[PriorState]], group: Haproxies) -> list[str]:
    return [
        "  " + group.label(name, f"{prior.server}: weight {prior.weight}, {prior.admin}")
        for name, priors in desired.items()
        for prior in priors
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


def _reconcile(settings: Settings, group: Haproxies, secrets: Secrets) -> RecoverReport:
    """Only left-out instances to bring in line (no unfinished switch)."""
    result = reconcile_recorded(group, settings, secrets)
    assert result is not None
    lines = result.lines()
    code = ExitCode.REVERT_FAILED if result.failed else ExitCode.OK
    if result.waiting and not result.done:
        code = ExitCode.REFUSED
    return RecoverReport(tuple(lines), code, result.color)


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
    after = group.states_by_instance(topology.all_servers, names=list(desired))
    left = group_problems(after, group, topology)
    lives = {topology.live_color(states) for states in after.values()}
    live = lives.pop() if len(lives) == 1 else None
    what = (
        f"the switch {unfinished.source or '(none)'} -> {unfinished.target} cut off after "
        f"{', '.join(s['step'] for s in unfinished.steps) or 'no step'}"
        if unfinished is not None
        else f"an inconsistent HAProxy ({'; '.join(problems)})"
    )
    how = f"{to} made live" if to else "every server's state before it restored"
    if len(desired) > 1:
        how += f" on every instance ({', '.join(desired)})"
    if failed or left or live is None:
        return RecoverReport(
            (
                f"recovery of {what} failed: {', '.join(failed) or 'states applied'}; still: "
                f"{'; '.join(left) or 'consistent'}",
            ),
            ExitCode.REVERT_FAILED,
            None,
        )
    reason = f"recovered {what}: {how}"
    lines = [reason, f"{live} is live alone; nothing is left in drain or maint"]
    skipped = [n for n in group.names if n not in desired]
    if skipped:
        try:
            record_missing(settings.state.state_file, skipped, live)
            lines.append(
                f"instance(s) {', '.join(skipped)} missing: recorded to be brought in line "
                "when they answer"
            )
        except OSError as exc:
            lines.append(f"warning: could not record {', '.join(skipped)}: {exc}")
    if unfinished is not None:
        journal = Journal(settings.state.journal_file)
        journal.resume(unfinished)
        journal.close("recovered", detail=reason)
    if restart_journal:  # HAProxy is consistent now: a journal with no whole record goes
        Journal(settings.state.journal_file).restart()
        lines.append(f"journal {settings.state.journal_file} started anew")
    entry = state.HistoryEntry.now(
        from_color=unfinished.target if unfinished is not None else None,
        to_color=live,
        tag=None,
        outcome=state.Outcome.RECOVERED,
        reason=reason,
    )
    lines += recording.record(settings, entry, secrets=secrets)  # the journal closed first
    return RecoverReport(tuple(lines), ExitCode.OK, live)
