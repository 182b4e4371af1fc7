"""``bluegreen init``'s findings on how to reach HAProxy and the colors: the Runtime API (a
stats socket of the configuration), the routed URL (the frontend that routes to the switched
backend, the best way) and each color's own URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.configmodel import (
    WILDCARD_HOSTS,
    Bind,
    HaproxyConfig,
    Proxy,
    StatsSocket,
    UseBackend,
)

from .colors import Found, Notes, Pairing

__all__ = [
    "SUGGESTED_SOCKET",
    "direct_url",
    "find_runtime_api",
    "route_url",
    "routed_url",
    "routes_to",
]

SUGGESTED_SOCKET = "/run/haproxy/admin.sock"


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


def find_runtime_api(config: HaproxyConfig, notes: Notes) -> tuple[Found, bool]:
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


def routes_to(
    config: HaproxyConfig, backend: Proxy, maps: Mapping[str, str | None]
) -> list[_Route]:
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


def route_url(route: _Route) -> str:
    host = route.host.split(":", 1)[0] if route.host else None
    if host is None and route.bind.wildcard:
        host = "127.0.0.1"
    return route.bind.url(host)


def routed_url(
    config: HaproxyConfig,
    backend: Proxy,
    maps: Mapping[str, str | None],
    notes: Notes,
    *,
    setting: str,
    verify_path: str,
) -> tuple[Found, _Route | None]:
    routes = routes_to(config, backend, maps)
    if not routes:
        notes.not_found.append(
            f"a frontend that routes to {backend.label} (set {setting} in bluegreen.toml to "
            "the URL that reaches it)"
        )
        return Found(None, f"no frontend routes to {backend.label}"), None
    route = routes[0]
    url = route_url(route)
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


def direct_url(config: HaproxyConfig, pairing: Pairing, color: str, notes: Notes) -> Found:
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
