"""``bluegreen init``: from an existing HAProxy configuration to ``bluegreen.toml`` and a starter
``checks/``.

:func:`plan` decides from the parsed configuration (``haproxy/config.py``) what the settings are:
the two colors' servers (:mod:`.colors`), the Runtime API, the routed URL, each color's own URL
(:mod:`.routes`), the health path, the preview route to add (:mod:`.preview`). Every value says
where it came from; a guess and anything missing is a line of the plan. :func:`render_settings`
writes the plan as TOML, :func:`proposed_files` what to add to the HAProxy configuration,
:func:`starter_files` is the starter suite (``pytest_bluegreen/starter/checks``), :func:`write`
writes them all or, when one exists, nothing. No I/O here but :func:`write` and reading the
starter files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.haproxy.configmodel import FROM_ENVIRONMENT, HaproxyConfig, Proxy
from pytest_bluegreen.judge.headers import COLOR_HEADER
from pytest_bluegreen.settings.model import DEFAULT_COLORS

from .colors import (
    Found,
    InitError,
    Notes,
    Pairing,
    check_colors,
    color_of,
    no_pairs,
    pair_by_name,
    pair_by_weight,
    template_notes,
)
from .preview import PREVIEW_FILE, PreviewProposal, propose
from .routes import (
    SUGGESTED_SOCKET,
    direct_url,
    find_runtime_api,
    route_url,
    routed_url,
    routes_to,
)

__all__ = [
    "DEFAULT_COLORS",
    "PREVIEW_FILE",
    "SETTINGS_FILE",
    "SUGGESTED_SOCKET",
    "ColorPlan",
    "Found",
    "InitError",
    "Plan",
    "check_colors",
    "color_of",
    "plan",
    "proposed_files",
    "render_settings",
    "starter_files",
    "write",
]

SETTINGS_FILE = "bluegreen.toml"
CHECKS_DIR = "checks"
SUGGESTED_STATE_FILE = "/var/lib/haproxy/server-state"
DEFAULT_VERIFY_PATH = "/health"
DEFAULT_COLOR_HEADER = COLOR_HEADER  # the settings' default (judge/headers.py)
DEFAULT_FULL_WEIGHT = 100


@dataclass(frozen=True)
class ColorPlan:
    name: str
    servers: tuple[ServerRef, ...]
    api_url: Found


@dataclass(frozen=True)
class Plan:
    """What ``bluegreen init`` writes, with its reasons."""

    source: str
    colors: tuple[ColorPlan, ColorPlan]
    runtime_api: Found  # value None: no usable stats socket
    admin: bool  # the socket's level lets bluegreen set weights
    routed_api_url: Found
    routed_frontend_url: Found
    haproxy_state_file: Found
    verify_path: Found
    color_header: Found  # value None: the configuration does not name the color
    full_weight: int | None  # None: the default (100)
    idle: str | None  # the color taking no traffic as the configuration starts
    preview: PreviewProposal  # the preview route to add (its text None: none to add)
    guessed: tuple[str, ...]
    not_found: tuple[str, ...]


# --- the rest --------------------------------------------------------------------------------


def _state_file(config: HaproxyConfig, switched: Sequence[Proxy], notes: Notes) -> Found:
    name = config.server_state_file
    if name is None:
        notes.not_found.append(
            "a server-state-file: after a reload HAProxy starts from the configuration's "
            f"weights, not the last switch; add `server-state-file {SUGGESTED_STATE_FILE}` to "
            "global and `load-server-state-from-file global` to defaults, then set "
            "haproxy_state_file in bluegreen.toml"
        )
        return Found(None, "no server-state-file in global")
    path = name
    if not path.startswith("/") and config.server_state_base:
        path = f"{config.server_state_base.rstrip('/')}/{name}"
    where = f"global: server-state-file {name}"
    if not path.startswith("/"):
        notes.guessed.append(
            f"haproxy_state_file {path}: relative, to HAProxy's working folder; give its full path"
        )
    unloaded = [b.name for b in switched if not b.loads_server_state]
    if unloaded:
        notes.not_found.append(
            f"load-server-state-from-file in {', '.join(unloaded)}: HAProxy does not read the "
            "file back on reload; add `load-server-state-from-file global` to defaults"
        )
    return Found(path, where)


def _verify_path(switched: Sequence[Proxy], notes: Notes) -> Found:
    for backend in switched:
        path = backend.health_path
        if path and path.startswith("/"):
            return Found(path, f"{backend.label}'s health check (line {backend.health_line})")
    names = ", ".join(b.name for b in switched)
    notes.not_found.append(
        f"an HTTP health check (option httpchk) in {names}: the checks and the switch's "
        f"verification ask for {DEFAULT_VERIFY_PATH} (set verify_path in bluegreen.toml)"
    )
    return Found(DEFAULT_VERIFY_PATH, "no HTTP health check in the configuration")


def _color_header(pairing: Pairing, routed: Proxy | None, notes: Notes) -> Found:
    """A response header the configuration sets with "color" in its name."""
    headers = [
        (proxy, header)
        for proxy in (*pairing.switched, *([routed] if routed else []))
        for header in proxy.response_headers
        if "color" in header.lower() or "colour" in header.lower()
    ]
    if headers:
        proxy, header = headers[0]
        return Found(header, f"{proxy.label} sets it on responses")
    backend = pairing.switched[0]
    lines = [
        f"http-response set-header {DEFAULT_COLOR_HEADER} {color} if "
        f"{{ srv_name {' '.join(s.name for s in pairing.servers[color] if s in backend.servers)} }}"
        for color in pairing.colors
    ]
    notes.not_found.append(
        "a response header naming the color: a switch is verified by answers through "
        f"routed_api_url from the new color ({DEFAULT_COLOR_HEADER}, or a JSON 'color' field); "
        f"unless the service sends it, add to {backend.label}: "
        + " and ".join(f"`{line}`" for line in lines)
    )
    return Found(None, "")


def _full_weight(pairing: Pairing, notes: Notes) -> int | None:
    for color in pairing.colors:
        servers = pairing.servers[color]
        if not servers or not all(s.takes_traffic for s in servers):
            continue
        weights = sorted({s.weight for s in servers})
        if len(weights) > 1:
            notes.guessed.append(
                f"{color}'s servers have different weights ({', '.join(map(str, weights))}): "
                f"a switch gives every server of the new color full_weight ({DEFAULT_FULL_WEIGHT})"
            )
            return None
        if weights[0] not in {1, DEFAULT_FULL_WEIGHT}:  # 1: HAProxy's default weight
            notes.guessed.append(
                f"full_weight {weights[0]}: {color}'s servers take traffic at weight "
                f"{weights[0]}; a switch gives the new color's servers this weight"
            )
            return weights[0]
        return None
    return None


def _idle(pairing: Pairing) -> str | None:
    serving = {c: [s.takes_traffic for s in pairing.servers[c]] for c in pairing.colors}
    first, second = pairing.colors
    if all(serving[first]) and not any(serving[second]):
        return second
    if all(serving[second]) and not any(serving[first]):
        return first
    return None


def _backup_notes(pairing: Pairing, notes: Notes) -> None:
    for color in pairing.colors:
        for server in pairing.servers[color]:
            if server.backup:
                notes.guessed.append(
                    f"{server.name} is a backup server: HAProxy sends it traffic only when "
                    "every other server is down, whatever its weight; remove `backup` so a "
                    "switch can make it live"
                )


def plan(
    config: HaproxyConfig,
    *,
    text: str,
    source: str,
    colors: Sequence[str] | None = None,
    maps: Mapping[str, str | None] | None = None,
) -> Plan:
    """What to write for ``config`` (``text``, read from ``source``). ``maps``: the text of each map
    file the configuration names (None: unreadable). Raises InitError when no two colors are
    found."""
    names = check_colors(colors) if colors else DEFAULT_COLORS
    notes = Notes()
    pairing = pair_by_name(config, names, notes)
    if not pairing.switched:
        found = pair_by_weight(config, names, notes)
        if found is None:
            raise no_pairs(config, names)
        pairing = found
    _backup_notes(pairing, notes)
    template_notes(pairing, notes)
    runtime_api, admin = find_runtime_api(config, notes)
    verify_path = _verify_path(pairing.switched, notes)
    path = verify_path.value or DEFAULT_VERIFY_PATH
    routed_api, route = routed_url(
        config,
        pairing.switched[0],
        maps or {},
        notes,
        setting="routed_api_url",
        verify_path=path,
    )
    routed_frontend = Found(None, "")
    if len(pairing.switched) > 1:
        second = routes_to(config, pairing.switched[1], maps or {})
        exclusive = [r for r in second if r.rank == 0 and route_url(r) != routed_api.value]
        if exclusive:
            route = exclusive[0]
            routed_frontend = Found(
                route_url(route), f"{route.entry.label} (bind {route.bind.text}): {route.why}"
            )
    plans = tuple(
        ColorPlan(
            color,
            tuple(
                ServerRef(b.name, s.name)
                for b in pairing.switched
                for s in b.servers
                if s in pairing.servers[color]
            ),
            direct_url(config, pairing, color, notes),
        )
        for color in names
    )
    state_file = _state_file(config, pairing.switched, notes)
    header = _color_header(pairing, route.entry if route else None, notes)
    full_weight = _full_weight(pairing, notes)
    preview = propose(config, text, pairing, maps or {}, source)
    (notes.guessed if preview.existing else notes.not_found).append(preview.note)
    _variable_notes(config, notes)
    notes.guessed += list(config.assumptions)
    return Plan(
        source=source,
        colors=(plans[0], plans[1]),
        runtime_api=runtime_api,
        admin=admin,
        routed_api_url=routed_api,
        routed_frontend_url=routed_frontend,
        haproxy_state_file=state_file,
        verify_path=verify_path,
        color_header=header,
        full_weight=full_weight,
        idle=_idle(pairing),
        preview=preview,
        guessed=tuple(notes.guessed),
        not_found=tuple(notes.not_found),
    )


def _variable_notes(config: HaproxyConfig, notes: Notes) -> None:
    from_shell = [v for v in config.variables if v.source == FROM_ENVIRONMENT]
    from_file = [v.name for v in config.variables if v.value is not None and v not in from_shell]
    unset = [v.name for v in config.variables if v.value is None]
    if from_shell:
        notes.guessed.append(
            "taken from this shell's environment, as the configuration expands them (HAProxy's "
            "service may have others): " + ", ".join(f"{v.name}={v.value}" for v in from_shell)
        )
    if from_file:
        notes.guessed.append(
            f"{', '.join(from_file)} at the values the configuration gives them (presetenv, "
            "setenv); HAProxy's service environment may override presetenv ones"
        )
    if unset:
        notes.not_found.append(
            f"a value for {', '.join(unset)}: not set here, read as empty; set them as "
            "HAProxy's service does, and run bluegreen init again"
        )


# --- writing ---------------------------------------------------------------------------------


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def _setting(key: str, found: Found, *, comment: str) -> list[str]:
    lines = [f"# {comment}: {found.where}" if found.where else f"# {comment}"]
    if found.value is None:
        return [*lines, f"# {key} = ..."]
    return [*lines, f"{key} = {_toml(found.value)}"]


def render_settings(plan: Plan) -> str:
    """The plan as ``bluegreen.toml``; every value with a comment saying where it came from."""
    lines = [
        f"# pytest-bluegreen settings, written by `bluegreen init` from {plan.source}.",
        "# Each value says where in the HAProxy configuration it came from. Every key can be",
        "# overridden by BLUEGREEN_<KEY> or a command-line option (see docs/settings.md).",
        "",
    ]
    runtime_api = plan.runtime_api
    if runtime_api.value is None:
        lines += [
            f"# the Runtime API: {runtime_api.where}",
            f"runtime_api = {_toml(SUGGESTED_SOCKET)}",
        ]
    else:
        lines += _setting("runtime_api", runtime_api, comment="HAProxy's Runtime API")
    lines += _setting(
        "routed_api_url", plan.routed_api_url, comment="the routed URL every switch is verified on"
    )
    if plan.routed_frontend_url.value is not None:
        lines += _setting(
            "routed_frontend_url", plan.routed_frontend_url, comment="a second routed URL"
        )
    lines += _setting(
        "verify_path",
        plan.verify_path,
        comment="what the checks and the switch's verification ask for",
    )
    if plan.haproxy_state_file.value is not None:
        lines += _setting(
            "haproxy_state_file",
            plan.haproxy_state_file,
            comment="rewritten after each switch, so a reload keeps it",
        )
    if plan.color_header.value is not None and plan.color_header.value != DEFAULT_COLOR_HEADER:
        lines += _setting(
            "color_header", plan.color_header, comment="the response header naming the color"
        )
    if plan.full_weight is not None:
        lines += [
            "# the weight a live server gets (the configuration's live weight)",
            f"full_weight = {plan.full_weight}",
        ]
    path = plan.verify_path.value or DEFAULT_VERIFY_PATH
    lines += [
        "",
        "# k6-style limits for the perf check (pytest checks -m perf): until one is set, the",
        "# check measures and reports only",
        "[thresholds]",
        f'# {_toml(path)} = ["p(95)<300", "rate<0.01"]',
    ]
    for color in plan.colors:
        lines += ["", f"[colors.{color.name}]"]
        lines += _setting("api_url", color.api_url, comment=f"{color.name}'s own URL")
        servers = ", ".join(_toml(str(ref)) for ref in color.servers)
        lines.append(f"servers = [{servers}]")
    return "\n".join(lines) + "\n"


def proposed_files(plan: Plan) -> dict[str, str]:
    """What init proposes to add to the HAProxy configuration, as files of their own (it never
    edits the configuration): the preview route, unless it has one."""
    if plan.preview.text is None:
        return {}
    return {PREVIEW_FILE: plan.preview.text}


def starter_files() -> dict[str, str]:
    """The starter check suite: ``checks/<name>`` -> its text."""
    folder = resources.files("pytest_bluegreen.init.starter") / CHECKS_DIR
    return {
        f"{CHECKS_DIR}/{item.name}": item.read_text(encoding="utf-8")
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".py")
    }


def write(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Write every file under ``directory``; if any exists already, write none (InitError)."""
    targets = {directory / name: text for name, text in files.items()}
    # a link counts even when what it names does not exist: init would write through it
    existing = [str(path) for path in targets if path.exists() or path.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InitError(
            f"{existing[0]} exists{more}; nothing written (bluegreen init never overwrites)"
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)
