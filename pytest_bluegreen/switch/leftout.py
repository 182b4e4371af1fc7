"""An HAProxy instance left out of a switch, brought back in line when it answers again.

``--allow-missing-instance NAME`` switches the other instances while NAME is down for
maintenance and records NAME in ``reconcile.json`` beside the history. When NAME answers again
(it may come back with its own server-state file, showing the color it had), the next gate or
``bluegreen recover`` gives every server on it the weight and admin state the in-line instances
have now, checks that it reads back the same, saves its server-state file and clears it from
the record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bluegreen.haproxy.answers import RuntimeApiError, RuntimeApiUnreachable
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.record import history, recording
from pytest_bluegreen.settings import Settings, Topology

from .outcome import Wanted
from .restoring import revert
from .serverstate import ServerStateFileError, save_server_state

if TYPE_CHECKING:
    from pytest_bluegreen.redaction import Secrets

__all__ = ["Reconciled", "bring_in_line", "reconcile_recorded", "record_missing"]


@dataclass(frozen=True)
class Reconciled:
    done: tuple[str, ...]  # brought in line
    waiting: tuple[str, ...]  # still not answering: stays recorded
    failed: Mapping[str, str]  # answered, but could not be brought in line (why)
    color: str | None  # the in-line instances' live color
    warnings: tuple[str, ...] = ()  # the history not written, a notification not delivered

    def lines(self) -> list[str]:
        lines = []
        if self.done:
            lines.append(
                f"instance(s) {', '.join(self.done)} brought in line: {self.color} live, as on "
                "the others"
            )
        lines += [
            f"instance {name} could not be brought in line: {why}"
            for name, why in self.failed.items()
        ]
        if self.waiting:
            lines.append(
                f"instance(s) {', '.join(self.waiting)} still missing: they stay recorded to be "
                "brought in line (bluegreen recover)"
            )
        return [*lines, *self.warnings]


def bring_in_line(
    group: Haproxies,
    topology: Topology,
    names: Sequence[str],
) -> Reconciled:
    """Give the instances ``names`` the server states of the group's other instances (which
    must answer and agree). An instance that does not answer is ``waiting``."""
    reference = [n for n in group.present if n not in names]
    if not reference:
        raise RuntimeApiUnreachable(
            "bring in line", "", "no in-line HAProxy instance answers to copy the states from"
        )
    every = group.states_by_instance(topology.all_servers, names=reference)
    wanted = every[reference[0]]
    color = topology.live_color(wanted)
    done: list[str] = []
    waiting: list[str] = []
    failed: dict[str, str] = {}
    files = {i.name: i.state_file for i in group.instances if i.state_file is not None}
    for name in names:
        api = group.clients[name]
        try:
            api.require_admin()
        except RuntimeApiUnreachable:
            waiting.append(name)
            continue
        except RuntimeApiError as exc:
            failed[name] = str(exc)
            continue
        problems = list(revert(api, wanted))  # the same restore as a switch's undo
        try:
            now = api.server_states(topology.all_servers)
        except RuntimeApiError as exc:
            problems.append(str(exc))
            now = {}
        wrong = [
            str(ref)
            for ref, want in wanted.items()
            if ref in now and (now[ref].uweight, now[ref].admin) != (want.uweight, want.admin)
        ]
        if wrong:
            problems.append(f"reads back other states for {', '.join(wrong)}")
        if not problems and name in files:
            try:
                save_server_state(
                    api,
                    files[name],
                    topology.all_servers,
                    wanted=[Wanted.of(state) for state in wanted.values()],
                )
            except (RuntimeApiError, ServerStateFileError) as exc:
                problems.append(f"server-state file not saved: {exc}")
        if problems:
            failed[name] = "; ".join(problems)
        else:
            done.append(name)
    return Reconciled(tuple(done), tuple(waiting), failed, color)


def record_missing(state_file: Path, missing: Sequence[str], color: str) -> None:
    """After a switch that left ``missing`` out: they must be brought in line (merged with
    what was recorded before)."""
    before = history.load_reconcile(state_file)
    names = tuple(dict.fromkeys([*(before.instances if before else ()), *missing]))
    record = history.Reconcile(names, color, time.time())
    history.save_record(state_file, history.RECONCILE, record)


def reconcile_recorded(group: Haproxies, settings: Settings, secrets: Secrets) -> Reconciled | None:
    """Bring the recorded instances in line (recorded ``recovered`` when any was: the history,
    the webhooks); the record keeps the ones still waiting or failed. None when nothing is
    recorded."""
    state_file = settings.state.state_file
    record = history.load_reconcile(state_file)
    if record is None:
        return None
    names = [n for n in record.instances if n in group.names]
    result = bring_in_line(group, settings.topology, names)
    left = (*result.waiting, *result.failed)
    if left:
        kept = history.Reconcile(tuple(left), result.color or record.color, record.since)
        history.save_record(state_file, history.RECONCILE, kept)
    else:
        history.clear_record(state_file, history.RECONCILE)
    if result.done:
        entry = history.HistoryEntry.now(
            from_color=None,
            to_color=result.color or "?",
            tag=None,
            outcome=history.Outcome.RECOVERED,
            reason=f"instance(s) {', '.join(result.done)} brought in line after a switch that "
            "left them out",
        )
        return replace(result, warnings=tuple(recording.record(settings, entry, secrets=secrets)))
    return result
