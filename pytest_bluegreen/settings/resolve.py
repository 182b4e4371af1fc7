"""Resolve every setting once: CLI > environment variable > pytest ini > file > default.

Every value remembers where it came from (``sources``), and :func:`describe` shows that in
pytest's report header. Nothing here does I/O beyond reading the settings file. The file's
tables are read in ``tables.py``, the options checked together in ``crosschecks.py``; this
module hands on their public names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from pytest_bluegreen.frozen import Frozen, frozen

from . import parsers as p
from .crosschecks import check_missing, check_mode, check_tls
from .deployment import (
    ComposeSettings,
    EnvFiles,
    HaproxySettings,
    PromotionSettings,
    StateSettings,
    SwarmSettings,
    SwitchingSettings,
)
from .files import SettingsError, find_settings_file
from .judging import (
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
from .model import RunSettings, Settings, Topology
from .options import Option, option_table
from .tables import (
    COLOR_KEYS,
    DEFAULT_THRESHOLDS,
    DRILL_EXPECTATIONS,
    INSTANCE_KEYS,
    first_instance,
    resolve_bake_thresholds,
    resolve_compare,
    resolve_compare_prometheus,
    resolve_drill,
    resolve_instances,
    resolve_promql,
    resolve_thresholds,
    resolve_topology,
)

__all__ = [
    "COLOR_KEYS",
    "CONFIG_OPTION",
    "CORE_GROUPS",
    "DEFAULT_THRESHOLDS",
    "DRILL_EXPECTATIONS",
    "INSTANCE_KEYS",
    "describe",
    "resolve",
]

CORE_GROUPS: tuple[type[Any], ...] = (
    RunSettings,
    Topology,
    HaproxySettings,
    SwitchingSettings,
    ComposeSettings,
    SwarmSettings,
    ChecksSettings,
    BakeSettings,
    CanarySettings,
    PrometheusSettings,
    PromotionSettings,
    NotifySettings,
    DrillSettings,
    ReportSettings,
    StateSettings,
    EnvFiles,
    MetricsSettings,
    DashboardSettings,
)
CONFIG_OPTION = Option(
    key="config",
    group="files",
    parse=p.text,
    default=None,
    help="settings file (default: bluegreen.toml, else [tool.bluegreen] in pyproject.toml, "
    "in the folder pytest runs in or the nearest folder above it that has one)",
    cli="--bluegreen-config",
    file=False,
)
TABLES = (
    "colors",
    "thresholds",
    "bake_thresholds",
    "bake_prometheus",
    "compare",
    "compare_prometheus",
    "prometheus_checks",
    "drill",
    "instances",
)


def resolve(
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    ini: Mapping[str, str],
    here: Path,
    *,
    extra_groups: Sequence[type[Any]] = (),
    near: Sequence[Path] = (),
    ini_dir: Path | None = None,
) -> Settings:
    """Resolve every setting once. ``cli`` holds only the values given on the command line
    (key -> value, ``None`` meaning not given); ``ini`` the non-empty pytest ini values;
    ``here`` the folder the run starts from (pytest's invocation folder); ``near`` the test
    paths pytest was given and ``ini_dir`` the ini file's folder (for finding the settings
    file, files.py); ``extra_groups`` the groups other plugins add
    (``pytest_bluegreen_settings_groups``)."""
    explicit, explicit_source = _Layers(cli, environ, ini).pick(CONFIG_OPTION)
    from_ini = explicit_source.startswith("ini ")
    config_file, data = find_settings_file(
        explicit,
        here,
        explicit_source,
        base=ini_dir if from_ini else here,
        near=near,
    )
    file_label = f"file {config_file.name}" if config_file else "file"
    layers = _Layers(cli, environ, ini, data, file_label)
    base = config_file.parent if config_file else here

    groups = (*CORE_GROUPS, *extra_groups)
    table = option_table(groups)
    known = {key for key, o in table.items() if o.file} | set(TABLES)
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(
            f"bluegreen: unknown setting {unknown[0]!r} in {config_file} "
            f"(known: {', '.join(sorted(known))})"
        )

    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, option in table.items():
        values[key], sources[key] = layers.value(option, base)

    if values["promote_later"]:  # --switch=manual: a switch, made later by bluegreen promote
        values["switch"], sources["switch"] = True, sources["promote_later"]
    topology = resolve_topology(data.get("colors"), environ, file_label, values, sources)
    check_mode(values, sources, topology.colors)
    check_tls(values, sources)
    thresholds = resolve_thresholds(data, file_label, sources)

    def build(group: type[Any], **extra: Any) -> Any:
        own = {o.key: values[o.key] for o in table.values() if o.group == group.GROUP}
        return group(**own, **extra)

    haproxy, switching, run = build(HaproxySettings), build(SwitchingSettings), build(RunSettings)
    instances = resolve_instances(
        data, haproxy, switching, base=base, file_label=file_label, sources=sources
    )
    check_missing(instances, run.allow_missing_instance, sources)
    if "instances" in data:  # the first instance stands for HAProxy where one is meant
        haproxy, switching = first_instance(instances[0], haproxy, switching, sources)
    compare_prometheus = resolve_compare_prometheus(data, file_label, sources)
    bake_prometheus = resolve_promql(data, "bake_prometheus", file_label, sources)
    prometheus_checks = resolve_promql(data, "prometheus_checks", file_label, sources)
    promql_tables = [
        name
        for name, table in (
            ("prometheus_checks", prometheus_checks),
            ("bake_prometheus", bake_prometheus),
            ("compare_prometheus", compare_prometheus),
        )
        if table
    ]
    if promql_tables and values["prometheus_url"] is None:
        raise SettingsError(
            f"{file_label}: [{promql_tables[0]}] needs prometheus_url (where Prometheus' HTTP "
            "API answers, e.g. http://127.0.0.1:10200)"
        )
    return Settings(
        run=run,
        topology=topology,
        haproxy=haproxy,
        switching=switching,
        compose=build(ComposeSettings),
        swarm=build(SwarmSettings),
        checks=build(
            ChecksSettings,
            thresholds=thresholds,
            compare=resolve_compare(data, file_label, sources),
            compare_prometheus=compare_prometheus,
        ),
        bake=build(
            BakeSettings,
            thresholds=resolve_bake_thresholds(data, file_label, sources),
            prometheus=tuple(bake_prometheus.values()),
        ),
        canary=build(CanarySettings),
        prometheus=build(
            PrometheusSettings,
            checks=prometheus_checks,
        ),
        drill=build(DrillSettings, variants=resolve_drill(data, file_label, sources)),
        instances=instances,
        promotion=build(PromotionSettings),
        notify=build(NotifySettings),
        reports=build(ReportSettings),
        state=build(StateSettings),
        env_files=build(EnvFiles, colors=topology.colors),
        metrics=build(MetricsSettings),
        dashboard=build(DashboardSettings),
        config_file=config_file,
        sources=sources,
        extensions={group: build(group) for group in extra_groups},
    )


@frozen
class _Layers(Frozen):
    """Where values come from, highest first: CLI, environment, pytest ini, the file."""

    cli: Mapping[str, Any]
    environ: Mapping[str, str]
    ini: Mapping[str, str]
    data: Mapping[str, Any] = field(default_factory=dict)
    file_label: str = "file"

    def pick(self, option: Option) -> tuple[Any, str]:
        """The raw value from the highest layer that gives one, and that layer's name."""
        given = self.cli.get(option.key)
        if option.cli and given is not None:
            return given, f"cli {option.cli}"
        if option.env and self.environ.get(option.env_name, "") != "":
            return self.environ[option.env_name], f"env {option.env_name}"
        if option.ini and self.ini.get(option.ini_name, "") != "":
            return self.ini[option.ini_name], f"ini {option.ini_name}"
        if option.file and option.key in self.data:
            return self.data[option.key], f"{self.file_label} {option.key}"
        return option.default, "default"

    def value(self, option: Option, base: Path) -> tuple[Any, str]:
        """The parsed value (a relative path made relative to ``base``) and its source."""
        raw, source = self.pick(option)
        if source == "default":
            value = raw
        else:
            try:
                value = option.parse(raw)
            except ValueError as exc:
                # "drain_timeout expected seconds ...", "runtime_api: Runtime API address ..."
                joiner = ": " if str(exc)[:1].isupper() else " "
                raise SettingsError(
                    f"bluegreen: {option.key}{joiner}{exc} (from {source})"
                ) from None
        if option.path and isinstance(value, Path) and not value.is_absolute():
            value = base / value
        return value, source


def describe(settings: Settings) -> list[str]:
    """Report-header lines: each value and where it came from. No secrets are held here."""
    shown = {
        "env": settings.run.env,
        "runtime_api": str(settings.haproxy.runtime_api),
        "routed_api_url": settings.switching.routed_api_url,
        "drain_timeout": settings.switching.drain_timeout,
        "verify_timeout": settings.switching.verify_timeout,
        "http_timeout": settings.checks.http_timeout,
        "state_file": settings.state.state_file,
        "deployment_tag": settings.run.deployment_tag,
    }
    lines = [
        "bluegreen: " + ", ".join(f"{k}={v} ({settings.sources[k]})" for k, v in shown.items()),
        "bluegreen colors: "
        + "; ".join(
            f"{c.name} api={c.api_url} servers={','.join(map(str, c.servers))} "
            f"({settings.sources[f'colors.{c.name}.api_url']})"
            for c in settings.topology.color.values()
        ),
    ]
    hooks = settings.notify.notify
    if hooks:  # shown as scheme://host/…: the rest of a webhook URL is its secret
        lines.append(
            f"bluegreen notify: {', '.join(map(str, hooks))} ({settings.sources['notify']})"
        )
    if settings.gating:
        run = settings.run
        mode = "rollback" if run.rollback else "switch" if run.switch else "deploy only"
        lines.append(f"bluegreen gate: {mode}{' (dry run)' if run.dry_run else ''}")
    return lines


def all_options(extra_groups: Iterable[type[Any]] = ()) -> list[Option]:
    """Every option, the settings file's first (for pytest's option group and the docs)."""
    return [CONFIG_OPTION, *option_table((*CORE_GROUPS, *extra_groups)).values()]
