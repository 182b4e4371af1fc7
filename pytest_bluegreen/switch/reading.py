"""HAProxy read before and around a switch, changing nothing: the live color, the servers not
UP, which process answers, and the plan of a switch from every instance's prior states."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_bluegreen.haproxy.answers import AdminState
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.haproxy.instances import Haproxies, InstancesDisagree
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.settings import Topology

from .outcome import MemberPlan, SwitchPlan

__all__ = ["down_servers", "identity", "live_color", "plan", "plan_of", "read_members"]


def live_color(group: Haproxies, topology: Topology) -> str | None:
    """The color HAProxy sends traffic to now (None when neither or both). Several instances
    must agree: InstancesDisagree (a refusal) when they do not."""
    states = group.states_by_instance(topology.all_servers)
    lives = {name: topology.live_color(s) for name, s in states.items()}
    if len(set(lives.values())) > 1:
        raise InstancesDisagree(lives)
    return next(iter(lives.values()))


def down_servers(group: Haproxies, topology: Topology, color: str) -> dict[str, str]:
    """The color's servers that health checks do not report UP, with their status; with
    several instances, on any of them (named)."""
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


def read_members(
    group: Haproxies, topology: Topology, names: Sequence[str]
) -> tuple[MemberPlan, ...]:
    def read(name: str, client: RuntimeApi) -> MemberPlan:
        client.require_admin()
        return MemberPlan(name, client.server_states(topology.all_servers), identity(client))

    return tuple(group.each(read, names=names).values())


def plan_of(
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


def plan(group: Haproxies, topology: Topology, target: str, full_weight: int) -> SwitchPlan:
    """Read every instance and say what a switch to ``target`` would do. Changes nothing.

    Raises RuntimeApiError (unreachable, not admin, unknown server: named after the instance)
    or InstancesDisagree before any change.
    """
    members = read_members(group, topology, group.present)
    lives = {m.name: topology.live_color(m.prior) for m in members}
    if len(set(lives.values())) > 1:
        raise InstancesDisagree(lives)
    return plan_of(members, topology, lives[members[0].name], target, full_weight)
