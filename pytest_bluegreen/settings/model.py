"""The resolved settings: small frozen groups, each holding what one part of the gate needs.

A module takes the group it works with (the switch takes ``switching`` and ``topology``, the
deployer ``compose``), not the whole :class:`Settings`.

Here: what the run is asked to do (``run``), the two colors and how a response names its color
(``topology``), and :class:`Settings`, which holds every group. The other groups are in
:mod:`.deployment` (HAProxy, switching, Compose, Swarm, env files, promotion, state) and
:mod:`.judging` (checks, drill, bake, Prometheus, reports, metrics, notify, dashboard), their
names handed on from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.haproxy.answers import ServerRef, ServerState
from pytest_bluegreen.haproxy.instances import Haproxies, Instance
from pytest_bluegreen.judge.headers import COLOR_HEADER, SERVER_HEADER, VERSION_HEADER
from pytest_bluegreen.redaction import Secrets, secrets_of_urls

from . import parsers as p
from .deployment import (
    ComposeSettings,
    DeployEngineName,
    EnvFiles,
    HaproxySettings,
    OnFailedGate,
    PromotionSettings,
    PullPolicy,
    StateSettings,
    SwarmSettings,
    SwitchingSettings,
)
from .judging import (
    AfterBake,
    BakeOnInconclusive,
    BakeSettings,
    CanarySettings,
    ChecksSettings,
    DashboardSettings,
    DrillSettings,
    MetricsSettings,
    NotifySettings,
    PrometheusSettings,
    ReportSettings,
)
from .options import setting

__all__ = [
    "DEFAULT_COLORS",
    "AfterBake",
    "Answer",
    "BakeOnInconclusive",
    "BakeSettings",
    "CanarySettings",
    "ChecksSettings",
    "ColorSettings",
    "ComposeSettings",
    "DashboardSettings",
    "DeployEngineName",
    "DrillSettings",
    "EnvFiles",
    "HaproxySettings",
    "MetricsSettings",
    "NotifySettings",
    "OnFailedGate",
    "PrometheusSettings",
    "PromotionSettings",
    "PullPolicy",
    "ReportSettings",
    "RunSettings",
    "Settings",
    "StateSettings",
    "SwarmSettings",
    "SwitchingSettings",
    "Topology",
]

T = TypeVar("T")
DEFAULT_COLORS = ("blue", "green")  # the seed's colors, when the settings name none


@frozen
class RunSettings(Frozen):
    """What this run is asked to do (mostly from the command line)."""

    GROUP: ClassVar[str] = "run"
    env: str = setting("all", p.lower, "blue|green|all|shared: which checks run", cli="--env")
    switch: bool = setting(
        False,
        p.boolean,
        "gate: switch HAProxy traffic to the --env color when the session passes",
        cli="--switch",
        env=False,
        file=False,
        flag=True,
    )
    rollback: bool = setting(
        False,
        p.boolean,
        "return traffic to the previous color after its checks pass, and verify",
        cli="--rollback",
        env=False,
        file=False,
        flag=True,
    )
    dry_run: bool = setting(
        False,
        p.boolean,
        "with --switch/--rollback: print what would be switched and why, change nothing",
        cli="--dry-run",
        flag=True,
    )
    deploy: str | None = setting(
        None,
        p.optional(p.image_tag),
        "TAG: before the checks, deploy the --env color at TAG (compose up, wait healthy)",
        cli="--deploy",
        env=False,
        file=False,
    )
    force_deploy: bool = setting(
        False,
        p.boolean,
        "with --deploy: allow deploying over the live color",
        cli="--force-deploy",
        env=False,
        file=False,
        flag=True,
    )
    skip_backup: bool = setting(
        False,
        p.boolean,
        "with --deploy: no backup (backup_command) before deploying",
        cli="--skip-backup",
        flag=True,
    )
    deployment_tag: str | None = setting(
        None,
        p.optional(p.text),
        "the version being gated, recorded in the history",
        cli="--deployment-tag",
    )
    promote_later: bool = setting(
        False,
        p.boolean,
        "verify now, record a pending promotion, switch nothing (bluegreen promote "
        "switches it later); also spelled --switch=manual",
        cli="--promote-later",
        aliases=("--switch=manual",),
        file=False,
        flag=True,
    )
    allow_missing_instance: tuple[str, ...] = setting(
        (),
        p.text_list,
        "NAME[,NAME]: switch the other HAProxy instances when these do not answer (down for "
        "maintenance); they are recorded to be brought in line when they return",
        cli="--allow-missing-instance",
        file=False,
    )
    allow_narrowed: bool = setting(
        False,
        p.boolean,
        "gate on a selection narrowed by the last run's state (--lf, --sw, --deselect); "
        "without it such a run is inconclusive",
        cli="--allow-narrowed",
        file=False,
        flag=True,
    )


@frozen
class ColorSettings(Frozen):
    """What one color is: how to reach it directly and which HAProxy servers carry it."""

    name: str
    api_url: str
    frontend_url: str | None
    servers: tuple[ServerRef, ...]
    services: tuple[str, ...] = ()  # its Compose services, deployed together


class _Response(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@frozen
class Answer(Frozen):
    """Which color (and version) a response says it came from; None where it does not say."""

    color: str | None
    version: str | None


@frozen
class Topology(Frozen):
    """The two colors, their servers, how a response names its color, and the live-color rule."""

    GROUP: ClassVar[str] = "topology"
    colors: tuple[str, str] = DEFAULT_COLORS
    color: Mapping[str, ColorSettings] = field(default_factory=dict)
    color_header: str = setting(
        COLOR_HEADER,
        p.header,
        "response header naming the color (else the JSON body's 'color')",
    )
    version_header: str = setting(
        VERSION_HEADER,
        p.header,
        "response header naming the version (else the JSON body's 'version')",
    )
    server_header: str = setting(
        SERVER_HEADER,
        p.header,
        "response header HAProxy adds naming the server that answered and its address "
        "('BACKEND/SERVER ADDR:PORT'): the gate maps it to the container or task and its image",
    )

    def other(self, color: str) -> str:
        first, second = self.colors
        return second if color == first else first

    def servers(self, color: str) -> tuple[ServerRef, ...]:
        return self.color[color].servers

    @property
    def all_servers(self) -> list[ServerRef]:
        return [ref for cfg in self.color.values() for ref in cfg.servers]

    def color_of(self, ref: ServerRef) -> str | None:
        for name, cfg in self.color.items():
            if ref in cfg.servers:
                return name
        return None

    def live_color(self, states: Mapping[ServerRef, ServerState]) -> str | None:
        """The color all of whose servers take traffic while the other's take none. Empty
        slots (no replica resolved into them) do not count; a color needs one filled server."""
        taking = {
            name: [
                states[ref].takes_traffic
                for ref in cfg.servers
                if ref in states and not states[ref].empty
            ]
            for name, cfg in self.color.items()
        }
        live = [name for name, flags in taking.items() if flags and all(flags)]
        if len(live) != 1:
            return None
        if any(taking[self.other(live[0])]):
            return None
        return live[0]

    def answered_by(self, response: _Response) -> Answer:
        """The color and version a response names: headers first, else its JSON body."""
        color = response.headers.get(self.color_header)
        version = response.headers.get(self.version_header)
        if color is None or version is None:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                color = color or _text_or_none(body.get("color"))
                version = version or _text_or_none(body.get("version"))
        return Answer(color, version)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@frozen
class Settings(Frozen):
    """The resolved settings of one run; lives in ``config.stash`` (see ``plugin.py``)."""

    run: RunSettings
    topology: Topology
    haproxy: HaproxySettings
    switching: SwitchingSettings
    compose: ComposeSettings
    swarm: SwarmSettings
    checks: ChecksSettings
    bake: BakeSettings
    canary: CanarySettings
    prometheus: PrometheusSettings
    promotion: PromotionSettings
    notify: NotifySettings
    drill: DrillSettings
    instances: tuple[Instance, ...]  # [instances.NAME], else the one of the top-level settings
    reports: ReportSettings
    state: StateSettings
    env_files: EnvFiles
    metrics: MetricsSettings
    dashboard: DashboardSettings
    config_file: Path | None
    sources: Mapping[str, str] = field(repr=False)
    extensions: Mapping[type[Any], Any] = field(default_factory=dict, repr=False)

    def load_secrets(self) -> Secrets:
        """What no output may show: ``secrets.env``, the ``notify`` URLs' tokens, and the
        password and query values of every URL setting (each value the ``url`` parsers made,
        in every group: the colors', the instances', other plugins')."""
        urls = secrets_of_urls(self)
        return Secrets.load(self.env_files.secrets, also={**self.notify.secrets, **urls})

    def haproxies(self) -> Haproxies:
        """Every HAProxy instance with its Runtime API client, as one group."""
        return Haproxies(self.instances, missing_ok=self.run.allow_missing_instance)

    @property
    def blames(self) -> bool:
        """A failed check of the target is tried on the other color (``blame``)."""
        blame = self.checks.blame
        return blame == "on" or (blame == "auto" and (self.run.switch or self.run.rollback))

    @property
    def target(self) -> str | None:
        """The one color this run is about, or None for ``--env all|shared``."""
        env = self.run.env
        return env if env in self.topology.colors else None

    @property
    def gating(self) -> bool:
        """A run that may change something: it takes the lock and ends in a decision."""
        return self.run.switch or self.run.rollback or self.run.deploy is not None

    def selected_colors(self) -> tuple[str, ...]:
        env = self.run.env
        if env == "all":
            return self.topology.colors
        if env == "shared":
            return ()
        return (env,)

    def extension(self, group: type[T]) -> T:
        """A settings group added by another plugin (``pytest_bluegreen_settings_groups``)."""
        try:
            value: T = self.extensions[group]
        except KeyError:
            raise LookupError(
                f"settings group {getattr(group, 'GROUP', group.__name__)} is not registered"
            ) from None
        return value
