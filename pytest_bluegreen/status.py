"""What is deployed and live now, as typed records: behind ``bluegreen status`` and
``export-state``. Reads HAProxy, the history, the tags file and (when there is an engine) the
containers; changes nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from . import state
from .engines.compose import TagsFile, color_health
from .haproxy import RuntimeApi
from .journal import JournalEntry, read_journal
from .recovery import inconsistencies
from .redaction import REDACTED, Secrets
from .settings import Settings

__all__ = ["ColorStatus", "ServerStatus", "Status", "collect_status", "export_state"]


@dataclass(frozen=True)
class ServerStatus:
    server: str
    weight: int
    state: str  # ready | drain | maint
    health: str  # HAProxy's status column: UP, DOWN, ...; "missing" when show stat lacks it


@dataclass(frozen=True)
class ColorStatus:
    name: str
    role: str  # live | idle
    tag: str | None
    containers: str  # "3/3 healthy", or "-" without an engine
    api_url: str
    servers: tuple[ServerStatus, ...]


@dataclass(frozen=True)
class Status:
    live: str | None
    colors: tuple[ColorStatus, ...]
    last_switch: state.HistoryEntry | None
    unfinished: JournalEntry | None = None  # a switch that was cut off
    problems: tuple[str, ...] = ()  # what is inconsistent in HAProxy now
    warm: state.WarmWindow | None = None  # the old color's window, while it lasts
    pending: state.PendingPromotion | None = None
    pending_expired: bool = False

    @property
    def healthy(self) -> bool:
        return self.unfinished is None and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "colors": {
                c.name: {
                    "role": c.role,
                    "tag": c.tag,
                    "containers": c.containers,
                    "api_url": c.api_url,
                    "servers": [asdict(s) for s in c.servers],
                }
                for c in self.colors
            },
            "last_switch": None if self.last_switch is None else asdict(self.last_switch),
            "unfinished_switch": None if self.unfinished is None else self.unfinished.to_json(),
            "problems": list(self.problems),
            "warm_window": None
            if self.warm is None
            else {**asdict(self.warm), "remaining_seconds": round(self.warm.remaining(), 1)},
            "pending_promotion": None
            if self.pending is None
            else {
                **asdict(self.pending),
                "age_seconds": round(self.pending.age(), 1),
                "expired": self.pending_expired,
            },
        }


def collect_status(settings: Settings, api: RuntimeApi | None = None) -> Status:
    """Colors, HAProxy servers, deployed tags, containers and the last switch."""
    api = api or settings.haproxy.client()
    topology = settings.topology
    states = api.server_states(topology.all_servers)
    stats = {row.ref: row for row in api.show_stat()}
    live = topology.live_color(states)
    history = state.read_history(settings.state.state_file)
    tags = TagsFile(settings.state.tags_file).tags(topology.colors)
    containers = color_health(settings.compose, settings.topology)
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
        )
        for name, cfg in topology.color.items()
    )
    journal = read_journal(settings.state.journal_file)
    warm = state.load_warm(settings.state.state_file)
    pending = state.load_pending(settings.state.state_file)
    return Status(
        live=live,
        colors=colors,
        last_switch=history[-1] if history else None,
        unfinished=journal if journal is not None and journal.open else None,
        problems=tuple(inconsistencies(states, topology)),
        warm=warm if warm is not None and warm.remaining() > 0 else None,
        pending=pending,
        pending_expired=pending is not None
        and pending.age() > settings.promotion.promotion_timeout,
    )


def export_state(settings: Settings, secrets: Secrets) -> dict[str, Any]:
    """Everything known, as JSON-ready data; secret values are replaced by ***."""
    api = settings.haproxy.client()
    status = collect_status(settings, api).to_json()
    return {
        "live": status["live"],
        "colors": {
            name: {
                **info,
                "variables": {
                    k: secrets.redact(v) for k, v in settings.env_files.variables(name).items()
                },
            }
            for name, info in status["colors"].items()
        },
        "haproxy": {
            "version": api.version(),
            "servers": [
                {
                    "backend": s.backend,
                    "server": s.server,
                    "weight": s.uweight,
                    "configured_weight": s.iweight,
                    "admin": s.admin.value,
                }
                for s in api.servers_state()
            ],
        },
        "secrets": dict.fromkeys(sorted(secrets), REDACTED),
        "history": [asdict(e) for e in state.read_history(settings.state.state_file)],
    }
