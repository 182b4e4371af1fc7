"""``bluegreen init``: from an existing HAProxy configuration to ``bluegreen.toml`` and a starter
``checks/``.

:func:`plan` decides from the parsed configuration (``haproxy/config.py``) what the settings are:
the two colors' servers, the Runtime API, the routed URL, each color's own URL, the health
path. Every value says where it came from; a guess and anything missing is a line of the plan.
:func:`render_settings` writes the plan as TOML, :func:`starter_files` is the starter suite
(``pytest_bluegreen/starter/checks``), :func:`write` writes them all or, when one exists,
nothing. No I/O here but :func:`write` and reading the starter files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pytest_bluegreen.errors import UsageError
from pytest_bluegreen.haproxy.config import (
    FROM_ENVIRONMENT,
    WILDCARD_HOSTS,
    Bind,
    HaproxyConfig,
    Proxy,
    Server,
    StatsSocket,
    UseBackend,
)
from pytest_bluegreen.haproxy.runtime import RuntimeApiAddress, ServerRef
from pytest_bluegreen.judge.headers import COLOR_HEADER
from pytest_bluegreen.settings.model import DEFAULT_COLORS
from pytest_bluegreen.settings.parsers import is_color_name

__all__ = [
    "DEFAULT_COLORS",
    "SETTINGS_FILE",
    "ColorPlan",
    "Found",
    "InitError",
    "Plan",
    "plan",
    "render_settings",
    "starter_files",
    "write",
]

SETTINGS_FILE = "bluegreen.toml"
CHECKS_DIR = "checks"
SUGGESTED_SOCKET = "/run/haproxy/admin.sock"
SUGGESTED_STATE_FILE = "/var/lib/haproxy/server-state"
DEFAULT_VERIFY_PATH = "/health"
DEFAULT_COLOR_HEADER = COLOR_HEADER  # the settings' default (judge/headers.py)
DEFAULT_FULL_WEIGHT = 100
_SEPARATORS = "-_."


class InitError(UsageError):
    """``bluegreen init`` cannot go on: one line, nothing written."""


@dataclass(frozen=True)
class Found:
    """A value for the settings and where it came from (``None``: not found)."""

    value: str | None
    where: str


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
    guessed: tuple[str, ...]
    not_found: tuple[str, ...]


@dataclass
class _Notes:
    guessed: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


# --- the colors ------------------------------------------------------------------------------


def check_colors(colors: Sequence[str]) -> tuple[str, str]:
    """``--colors a,b``: two distinct names the settings take."""
    names = tuple(c.strip().lower() for c in colors)
    if len(names) != 2 or names[0] == names[1]:
        raise InitError(f"--colors takes two different names, got {','.join(colors)!r}")
    for name in names:
        if not is_color_name(name):  # as the settings take them
            raise InitError(
                f"--colors: {name!r} is not a usable color name (a lowercase letter, then "
                "letters, digits, '-' or '_'; not all or shared)"
            )
    return names[0], names[1]


def color_of(server: str, colors: Sequence[str]) -> str | None:
    """The color a server's name says: ``blue``, ``blue-api``, ``api_blue``, ``blue2``."""
    name = server.lower()
    hits = {
        color
        for color in colors
        if name == color
        or any(name.startswith(color + s) or name.endswith(s + color) for s in _SEPARATORS)
        or re.fullmatch(rf"{re.escape(color)}\d+", name)
    }
    return hits.pop() if len(hits) == 1 else None


def _server_color(server: Server, colors: Sequence[str]) -> str | None:
    """A server's color by its name; a server-template slot's by its template's prefix
    (``api_blue`` makes ``api_blue1``, which names no color by itself)."""
    if server.template is not None:
        return color_of(server.template.rstrip(_SEPARATORS), colors)
    return color_of(server.name, colors)


@dataclass(frozen=True)
class _Pairing:
    colors: tuple[str, str]
    servers: Mapping[str, tuple[Server, ...]]  # per color, in the switched backends
    switched: tuple[Proxy, ...]  # backends with servers of both colors
    direct: Mapping[str, tuple[str, ...]]  # per color: backends with that color's servers only


def _pair_by_name(config: HaproxyConfig, colors: tuple[str, str], notes: _Notes) -> _Pairing:
    switched: list[Proxy] = []
    direct: dict[str, list[str]] = {c: [] for c in colors}
    servers: dict[str, list[Server]] = {c: [] for c in colors}
    for backend in config.backends:
        by_color = {
            c: [s for s in backend.servers if _server_color(s, colors) == c] for c in colors
        }
        present = [c for c in colors if by_color[c]]
        if len(present) == 1 and len(by_color[present[0]]) == len(backend.servers):
            direct[present[0]].append(backend.name)
        if len(present) != 2:
            continue
        switched.append(backend)
        for color in colors:
            servers[color] += by_color[color]
        others = [s.name for s in backend.servers if _server_color(s, colors) is None]
        if others:
            notes.guessed.append(
                f"{backend.label}: {', '.join(others)} belong to no color; a switch leaves "
                "them as they are (they keep their share of the traffic)"
            )
    return _Pairing(
        colors,
        {c: tuple(s) for c, s in servers.items()},
        tuple(switched),
        {c: tuple(b) for c, b in direct.items()},
    )


def _pair_by_weight(
    config: HaproxyConfig, colors: tuple[str, str], notes: _Notes
) -> _Pairing | None:
    """One backend with two servers, one taking the traffic and one not: the two colors."""
    pairs = []
    for backend in config.backends:
        serving = [s for s in backend.servers if not s.backup]
        if len(serving) == 2 and sum(s.takes_traffic for s in serving) == 1:
            pairs.append((backend, serving))
    if len(pairs) != 1:
        return None
    backend, (first, second) = pairs[0]
    notes.guessed.append(
        f"{colors[0]} = {backend.name}/{first.name} and {colors[1]} = {backend.name}/"
        f"{second.name}: the only backend with one server taking traffic "
        f"({_traffic(first)}) and one not ({_traffic(second)}), in the order of the file; "
        f"their names do not say a color (name them {colors[0]}-*/{colors[1]}-*, or pass "
        f"--colors {first.name},{second.name})"
    )
    return _Pairing(
        colors,
        {colors[0]: (first,), colors[1]: (second,)},
        (backend,),
        dict.fromkeys(colors, ()),
    )


def _traffic(server: Server) -> str:
    if server.disabled:
        return "disabled"
    return f"weight {server.weight}"


def _no_pairs(config: HaproxyConfig, colors: tuple[str, str]) -> InitError:
    seen = "; ".join(
        f"{b.name} ({', '.join(s.name for s in b.servers)})" for b in config.backends if b.servers
    )
    # what the reader could not read may be where the colors are: said on the same line
    notes = "".join(f"; {note}" for note in config.assumptions)
    return InitError(
        f"no backend has servers of both colors ({colors[0]}-*/{colors[1]}-* by name, or two "
        f"servers of which one takes no traffic); backends: {seen or 'none with servers'}"
        f"{notes}; name the servers after their colors or pass --colors NAME,NAME"
    )


def _template_notes(pairing: _Pairing, notes: _Notes) -> None:
    """Each color's server-template slots: every slot is in its servers, filled or not."""
    templates = [(b, t) for b in pairing.switched for t in b.server_templates]
    for backend, template in templates:
        slots = template.names
        notes.guessed.append(
            f"{backend.label}: server-template {template.prefix} (line {template.line}): "
            f"{len(slots)} slots, {slots[0]} ... {slots[-1]}, filled at run time from "
            f"{template.address}"
        )
    if templates:
        notes.guessed.append(
            "servers lists every server-template slot: a slot no replica fills is empty "
            "(MAINT (resolution)), takes no traffic, and the switch still sets its weight; give "
            "each color at least twice its replicas in slots"
        )


# --- the Runtime API -------------------------------------------------------------------------


def _socket_address(socket: StatsSocket) -> tuple[str | None, str]:
    """The ``runtime_api`` value for a stats socket, or None and why it cannot be used."""
    address = socket.address
    found = socket.host_port()
    if found is None:
        path = address.removeprefix("unix@")
        if "@" in path:
            return None, f"{address} cannot be reached from another process by its name"
        if not path.startswith("/"):
            return None, f"{path} is relative to HAProxy's working folder; give its full path"
        return path, ""
    host, port = found
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    shown = f"[{host}]" if ":" in host else host
    text = f"{'tls://' if socket.ssl else ''}{shown}:{port}"
    try:
        RuntimeApiAddress.parse(text)
    except ValueError as exc:
        return None, str(exc)
    return text, ""


def _runtime_api(config: HaproxyConfig, notes: _Notes) -> tuple[Found, bool]:
    usable: list[tuple[StatsSocket, str]] = []
    for socket in config.sockets:
        value, why = _socket_address(socket)
        if value is None:
            notes.guessed.append(f"stats socket {socket.address} (line {socket.line}): {why}")
        elif value.startswith("tls://"):
            notes.guessed.append(
                f"stats socket {socket.address} (line {socket.line}) takes TLS: give runtime_api "
                f'= "{value}" with runtime_api_cert, runtime_api_key and runtime_api_ca to use it'
            )
        else:
            usable.append((socket, value))
    add_line = f"stats socket {SUGGESTED_SOCKET} mode 600 level admin"
    if not usable:
        notes.not_found.append(
            "a Runtime API bluegreen can reach: add to global in the HAProxy configuration: "
            f"`{add_line}`, reload HAProxy (runtime_api in bluegreen.toml already names it)"
        )
        return Found(None, f"not in the configuration: add `{add_line}` to global"), False
    # an admin socket first; then as written, the unconditional ones first
    usable.sort(key=lambda pair: (pair[0].level != "admin", pair[0].conditional))
    socket, value = usable[0]
    where = f"global: {socket.text} (line {socket.line})"
    if socket.conditional:
        notes.guessed.append(f"runtime_api {value}: its stats socket line is inside an .if block")
    found = socket.host_port()
    if found is not None and found[0] in WILDCARD_HOSTS:
        notes.guessed.append(
            f"runtime_api {value}: the stats socket listens on {socket.address}, every address, "
            "with no authentication (bind it to 127.0.0.1)"
        )
    if len(usable) > 1:
        others = ", ".join(v for _, v in usable[1:])
        notes.guessed.append(f"runtime_api {value}, the first admin stats socket (also: {others})")
    admin = socket.level == "admin"
    if not admin:
        level = f"level {socket.level}" + ("" if socket.level_given else ", HAProxy's default")
        notes.not_found.append(
            f"an admin Runtime API: the stats socket at line {socket.line} has {level}; "
            "bluegreen can read HAProxy but not switch: add `level admin` to that line and "
            "reload HAProxy"
        )
    return Found(value, where), admin


# --- routed URLs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    rank: int  # 0: everything goes to the backend ... 4: a rule picks a backend at run time
    entry: Proxy
    bind: Bind
    host: str | None  # a Host the request needs (from a map)
    why: str  # "default_backend", "use_backend ... if ..."


def _best_bind(entry: Proxy) -> Bind | None:
    """Plain HTTP before TLS (the verification needs no certificate), then as written."""
    binds = sorted(entry.binds, key=lambda b: b.ssl)
    return binds[0] if binds else None


def _map_hosts(map_text: str | None, backend: str) -> list[str]:
    """The keys of a map file whose value is ``backend``."""
    if map_text is None:
        return []
    keys = []
    for line in map_text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[1] == backend:
            keys.append(words[0])
    return keys


def _routes(config: HaproxyConfig, backend: Proxy, maps: Mapping[str, str | None]) -> list[_Route]:
    routes = []
    for entry in config.entries:
        bind = _best_bind(entry)
        if bind is None:
            continue
        found = _route(entry, backend, maps)
        if found is not None:
            rank, host, why = found
            routes.append(_Route(rank, entry, bind, host, why))
    routes.sort(key=lambda r: (r.rank, r.bind.ssl))
    return routes


def _route(
    entry: Proxy, backend: Proxy, maps: Mapping[str, str | None]
) -> tuple[int, str | None, str] | None:
    """How ``entry`` reaches ``backend``: (rank, the Host it needs, why), the best way."""
    name = backend.name
    found: list[tuple[int, str | None, str]] = []
    if entry is backend:
        found.append((0, None, "its own servers"))
    if entry.default_backend == name:
        if entry.use_backends:
            found.append((1, None, f"default_backend {name} when no use_backend rule matches"))
        else:
            found.append((0, None, f"default_backend {name}"))
    for rule in entry.use_backends:
        if rule.target == name:
            why = f"use_backend {name} {rule.condition}".strip()
            found.append((2 if rule.condition else 1, None, why))
        elif rule.dynamic:
            found.append(_dynamic_route(rule, name, maps))
    return min(found, key=lambda f: f[0], default=None)


def _dynamic_route(
    rule: UseBackend, name: str, maps: Mapping[str, str | None]
) -> tuple[int, str | None, str]:
    """A rule naming the backend at run time, through a map that may send a Host to it."""
    for map_file in rule.map_files:
        keys = _map_hosts(maps.get(map_file), name)
        if keys:
            host = keys[0] if "host" in rule.target.lower() else None
            return 3, host, f"use_backend {rule.target}: {map_file} sends {keys[0]} to {name}"
    return 4, None, f"use_backend {rule.target}, which may name {name} at run time"


def _route_url(route: _Route) -> str:
    host = route.host.split(":", 1)[0] if route.host else None
    if host is None and route.bind.wildcard:
        host = "127.0.0.1"
    return route.bind.url(host)


def _routed_url(
    config: HaproxyConfig,
    backend: Proxy,
    maps: Mapping[str, str | None],
    notes: _Notes,
    *,
    setting: str,
    verify_path: str,
) -> tuple[Found, _Route | None]:
    routes = _routes(config, backend, maps)
    if not routes:
        notes.not_found.append(
            f"a frontend that routes to {backend.label} (set {setting} in bluegreen.toml to "
            "the URL that reaches it)"
        )
        return Found(None, f"no frontend routes to {backend.label}"), None
    route = routes[0]
    url = _route_url(route)
    where = f"{route.entry.label} (bind {route.bind.text}, line {route.bind.line}): {route.why}"
    alike = [
        r.entry.label for r in routes[1:] if r.rank == route.rank and r.entry is not route.entry
    ]
    if alike:
        notes.guessed.append(
            f"{setting} {url}: {route.entry.label}, the first of the frontends that route to "
            f"{backend.name} alike (also: {', '.join(alike)})"
        )
    if route.bind.ssl:
        notes.guessed.append(
            f"{setting} {url}: TLS; the switch's verification checks its certificate against "
            "this host's certificate authorities"
        )
    if route.bind.wildcard and route.host is None:
        notes.guessed.append(
            f"{setting} {url}: {route.entry.label} binds {route.bind.text}, on every address "
            "(reached here on loopback)"
        )
    if route.rank == 2:
        notes.guessed.append(
            f"{setting} {url}: {route.entry.label} sends a request to {backend.name} only "
            f"{route.why.split(' ', 2)[2]}; GET {verify_path} there must match it"
        )
    elif route.rank == 3 and route.host:
        notes.guessed.append(
            f"{setting} {url}: {route.entry.label} picks the backend by Host ({route.why}); "
            f"{route.host} must resolve to this HAProxy"
        )
    elif route.rank >= 3:
        notes.guessed.append(
            f"{setting} {url}: {route.entry.label} picks its backend at run time ({route.why}); "
            f"check that GET {url}{verify_path} reaches {backend.name}"
        )
    return Found(url, where), route


# --- each color's own URL --------------------------------------------------------------------


def _direct_url(config: HaproxyConfig, pairing: _Pairing, color: str, notes: _Notes) -> Found:
    own = set(pairing.direct[color])
    for entry in config.entries:
        bind = _best_bind(entry)
        targets = {r.target for r in entry.use_backends}
        if entry.default_backend is not None:
            targets.add(entry.default_backend)
        if entry.name in own and entry.kind == "listen":
            targets = {entry.name}
        if bind is None or not targets or not targets <= own:
            continue
        own_url = bind.url("127.0.0.1" if bind.wildcard else None)
        return Found(own_url, f"{entry.label} (bind {bind.text}) reaches {color} only")
    servers = pairing.servers[color]
    for server in servers:
        url = server.url()
        if url is None or server.template is not None:  # a slot's address is DNS's to give
            continue
        backend = next(b.name for b in pairing.switched if server in b.servers)
        unchecked = [s.name for s in servers if s is not server]
        also = f"; {', '.join(unchecked)} not checked" if unchecked else ""
        notes.guessed.append(
            f"colors.{color}.api_url {url}: straight to server {backend}/{server.name} (no "
            f"frontend reaches {color} alone{also})"
        )
        return Found(url, f"server {backend}/{server.name} (line {server.line})")
    notes.not_found.append(
        f"a URL that reaches {color} alone (set colors.{color}.api_url in bluegreen.toml)"
    )
    return Found(None, f"no frontend reaches {color} alone and its servers have no TCP address")


# --- the rest --------------------------------------------------------------------------------


def _state_file(config: HaproxyConfig, switched: Sequence[Proxy], notes: _Notes) -> Found:
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


def _verify_path(switched: Sequence[Proxy], notes: _Notes) -> Found:
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


def _color_header(pairing: _Pairing, routed: Proxy | None, notes: _Notes) -> Found:
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


def _full_weight(pairing: _Pairing, notes: _Notes) -> int | None:
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


def _idle(pairing: _Pairing) -> str | None:
    serving = {c: [s.takes_traffic for s in pairing.servers[c]] for c in pairing.colors}
    first, second = pairing.colors
    if all(serving[first]) and not any(serving[second]):
        return second
    if all(serving[second]) and not any(serving[first]):
        return first
    return None


def _backup_notes(pairing: _Pairing, notes: _Notes) -> None:
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
    source: str,
    colors: Sequence[str] | None = None,
    maps: Mapping[str, str | None] | None = None,
) -> Plan:
    """What to write for ``config`` (read from ``source``). ``maps``: the text of each map
    file the configuration names (None: unreadable). Raises InitError when no two colors are
    found."""
    names = check_colors(colors) if colors else DEFAULT_COLORS
    notes = _Notes()
    pairing = _pair_by_name(config, names, notes)
    if not pairing.switched:
        found = _pair_by_weight(config, names, notes)
        if found is None:
            raise _no_pairs(config, names)
        pairing = found
    _backup_notes(pairing, notes)
    _template_notes(pairing, notes)
    runtime_api, admin = _runtime_api(config, notes)
    verify_path = _verify_path(pairing.switched, notes)
    path = verify_path.value or DEFAULT_VERIFY_PATH
    routed_api, route = _routed_url(
        config,
        pairing.switched[0],
        maps or {},
        notes,
        setting="routed_api_url",
        verify_path=path,
    )
    routed_frontend = Found(None, "")
    if len(pairing.switched) > 1:
        second = _routes(config, pairing.switched[1], maps or {})
        exclusive = [r for r in second if r.rank == 0 and _route_url(r) != routed_api.value]
        if exclusive:
            route = exclusive[0]
            routed_frontend = Found(
                _route_url(route), f"{route.entry.label} (bind {route.bind.text}): {route.why}"
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
            _direct_url(config, pairing, color, notes),
        )
        for color in names
    )
    state_file = _state_file(config, pairing.switched, notes)
    header = _color_header(pairing, route.entry if route else None, notes)
    full_weight = _full_weight(pairing, notes)
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
        guessed=tuple(notes.guessed),
        not_found=tuple(notes.not_found),
    )


def _variable_notes(config: HaproxyConfig, notes: _Notes) -> None:
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
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InitError(
            f"{existing[0]} exists{more}; nothing written (bluegreen init never overwrites)"
        )
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(targets)
