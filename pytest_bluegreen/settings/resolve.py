"""Resolve every setting once: CLI > environment variable > pytest ini > file > default.

Every value remembers where it came from (``sources``), and :func:`describe` shows that in
pytest's report header. Nothing here does I/O beyond reading the settings file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.haproxy.instances import DEFAULT_INSTANCE, Instance
from pytest_bluegreen.judge.thresholds import ThresholdError
from pytest_bluegreen.judge.thresholds import parse_table as parse_thresholds

from . import parsers as p
from .files import SettingsError, find_settings_file
from .model import (
    DEFAULT_COLORS,
    BakeSettings,
    ChecksSettings,
    ColorSettings,
    ComposeSettings,
    DrillSettings,
    EnvFiles,
    HaproxySettings,
    MetricsSettings,
    NotifySettings,
    PrometheusSettings,
    PromotionSettings,
    ReportSettings,
    RunSettings,
    Settings,
    StateSettings,
    SwarmSettings,
    SwitchingSettings,
    Topology,
)
from .options import ENV_PREFIX, Option, option_table
from .parsers import SELECTIONS_EXTRA

__all__ = ["CONFIG_OPTION", "CORE_GROUPS", "describe", "resolve"]

CORE_GROUPS: tuple[type[Any], ...] = (
    RunSettings,
    Topology,
    HaproxySettings,
    SwitchingSettings,
    ComposeSettings,
    SwarmSettings,
    ChecksSettings,
    BakeSettings,
    PrometheusSettings,
    PromotionSettings,
    NotifySettings,
    DrillSettings,
    ReportSettings,
    StateSettings,
    EnvFiles,
    MetricsSettings,
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
# k6-style limits per endpoint for the perf checks; a [thresholds] table replaces them
DEFAULT_THRESHOLDS: Mapping[str, list[str]] = {
    "/health": ["p(95)<300", "rate<0.01"],
    "/version": ["p(95)<300", "rate<0.01"],
}
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
COLOR_KEYS = ("api_url", "frontend_url", "servers", "services")
# the seed's ports and HAProxy server names for the two default colors
_COLOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "blue": {
        "api_url": "http://127.0.0.1:21010",
        "frontend_url": None,
        "servers": ["api_backend/blue-api", "frontend_backend/blue-frontend"],
    },
    "green": {
        "api_url": "http://127.0.0.1:21011",
        "frontend_url": None,
        "servers": ["api_backend/green-api", "frontend_backend/green-frontend"],
    },
}


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
    topology = _resolve_topology(data.get("colors"), environ, file_label, values, sources)
    _check_mode(values, sources, topology.colors)
    _check_tls(values, sources)
    thresholds = _resolve_thresholds(data, file_label, sources)

    def build(group: type[Any], **extra: Any) -> Any:
        own = {o.key: values[o.key] for o in table.values() if o.group == group.GROUP}
        return group(**own, **extra)

    haproxy, switching, run = build(HaproxySettings), build(SwitchingSettings), build(RunSettings)
    instances = _resolve_instances(
        data, haproxy, switching, base=base, file_label=file_label, sources=sources
    )
    _check_missing(instances, run.allow_missing_instance, sources)
    if "instances" in data:  # the first instance stands for HAProxy where one is meant
        haproxy, switching = _first_instance(instances[0], haproxy, switching, sources)
    compare_prometheus = _resolve_promql(data, "compare_prometheus", file_label, sources)
    bake_prometheus = _resolve_promql(data, "bake_prometheus", file_label, sources)
    prometheus_checks = _resolve_promql(data, "prometheus_checks", file_label, sources)
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
            compare=_resolve_compare(data, file_label, sources),
            compare_prometheus=compare_prometheus,
        ),
        bake=build(
            BakeSettings,
            thresholds=_resolve_bake_thresholds(data, file_label, sources),
            prometheus=tuple(bake_prometheus.values()),
        ),
        prometheus=build(
            PrometheusSettings,
            checks=prometheus_checks,
        ),
        drill=build(DrillSettings, variants=_resolve_drill(data, file_label, sources)),
        instances=instances,
        promotion=build(PromotionSettings),
        notify=build(NotifySettings),
        reports=build(ReportSettings),
        state=build(StateSettings),
        env_files=build(EnvFiles, colors=topology.colors),
        metrics=build(MetricsSettings),
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


def _check_mode(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """The run's options must make sense together."""
    _check_choices(values, sources, colors)
    _check_switching(values, sources, colors)
    _check_deploy(values, sources, colors)
    _check_gating_only(values, sources)


def _one_color(colors: Sequence[str]) -> str:
    return f"--env {' or --env '.join(colors)}"


def _check_choices(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """``env`` and ``compare_baseline`` name one of the colors (or a selection they allow)."""
    env = values["env"]
    allowed = (*colors, *SELECTIONS_EXTRA)
    if env not in allowed:
        raise SettingsError(
            f"bluegreen: --env must be one of {'|'.join(allowed)}, got {env!r} "
            f"(from {sources['env']})"
        )
    baseline = values["compare_baseline"]
    if baseline not in ("live", *colors):
        raise SettingsError(
            f"bluegreen: compare_baseline must be live|{'|'.join(colors)}, got {baseline!r} "
            f"(from {sources['compare_baseline']})"
        )


def _check_switching(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """One of --switch and --rollback; a switch to one color, a rollback verifying one."""
    env = values["env"]
    if values["promote_later"] and values["rollback"]:
        raise SettingsError("bluegreen: --switch=manual cannot be combined with --rollback")
    if values["switch"] and values["rollback"]:
        raise SettingsError("bluegreen: --switch and --rollback cannot be combined")
    if values["switch"] and env not in colors:
        raise SettingsError(
            f"bluegreen: --switch needs one target color ({_one_color(colors)}), "
            f"got --env {env} (from {sources['env']})"
        )
    if values["rollback"] and env == "shared":
        raise SettingsError("bluegreen: --rollback verifies a color; --env shared has none")


def _check_deploy(
    values: Mapping[str, Any], sources: Mapping[str, str], colors: Sequence[str]
) -> None:
    """--deploy deploys one color, not in a rollback or a dry run; --force-deploy needs it."""
    env = values["env"]
    if values["deploy"] is not None:
        if env not in colors:
            raise SettingsError(
                f"bluegreen: --deploy needs one color ({_one_color(colors)}), "
                f"got --env {env} (from {sources['env']})"
            )
        if values["rollback"] or values["dry_run"]:
            flag = "--rollback" if values["rollback"] else "--dry-run"
            raise SettingsError(f"bluegreen: --deploy cannot be combined with {flag}")
    elif values["force_deploy"]:
        raise SettingsError("bluegreen: --force-deploy only makes sense with --deploy")


def _check_gating_only(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """--bake and a --dry-run given on the command line need --switch or --rollback."""
    gating = values["switch"] or values["rollback"]
    if values["bake_seconds"] and not gating:
        raise SettingsError(
            f"bluegreen: --bake watches a switch; give --switch or --rollback "
            f"(bake_seconds from {sources['bake_seconds']})"
        )
    # dry_run kept in a file, the ini or the environment (never switch for real from here)
    # holds for the gating runs, and says nothing about the others
    dry_from_cli = sources["dry_run"].startswith("cli ")
    if values["dry_run"] and dry_from_cli and not gating:
        raise SettingsError(
            "bluegreen: --dry-run only makes sense with --switch or --rollback "
            f"(from {sources['dry_run']})"
        )


def _check_tls(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """A tls:// Runtime API needs our certificate, its key and HAProxy's CA, each readable."""
    if not values["runtime_api"].tls:
        return
    for key in ("runtime_api_cert", "runtime_api_key", "runtime_api_ca"):
        path = values[key]
        if path is None:
            raise SettingsError(
                f"bluegreen: runtime_api {values['runtime_api']} is TLS: {key} is required "
                f"(runtime_api from {sources['runtime_api']})"
            )
        if not path.is_file():
            raise SettingsError(f"bluegreen: {key} {path} does not exist (from {sources[key]})")


def _resolve_thresholds(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, Any]:
    if "thresholds" in data:
        raw: Any = data["thresholds"]
        sources["thresholds"] = f"{file_label} thresholds"
    else:
        raw = DEFAULT_THRESHOLDS
        sources["thresholds"] = "default"
    try:
        return parse_thresholds(raw)
    except ThresholdError as exc:
        raise SettingsError(
            f"bluegreen: thresholds: {exc} (from {sources['thresholds']})"
        ) from None


def _resolve_bake_thresholds(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> tuple[Any, ...] | None:
    """A ``[bake_thresholds]`` table parsed (judge/bake.py's grammar); None without one: the
    bake's defaults, which a bake reads from judge/bake.py itself (every session resolves its
    settings, and importing the bake for them was a measurable part of the plugin's cost)."""
    if "bake_thresholds" not in data:
        sources["bake_thresholds"] = "default"
        return None
    from pytest_bluegreen.judge.bake import parse_bake_thresholds  # noqa: PLC0415 - the bake's grammar

    sources["bake_thresholds"] = f"{file_label} bake_thresholds"
    try:
        return parse_bake_thresholds(data["bake_thresholds"])
    except ValueError as exc:
        raise SettingsError(
            f"bluegreen: bake_thresholds: {exc} (from {sources['bake_thresholds']})"
        ) from None


def _resolve_compare(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, tuple[Any, ...]]:
    if "compare" not in data:
        sources["compare"] = "default"
        return {}
    from pytest_bluegreen.judge.compare import parse_compare_table  # noqa: PLC0415 - its own grammar

    sources["compare"] = f"{file_label} compare"
    try:
        return parse_compare_table(data["compare"])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {exc} (from {sources['compare']})") from None


def _resolve_promql(
    data: Mapping[str, Any], table: str, file_label: str, sources: dict[str, str]
) -> dict[str, Any]:
    """``[prometheus_checks]``, ``[bake_prometheus]`` (``{interval}`` too, no ranges) and
    ``[compare_prometheus]``: PromQL queries with their thresholds or rules (judge/promql.py)."""
    if table not in data:
        sources[table] = "default"
        return {}
    from pytest_bluegreen.judge import promql  # noqa: PLC0415 - its own grammar

    sources[table] = f"{file_label} {table}"
    try:
        if table == "compare_prometheus":
            return promql.parse_comparisons_table(data[table])
        if table == "bake_prometheus":
            return promql.parse_checks_table(
                data[table], placeholders=("color", "interval"), ranges=False
            )
        return promql.parse_checks_table(data[table])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {table}: {exc} (from {sources[table]})") from None


DRILL_EXPECTATIONS = ("failed", "inconclusive", "refused", "deploy-failed", "switch")


def _resolve_drill(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, str]:
    """``[drill] "v1.2.0-broken" = "failed"``: each variant's tag and the verdict it must get."""
    table = data.get("drill", {})
    sources["drill"] = f"{file_label} drill" if "drill" in data else "default"
    if not isinstance(table, Mapping):
        raise SettingsError(
            f'bluegreen: drill must be a table of "TAG" = "VERDICT" ({sources["drill"]})'
        )
    variants: dict[str, str] = {}
    for tag, expected in table.items():
        try:
            p.image_tag(tag)
        except ValueError as exc:
            raise SettingsError(f"bluegreen: drill: {tag!r} {exc} ({sources['drill']})") from None
        if expected not in DRILL_EXPECTATIONS:
            raise SettingsError(
                f"bluegreen: drill: {tag} expects {expected!r}, not one of "
                f"{'|'.join(DRILL_EXPECTATIONS)} ({sources['drill']})"
            )
        variants[str(tag)] = str(expected)
    return variants


INSTANCE_KEYS = (
    "runtime_api",
    "routed_api_url",
    "routed_frontend_url",
    "haproxy_state_file",
    "runtime_api_cert",
    "runtime_api_key",
    "runtime_api_ca",
)
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _resolve_instances(
    data: Mapping[str, Any],
    haproxy: HaproxySettings,
    switching: SwitchingSettings,
    *,
    base: Path,
    file_label: str,
    sources: dict[str, str],
) -> tuple[Instance, ...]:
    """``[instances.NAME]`` tables (each key not given falls back to the top-level one's), else
    the one instance of the top-level settings."""
    table = data.get("instances")
    if table is None:
        sources["instances"] = "default (the top-level runtime_api)"
        return (
            Instance(
                DEFAULT_INSTANCE,
                haproxy.runtime_api,
                switching.routed_api_url,
                switching.routed_frontend_url,
                haproxy.haproxy_state_file,
                haproxy.tls,
                haproxy.runtime_api_timeout,
            ),
        )
    where = sources["instances"] = f"{file_label} instances"
    if not isinstance(table, Mapping) or not table:
        raise SettingsError(f"bluegreen: instances must be tables [instances.NAME] ({where})")
    instances = [
        _resolve_instance(str(name), raw, haproxy, base, where) for name, raw in table.items()
    ]
    addresses = [str(i.runtime_api) for i in instances]
    shared = sorted({a for a in addresses if addresses.count(a) > 1})
    if shared:
        raise SettingsError(f"bluegreen: two instances share runtime_api {shared[0]} ({where})")
    return tuple(instances)


def _resolve_instance(
    name: str, raw: Any, haproxy: HaproxySettings, base: Path, where: str
) -> Instance:
    label = f"[instances.{name}]"
    if not _INSTANCE_NAME.match(name):
        raise SettingsError(f"bluegreen: instance name {name!r} is not a plain name ({where})")
    if not isinstance(raw, Mapping):
        raise SettingsError(f"bluegreen: {label} must be a table ({where})")
    unknown = sorted(set(raw) - set(INSTANCE_KEYS))
    if unknown:
        raise SettingsError(
            f"bluegreen: {label}: unknown key {unknown[0]!r} "
            f"(known: {', '.join(INSTANCE_KEYS)}) ({where})"
        )
    for required in ("runtime_api", "routed_api_url"):
        if required not in raw:
            raise SettingsError(f"bluegreen: {label} needs {required} ({where})")

    def value(key: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(raw[key])
        except ValueError as exc:
            raise SettingsError(f"bluegreen: {label} {key}: {exc} ({where})") from None

    def path(key: str) -> Path | None:
        if key not in raw:
            given: Path | None = getattr(haproxy, key)
            return given
        found: Path = value(key, p.path)
        return found if found.is_absolute() else base / found

    files = replace(
        haproxy,
        runtime_api=value("runtime_api", p.runtime_api),
        runtime_api_cert=path("runtime_api_cert"),
        runtime_api_key=path("runtime_api_key"),
        runtime_api_ca=path("runtime_api_ca"),
    )
    _check_tls(
        {k: getattr(files, k) for k in ("runtime_api", *INSTANCE_KEYS[4:])},
        dict.fromkeys(("runtime_api", *INSTANCE_KEYS[4:]), f"{where}.{name}"),
    )
    return Instance(
        name,
        files.runtime_api,
        value("routed_api_url", p.url),
        value("routed_frontend_url", p.url) if "routed_frontend_url" in raw else None,
        path("haproxy_state_file"),
        files.tls,
        haproxy.runtime_api_timeout,
    )


def _first_instance(
    first: Instance,
    haproxy: HaproxySettings,
    switching: SwitchingSettings,
    sources: dict[str, str],
) -> tuple[HaproxySettings, SwitchingSettings]:
    """With ``[instances.NAME]`` tables, a top-level runtime_api would be ambiguous; the first
    instance is the one the fixtures (``haproxy``, ``routed_http``) and the probe use."""
    if sources["runtime_api"] != "default":
        raise SettingsError(
            f"bluegreen: runtime_api ({sources['runtime_api']}) names one HAProxy, but "
            f"[instances] names several ({sources['instances']}): give each Runtime API in "
            "its [instances.NAME] table"
        )
    tls = first.tls
    haproxy = replace(
        haproxy,
        runtime_api=first.runtime_api,
        haproxy_state_file=first.state_file,
        runtime_api_cert=tls.cert if tls else haproxy.runtime_api_cert,
        runtime_api_key=tls.key if tls else haproxy.runtime_api_key,
        runtime_api_ca=tls.ca if tls else haproxy.runtime_api_ca,
    )
    switching = replace(
        switching,
        routed_api_url=first.routed_api_url,
        routed_frontend_url=first.routed_frontend_url or switching.routed_frontend_url,
    )
    label = f"{sources['instances']}.{first.name}"
    for key in ("runtime_api", "haproxy_state_file", "routed_api_url"):
        sources[key] = label
    return haproxy, switching


def _check_missing(
    instances: Sequence[Instance], missing: Sequence[str], sources: Mapping[str, str]
) -> None:
    names = [i.name for i in instances]
    unknown = [m for m in missing if m not in names]
    if unknown:
        raise SettingsError(
            f"bluegreen: allow_missing_instance {unknown[0]!r} is not an instance "
            f"(instances: {', '.join(names)}; from {sources['allow_missing_instance']})"
        )


def _color_names(table: Any, file_label: str) -> tuple[tuple[str, str], str]:
    if table is None:
        names: tuple[str, ...] = DEFAULT_COLORS
        source = "default"
    elif not isinstance(table, dict):
        raise SettingsError(f"bluegreen: 'colors' must be a table of two colors ({file_label})")
    else:
        names = tuple(table)
        source = f"{file_label} colors"
    if len(names) != 2:
        raise SettingsError(
            f"bluegreen: exactly two colors are needed, got {len(names)}: "
            f"{', '.join(names) or 'none'} ({source})"
        )
    for name in names:
        if not p.is_color_name(name):
            raise SettingsError(f"bluegreen: {name!r} is not a usable color name ({source})")
    return (names[0], names[1]), source


def _resolve_topology(
    table: Any,
    environ: Mapping[str, str],
    file_label: str,
    values: Mapping[str, Any],
    sources: dict[str, str],
) -> Topology:
    names, sources["colors"] = _color_names(table, file_label)
    entries = table if isinstance(table, dict) else {}
    result: dict[str, ColorSettings] = {}
    owner: dict[Any, str] = {}
    for name in names:
        color = _resolve_color(name, entries.get(name, {}), environ, file_label, sources)
        for ref in color.servers:
            if ref in owner:
                first = owner[ref]
                where = f"twice for {name}" if first == name else f"for both {first} and {name}"
                also = "" if first == name else f" and {sources[f'colors.{name}.servers']}"
                raise SettingsError(
                    f"bluegreen: server {ref} is listed {where} "
                    f"(from {sources[f'colors.{first}.servers']}{also})"
                )
            owner[ref] = name
        result[name] = color
    return Topology(
        colors=names,
        color=result,
        color_header=values["color_header"],
        version_header=values["version_header"],
        server_header=values["server_header"],
    )


def _resolve_color(
    name: str, entry: Any, environ: Mapping[str, str], file_label: str, sources: dict[str, str]
) -> ColorSettings:
    if not isinstance(entry, dict):
        raise SettingsError(f"bluegreen: colors.{name} must be a table ({file_label})")
    unknown = sorted(set(entry) - set(COLOR_KEYS))
    if unknown:
        raise SettingsError(
            f"bluegreen: unknown setting colors.{name}.{unknown[0]} ({file_label}; "
            f"known: {', '.join(COLOR_KEYS)})"
        )
    picked: dict[str, Any] = {}
    for key in COLOR_KEYS:
        picked[key], sources[f"colors.{name}.{key}"] = _color_value(
            name, key, entry, environ, file_label
        )

    def parsed(key: str, parse: Callable[[Any], Any]) -> Any:
        label = f"colors.{name}.{key}"
        try:
            return parse(picked[key])
        except ValueError as exc:
            raise SettingsError(f"bluegreen: {label}: {exc} (from {sources[label]})") from None

    return ColorSettings(
        name=name,
        api_url=parsed("api_url", p.url),
        frontend_url=parsed("frontend_url", p.optional(p.url)),
        servers=parsed("servers", p.servers),
        services=parsed("services", p.services),
    )


def _color_value(
    name: str, key: str, entry: Mapping[str, Any], environ: Mapping[str, str], file_label: str
) -> tuple[Any, str]:
    """A color's setting ``key`` and where it came from: the environment, the file's
    ``[colors.NAME]`` table, or a default (the services' names, the blue/green defaults, no
    frontend URL); required otherwise."""
    env_name = f"{ENV_PREFIX}{name.upper().replace('-', '_')}_{key.upper()}"
    label = f"colors.{name}.{key}"
    if environ.get(env_name, "") != "":
        raw: Any = environ[env_name]
        if key in {"servers", "services"}:
            raw = [s.strip() for s in raw.split(",") if s.strip()]
        return raw, f"env {env_name}"
    if key in entry:
        return entry[key], f"{file_label} {label}"
    if key == "services":
        return [f"{name}-backend", f"{name}-frontend", f"{name}-agents"], "default"
    if name in _COLOR_DEFAULTS:
        return _COLOR_DEFAULTS[name][key], "default"
    if key == "frontend_url":
        return None, "default"
    raise SettingsError(f"bluegreen: {label} is required ({file_label})")


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
