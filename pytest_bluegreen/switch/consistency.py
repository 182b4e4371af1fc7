"""What a consistent HAProxy is, and what is not: exactly one color takes traffic on all its
servers, the other on none, no server of either color in ``drain`` or ``maint``, the instances
alike; and each server-state file holds what HAProxy shows, so that a reload keeps it (saved
when it does not). ``bluegreen status`` tells what is inconsistent, ``bluegreen recover``
(:mod:`.recovery`) brings it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_bluegreen.haproxy.answers import (
    AdminState,
    RuntimeApiError,
    ServerRef,
    ServerState,
    parse_servers_state,
)
from pytest_bluegreen.haproxy.instances import Haproxies, InstancesDisagree
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.settings import Topology

from . import transaction as switch

__all__ = [
    "group_problems",
    "held_sticky",
    "inconsistencies",
    "save_state_files",
    "stale_state_files",
]


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
        except (RuntimeApiError, switch.ServerStateFileError) as exc:
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


def held_sticky(group: Haproxies, names: Sequence[str] | None = None) -> list[str]:
    """The instances whose canary persistence is on (``proc.bg_canary``: a canary's sticky
    users held to the color they got); one that cannot be read is left to the other checks."""

    def held(name: str, api: RuntimeApi) -> bool:
        try:
            return api.sticky()
        except RuntimeApiError:
            return False

    found = group.each(held, names=names)
    return [name for name, on in found.items() if on]
