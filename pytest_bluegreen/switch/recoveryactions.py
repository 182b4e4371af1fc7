"""A recovery carried out (:func:`.recovery.recover` decides which): an unfinished switch
completed past its point of no return, or the servers' prior states restored (or a color made
live); then every instance's server-state file saved (a failure: exit 10, the journal left
open), the left-out instances recorded, the journal closed and ``recovered`` recorded in the
history and the webhooks. :class:`RecoverReport` is what a recovery says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pytest_bluegreen.errors import ExitCode, Refused
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.record import history, recording
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import Settings

from . import transaction as switch
from .canary import held_users
from .consistency import group_problems, save_state_files
from .journal import Journal, JournalEntry, PriorState
from .leftout import record_missing

__all__ = [
    "RecoverReport",
    "apply_desired",
    "complete_unfinished",
    "dry_run_report",
    "save_lines",
]


@dataclass(frozen=True)
class RecoverReport:
    lines: tuple[str, ...]
    exit_code: int
    live: str | None


def _restore(api: RuntimeApi, desired: Sequence[PriorState], *, unstick: bool = False) -> list[str]:
    """Apply the states, read back (see ``switch.restore``); the servers not restored.
    ``unstick``: a canary was cut off, so its sticky users are let go first (else a user's
    cookie would hold them on the color the restore takes traffic from)."""
    failed = []
    try:
        if unstick or api.sticky():
            api.set_sticky(False)
    except RuntimeApiError as exc:
        failed.append(f"the canary's sticky users (set var failed: {exc})")
    wanted = [switch.Wanted(p.ref, p.weight, p.admin_state) for p in desired]
    return failed + list(switch.restore(api, wanted))


def save_lines(group: Haproxies, names: Sequence[str]) -> list[str]:
    return [
        "  " + group.label(i.name, f"then save HAProxy's server-state file {i.state_file}")
        for i in group.instances
        if i.state_file is not None and i.name in names
    ]


def dry_run_report(what: str, lines: list[str]) -> RecoverReport:
    return RecoverReport(
        (f"dry run: {what}", *lines, "dry run: nothing changed"), ExitCode.OK, None
    )


def _cut_off(entry: JournalEntry) -> str:
    done = ", ".join(s["step"] for s in entry.steps) or "no step"
    return f"the switch {entry.source or '(none)'} -> {entry.target} cut off after {done}"


def complete_unfinished(
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
        return dry_run_report(
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
                *save_lines(group, list(group.present)),
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


def apply_desired(
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
    unstick = unfinished is not None and held_users(unfinished)
    failed_by = group.each(
        lambda name, api: _restore(api, desired[name], unstick=unstick), names=list(desired)
    )
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
    entry = history.HistoryEntry.now(
        from_color=from_color,
        to_color=to_color,
        tag=None,
        outcome=history.Outcome.RECOVERED,
        reason=reason,
    )
    lines += recording.record(settings, entry, secrets=secrets)  # the journal closed first
    return RecoverReport(tuple(lines), ExitCode.OK, to_color)
