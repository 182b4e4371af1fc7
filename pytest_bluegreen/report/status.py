"""What is deployed and live now, as typed records: behind ``bluegreen status`` and
``export-state``. Reads HAProxy, the history, the tags file and (when there is an engine) the
containers; changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_bluegreen.engines.compose import TagsFile, color_health
from pytest_bluegreen.gate import aftercare
from pytest_bluegreen.haproxy.answers import (
    RuntimeApiError,
    RuntimeApiUnreachable,
    ServerRef,
    ServerState,
    StatRow,
)
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.record.history import (
    FaultsLeft,
    HistoryEntry,
    Outcome,
    PendingPromotion,
    Reconcile,
    WarmWindow,
    load_faults,
    load_pending,
    load_reconcile,
    read_history,
)
from pytest_bluegreen.record.pending import expired as promotion_expired
from pytest_bluegreen.redaction import REDACTED, Secrets
from pytest_bluegreen.settings import Settings, Topology
from pytest_bluegreen.switch.canary import CanaryProgress, in_progress
from pytest_bluegreen.switch.consistency import group_problems, held_sticky
from pytest_bluegreen.switch.journal import JournalEntry, read_journal

__all__ = [
    "ColorStatus",
    "InstanceState",
    "InstanceStatus",
    "ReplicaStatus",
    "ServerStatus",
    "StateExport",
    "Status",
    "collect_export",
    "collect_status",
    "last_switch",
]

# the outcomes after which HAProxy's server states were changed: a switch, made, undone or cut
# short, and a recovery (not a refusal, a no-op, a failed gate, a pending promotion ...)
SWITCHES = frozenset(
    {
        Outcome.SWITCHED,
        Outcome.ROLLED_BACK,
        Outcome.REVERTED,
        Outcome.REVERT_FAILED,
        Outcome.INCOMPLETE,  # past its point of no return: the target verified, live
        Outcome.RECOVERED,
    }
)


def last_switch(history: list[HistoryEntry]) -> HistoryEntry | None:
    """The latest entry that changed HAProxy's server states."""
    return next((e for e in reversed(history) if e.outcome in SWITCHES), None)


@dataclass(frozen=True)
class ServerStatus:
    server: str
    weight: int
    state: str  # ready | drain | maint
    health: str  # HAProxy's status column: UP, DOWN, ...; "missing" when show stat lacks it


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica of a color's service on a swarm (deploy_engine = "swarm")."""

    service: str
    slot: int
    node: str
    state: str  # Swarm's task state: running, starting, failed ...
    tag: str


@dataclass(frozen=True)
class ColorStatus:
    name: str
    role: str  # live | idle
    tag: str | None
    containers: str  # "3/3 healthy" (Compose), "2/2 running" (Swarm), or "-" without an engine
    api_url: str
    servers: tuple[ServerStatus, ...]
    replicas: tuple[ReplicaStatus, ...] = ()  # Swarm only: per node


@dataclass(frozen=True)
class InstanceStatus:
    """One HAProxy instance as it answers now."""

    name: str
    address: str
    reachable: bool
    live: str | None = None
    error: str = ""
    weights: tuple[tuple[str, int, str], ...] = ()  # (server, weight, admin state)


@dataclass(frozen=True)
class Status:
    live: str | None
    colors: tuple[ColorStatus, ...]
    last_switch: HistoryEntry | None  # the latest entry that changed HAProxy's states
    unfinished: JournalEntry | None = None  # a switch that was cut off
    canary: CanaryProgress | None = None  # a gate's canary now (its journal is open)
    problems: tuple[str, ...] = ()  # what is inconsistent in HAProxy now
    warm: WarmWindow | None = None  # the old color's window, while it holds
    last_entry: HistoryEntry | None = None  # the latest entry, whatever its outcome
    pending: PendingPromotion | None = None
    pending_expired: bool = False
    instances: tuple[InstanceStatus, ...] = ()
    reconcile: Reconcile | None = None  # instances left out of a switch
    faults: FaultsLeft | None = None  # a power drill's fault maybe still on a color

    @property
    def healthy(self) -> bool:
        # a canary in progress is not healthy either: status exits non-zero until it ends
        return self.unfinished is None and self.canary is None and not self.problems


def _read_instances(
    group: Haproxies, topology: Topology
) -> tuple[dict[str, dict[ServerRef, ServerState]], dict[str, list[StatRow]], dict[str, str]]:
    """Every instance's states and stat rows; the ones that do not answer, with why."""

    states: dict[str, dict[ServerRef, ServerState]] = {}
    stats: dict[str, list[StatRow]] = {}
    errors: dict[str, str] = {}
    for name, api in group.clients.items():
        try:
            states[name], stats[name] = api.server_states(topology.all_servers), api.show_stat()
        except RuntimeApiError as exc:
            if not group.several:
                raise
            errors[name] = str(exc)
    if not states:  # none answers: as with one instance, the error
        raise RuntimeApiUnreachable("show servers state", "", "; ".join(errors.values()))
    return states, stats, errors


def collect_status(settings: Settings, group: Haproxies | None = None) -> Status:
    """Colors, HAProxy servers (on every instance), deployed tags, containers, last switch."""
    group = group if group is not None else settings.haproxies()
    topology = settings.topology
    every, every_stat, errors = _read_instances(group, topology)
    first = next(iter(every))
    states = every[first]
    stats = {row.ref: row for row in every_stat[first]}
    canary = in_progress(read_journal(settings.state.journal_file))
    # a canary's split weights are the canary's, not a fault (its own line says so)
    problems = group_problems(every, group, topology) if canary is None else []
    if canary is None:  # a canary's sticky users held with no canary: one color is not alone
        problems += [
            group.label(
                name,
                "a canary's sticky users are held (persistence on) and no canary "
                "runs: 'bluegreen recover' lets them go",
            )
            for name in held_sticky(group, list(every))
        ]
    problems += [f"{name}: does not answer ({why})" for name, why in errors.items()]
    reconcile = load_reconcile(settings.state.state_file)
    if reconcile is not None:
        problems.append(
            f"instance(s) {', '.join(reconcile.instances)} left out of a switch to "
            f"{reconcile.color}: bring them in line with 'bluegreen recover'"
        )
    lives = {topology.live_color(s) for s in every.values()}
    live = lives.pop() if len(lives) == 1 else None
    history = read_history(settings.state.state_file)
    tags = TagsFile(settings.state.tags_file).tags(topology.colors)
    containers, replicas = _engine_view(settings)
    for name, running in replicas.items():  # Swarm: the tag the replicas run
        tags[name] = running[0].tag if running else tags[name]
    colors = tuple(
        ColorStatus(
            name=name,
            role="live" if name == live else "idle",
            tag=tags[name],
            containers=containers[name],
            api_url=cfg.api_url,
            servers=tuple(
                ServerStatus(
                    server=str(ref),
                    weight=states[ref].uweight,
                    state=states[ref].admin.value,
                    health=stats[ref].status if ref in stats else "missing",
                )
                for ref in cfg.servers
            ),
            replicas=replicas.get(name, ()),
        )
        for name, cfg in topology.color.items()
    )
    instances = tuple(
        InstanceStatus(
            name=i.name,
            address=str(i.runtime_api),
            reachable=i.name in every,
            live=topology.live_color(every[i.name]) if i.name in every else None,
            error=errors.get(i.name, ""),
            weights=tuple(
                (str(ref), s.uweight, s.admin.value) for ref, s in every.get(i.name, {}).items()
            ),
        )
        for i in group.instances
    )
    journal = read_journal(settings.state.journal_file)
    pending = load_pending(settings.state.state_file)
    return Status(
        live=live,
        colors=colors,
        last_switch=last_switch(history),
        last_entry=history[-1] if history else None,
        # a canary a running gate carries out is no cut-off switch, and its weights no fault
        unfinished=journal if journal is not None and journal.open and canary is None else None,
        canary=canary,
        problems=tuple(problems),
        warm=aftercare.current_window(settings, live),
        pending=pending,
        pending_expired=pending is not None and promotion_expired(settings, pending),
        instances=instances,
        reconcile=reconcile,
        faults=load_faults(settings.state.state_file),
    )


def _engine_view(
    settings: Settings,
) -> tuple[dict[str, str], dict[str, tuple[ReplicaStatus, ...]]]:
    """Each color's containers in a word and, on a swarm, its replicas per node."""
    if settings.compose.deploy_engine != "swarm":
        return color_health(settings.compose, settings.topology), {}
    from pytest_bluegreen.engines.swarmtasks import (  # noqa: PLC0415 - only for a swarm
        color_replicas,
    )

    found = color_replicas(settings.swarm, settings.topology)
    if found is None:
        return dict.fromkeys(settings.topology.colors, "-"), {}
    words: dict[str, str] = {}
    replicas: dict[str, tuple[ReplicaStatus, ...]] = {}
    for color, tasks in found.items():
        running = sum(1 for t in tasks if t.healthy)
        nodes = sorted({t.node for t in tasks})
        words[color] = f"{running}/{len(tasks)} running" + (
            f" on {len(nodes)} nodes" if len(nodes) > 1 else ""
        )
        replicas[color] = tuple(
            ReplicaStatus(t.service, t.slot, t.node, t.state, t.tag)
            for t in sorted(tasks, key=lambda t: (t.service, t.slot))
        )
    return words, replicas


@dataclass(frozen=True)
class InstanceState:
    """One HAProxy instance's own answer: its version and every server's state."""

    name: str
    address: str
    reachable: bool
    version: str | None = None
    error: str = ""
    servers: tuple[ServerState, ...] = ()


@dataclass(frozen=True)
class StateExport:
    """Everything known, for ``bluegreen export-state``; secret values already replaced."""

    status: Status
    variables: Mapping[str, Mapping[str, str]]  # color -> its env files' variables
    instances: tuple[InstanceState, ...]  # the first is the one the fixtures use
    secrets: Mapping[str, str]  # every name in secrets.env -> ***
    history: tuple[HistoryEntry, ...]


def collect_export(settings: Settings, secrets: Secrets) -> StateExport:
    """The status, each color's variables, each instance's servers, the history."""
    group = settings.haproxies()
    return StateExport(
        status=collect_status(settings),
        variables={
            name: {k: secrets.redact(v) for k, v in settings.env_files.variables(name).items()}
            for name in settings.topology.colors
        },
        instances=tuple(_instance_state(name, api) for name, api in group.clients.items()),
        secrets=dict.fromkeys(sorted(secrets), REDACTED),
        history=tuple(read_history(settings.state.state_file)),
    )


def _instance_state(name: str, api: RuntimeApi) -> InstanceState:
    try:
        version, servers = api.version(), tuple(api.servers_state())
    except RuntimeApiError as exc:
        return InstanceState(name, str(api.address), reachable=False, error=str(exc))
    return InstanceState(name, str(api.address), reachable=True, version=version, servers=servers)
