"""The settings file's tables, each read and checked: ``[colors]`` (the topology, with the
``BLUEGREEN_<COLOR>_<KEY>`` variables), ``[thresholds]``, ``[bake_thresholds]``,
``[compare]``, the PromQL tables, ``[drill]`` and ``[instances]``, each parsed once into typed
values. The grammars of the judging tables are judge/'s, imported here at the top: the
thresholds' and the bake's (judge/thresholds.py), the relative rules of ``[compare]``
(judge/comparerules.py), the PromQL checks and comparisons (judge/queries.py); none of them
imports the load, the statistics or the bake. A table's source goes into ``sources`` as the
options' do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.haproxy.instances import DEFAULT_INSTANCE, Instance
from pytest_bluegreen.judge.comparerules import CompareRule, parse_compare_table
from pytest_bluegreen.judge.queries import (
    PromQLCheck,
    PromQLComparison,
    parse_checks_table,
    parse_comparisons_table,
)
from pytest_bluegreen.judge.thresholds import (
    BAKE_DEFAULTS,
    BakeThreshold,
    Threshold,
    ThresholdError,
    parse_bake_thresholds,
)
from pytest_bluegreen.judge.thresholds import parse_table as parse_thresholds

from . import parsers as p
from .crosschecks import check_tls
from .deployment import HaproxySettings, SwitchingSettings
from .files import SettingsError
from .model import DEFAULT_COLORS, ColorSettings, Topology
from .options import ENV_PREFIX

__all__ = [
    "COLOR_KEYS",
    "DEFAULT_THRESHOLDS",
    "DRILL_EXPECTATIONS",
    "INSTANCE_KEYS",
    "first_instance",
    "resolve_bake_thresholds",
    "resolve_compare",
    "resolve_compare_prometheus",
    "resolve_drill",
    "resolve_instances",
    "resolve_promql",
    "resolve_thresholds",
    "resolve_topology",
]

# k6-style limits per endpoint for the perf checks; a [thresholds] table replaces them
DEFAULT_THRESHOLDS: Mapping[str, list[str]] = {
    "/health": ["p(95)<300", "rate<0.01"],
    "/version": ["p(95)<300", "rate<0.01"],
}
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


def resolve_thresholds(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, tuple[Threshold, ...]]:
    if "thresholds" in data:
        raw: object = data["thresholds"]
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


def resolve_bake_thresholds(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> tuple[BakeThreshold, ...]:
    """A ``[bake_thresholds]`` table parsed (judge/thresholds.py's grammar); without one, the
    bake's defaults (``DEFAULT_BAKE_THRESHOLDS``, parsed: ``BAKE_DEFAULTS``)."""
    if "bake_thresholds" not in data:
        sources["bake_thresholds"] = "default"
        return BAKE_DEFAULTS
    sources["bake_thresholds"] = f"{file_label} bake_thresholds"
    try:
        return parse_bake_thresholds(data["bake_thresholds"])
    except ValueError as exc:
        raise SettingsError(
            f"bluegreen: bake_thresholds: {exc} (from {sources['bake_thresholds']})"
        ) from None


def resolve_compare(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, tuple[CompareRule, ...]]:
    if "compare" not in data:
        sources["compare"] = "default"
        return {}
    sources["compare"] = f"{file_label} compare"
    try:
        return parse_compare_table(data["compare"])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {exc} (from {sources['compare']})") from None


def resolve_promql(
    data: Mapping[str, Any], table: str, file_label: str, sources: dict[str, str]
) -> dict[str, PromQLCheck]:
    """``[prometheus_checks]`` and ``[bake_prometheus]`` (``{interval}`` too, no ranges): PromQL
    queries with their thresholds (judge/queries.py)."""
    if table not in data:
        sources[table] = "default"
        return {}
    sources[table] = f"{file_label} {table}"
    try:
        if table == "bake_prometheus":
            return parse_checks_table(data[table], placeholders=("color", "interval"), ranges=False)
        return parse_checks_table(data[table])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {table}: {exc} (from {sources[table]})") from None


def resolve_compare_prometheus(
    data: Mapping[str, Any], file_label: str, sources: dict[str, str]
) -> dict[str, PromQLComparison]:
    """``[compare_prometheus]``: PromQL queries per color with their rules (judge/queries.py)."""
    table = "compare_prometheus"
    if table not in data:
        sources[table] = "default"
        return {}
    sources[table] = f"{file_label} {table}"
    try:
        return parse_comparisons_table(data[table])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {table}: {exc} (from {sources[table]})") from None


# canary-failed: passes the checks, caught by a real canary on routed traffic (drill_canary)
DRILL_EXPECTATIONS = (
    "failed",
    "inconclusive",
    "refused",
    "deploy-failed",
    "switch",
    "canary-failed",
)


def resolve_drill(
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


def resolve_instances(
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
    name: str, raw: object, haproxy: HaproxySettings, base: Path, where: str
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
    check_tls(
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


def first_instance(
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


def _color_names(table: object, file_label: str) -> tuple[tuple[str, str], str]:
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


def resolve_topology(
    table: object,
    environ: Mapping[str, str],
    file_label: str,
    values: Mapping[str, Any],
    sources: dict[str, str],
) -> Topology:
    names, sources["colors"] = _color_names(table, file_label)
    entries = table if isinstance(table, dict) else {}
    result: dict[str, ColorSettings] = {}
    owner: dict[ServerRef, str] = {}
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
    name: str, entry: object, environ: Mapping[str, str], file_label: str, sources: dict[str, str]
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
