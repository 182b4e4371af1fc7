"""Bringing HAProxy back to a consistent state after a switch was cut off (``bluegreen recover``),
and telling an inconsistent state when it is seen (``bluegreen status``).

Consistent means: exactly one color takes traffic on all its servers, the other on none, and
no server of either color is left in ``drain`` or ``maint``. An unfinished journal names the
prior state of every server; ``recover`` restores it (or, with ``--to COLOR``, makes that
color live), records ``recovered`` in the history and closes the journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import state
from .errors import ExitCode, Refused
from .haproxy import AdminState, RuntimeApi, RuntimeApiError, ServerRef, ServerState
from .journal import Journal, JournalEntry, PriorState, read_journal
from .settings import Settings, Topology

__all__ = ["RecoverReport", "inconsistencies", "recover"]


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


def _restore(api: RuntimeApi, desired: list[PriorState]) -> list[str]:
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


def recover(settings: Settings, *, to: str | None = None) -> RecoverReport:
    """Restore the unfinished journal's prior states (or make ``to`` live), under the lock.

    Raises Refused when there is nothing that says what to restore, LockHeld, RuntimeApiError.
    """
    api = settings.haproxy.client()
    lock = state.lock_for(settings.state.lock_dir, str(settings.haproxy.runtime_api))
    with lock.hold():
        entry = read_journal(settings.state.journal_file)
        unfinished = entry if entry is not None and entry.open else None
        before = api.server_states(settings.topology.all_servers)
        problems = inconsistencies(before, settings.topology)
        if unfinished is None:
            live = settings.topology.live_color(before)
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
            desired = _live_states(settings, to)
        else:
            assert unfinished is not None
            desired = list(unfinished.prior)
        return _apply(settings, api, desired, unfinished=unfinished, problems=problems, to=to)


def _apply(
    settings: Settings,
    api: RuntimeApi,
    desired: list[PriorState],
    *,
    unfinished: JournalEntry | None,
    problems: list[str],
    to: str | None,
) -> RecoverReport:
    failed = _restore(api, desired)
    after = api.server_states(settings.topology.all_servers)
    left = inconsistencies(after, settings.topology)
    live = settings.topology.live_color(after)
    what = (
        f"the switch {unfinished.source or '(none)'} -> {unfinished.target} cut off after "
        f"{', '.join(s['step'] for s in unfinished.steps) or 'no step'}"
        if unfinished is not None
        else f"an inconsistent HAProxy ({'; '.join(problems)})"
    )
    how = f"{to} made live" if to else "every server's state before it restored"
    if failed or left:
        return RecoverReport(
            (
                f"recovery of {what} failed: {', '.join(failed) or 'states applied'}; still: "
                f"{'; '.join(left) or 'consistent'}",
            ),
            ExitCode.REVERT_FAILED,
            None,
        )
    reason = f"recovered {what}: {how}"
    entry = state.HistoryEntry.now(
        from_color=unfinished.target if unfinished is not None else None,
        to_color=live or "?",
        tag=None,
        outcome=state.Outcome.RECOVERED,
        reason=reason,
    )
    lines = [reason, f"{live} is live alone; nothing is left in drain or maint"]
    try:
        state.append(settings.state.state_file, entry)
    except (OSError, state.StateFileError) as exc:
        lines.append(f"warning: history not written to {settings.state.state_file}: {exc}")
    if unfinished is not None:
        journal = Journal(settings.state.journal_file)
        journal.resume(unfinished)
        journal.close("recovered", detail=reason)
    return RecoverReport(tuple(lines), ExitCode.OK, live)
