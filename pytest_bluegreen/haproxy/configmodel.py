"""A ``haproxy.cfg`` as typed records: the stats sockets, the proxies with their binds,
servers, server templates and routing, the environment variables the file expanded.

What :func:`~pytest_bluegreen.haproxy.config.parse_config` returns (``haproxy/config.py``
reads the file into these); pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "FROM_ENVIRONMENT",
    "WILDCARD_HOSTS",
    "Bind",
    "HaproxyConfig",
    "Level",
    "Proxy",
    "Server",
    "ServerTemplate",
    "StatsSocket",
    "UseBackend",
    "Variable",
    "host_port",
]

WILDCARD_HOSTS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})  # noqa: S104 - we read them
# address prefixes HAProxy takes, and whether the address is a network one (host:port)
_NETWORK_PREFIXES = ("ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@", "quic4@", "quic6@")
_LOCAL_PREFIXES = ("unix@", "abns@", "abnsz@", "fd@", "sockpair@", "uxst@", "uxdg@", "udp@")
_PORT = re.compile(r"0*[0-9]{1,5}")  # ASCII digits, five past leading zeros: HAProxy's port
_MAP_FILE = re.compile(r"map(?:_[a-z]+)?\(([^,)]+)")
Level = Literal["user", "operator", "admin"]
FROM_ENVIRONMENT = "the environment"  # Variable.source of a value from the process environment


@dataclass(frozen=True)
class Variable:
    """An environment variable the configuration expanded: its value and where it came from."""

    name: str
    value: str | None  # None: not set anywhere, expanded to nothing
    source: str  # FROM_ENVIRONMENT, "presetenv (line 3)", "setenv (line 4)", "unset", ...


@dataclass(frozen=True)
class StatsSocket:
    """One ``stats socket`` line of ``global``."""

    address: str  # as written (expanded): /run/haproxy.sock, ipv4@127.0.0.1:9999, *:9999
    level: Level
    level_given: bool  # False: HAProxy's default level (operator)
    ssl: bool
    line: int
    conditional: bool  # inside an .if block

    @property
    def text(self) -> str:
        return f"stats socket {self.address}" + (f" level {self.level}" if self.level_given else "")

    def host_port(self) -> tuple[str, int] | None:
        """Its TCP address, or None (a unix socket, an abstract one, an fd)."""
        return host_port(self.address)


@dataclass(frozen=True)
class Bind:
    """One address of a ``bind`` line: host (empty for every address), port, TLS or not."""

    host: str
    port: int
    ssl: bool
    line: int

    @property
    def wildcard(self) -> bool:
        return self.host in WILDCARD_HOSTS

    def url(self, host: str | None = None) -> str:
        shown = host or self.host
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"{'https' if self.ssl else 'http'}://{shown}:{self.port}"

    @property
    def text(self) -> str:
        return f"{self.host or '*'}:{self.port}{' ssl' if self.ssl else ''}"


@dataclass(frozen=True)
class Server:
    """One ``server`` line of a backend or listen section."""

    name: str
    address: str  # host:port as written (expanded), possibly with a prefix (ipv4@, unix@)
    weight: int  # the line's, else default-server's, else HAProxy's default 1
    disabled: bool
    backup: bool
    ssl: bool
    line: int
    template: str | None = None  # the server-template's prefix, for one of its slots

    @property
    def takes_traffic(self) -> bool:
        """As the configuration starts it: weight above 0, not disabled, not a backup."""
        return self.weight > 0 and not self.disabled and not self.backup

    def host_port(self) -> tuple[str, int] | None:
        """Where to reach it over TCP, or None (a unix socket, no port, a port range)."""
        return host_port(self.address)

    def url(self) -> str | None:
        found = self.host_port()
        if found is None:
            return None
        host, port = found
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.ssl else 'http'}://{host}:{port}"


@dataclass(frozen=True)
class ServerTemplate:
    """A ``server-template PREFIX NUM|LOW-HIGH FQDN[:PORT]`` line: HAProxy makes one server per
    number, named ``PREFIX<n>`` (``blue-api1`` ... ``blue-api3``), each filled at run time with
    an address the name resolves to (Docker's ``tasks.<service>``)."""

    prefix: str
    first: int
    last: int
    address: str
    line: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}{n}" for n in range(self.first, self.last + 1))

    @property
    def text(self) -> str:
        return f"server-template {self.prefix} {self.first}-{self.last} {self.address}"


@dataclass(frozen=True)
class UseBackend:
    """A ``use_backend`` rule: a backend's name, or an expression naming it at run time."""

    target: str
    condition: str  # "if { path_beg /api/ }", "" when unconditional
    line: int

    @property
    def dynamic(self) -> bool:
        return "%[" in self.target

    @property
    def map_files(self) -> tuple[str, ...]:
        """The map files a dynamic rule looks the backend up in (``map(/etc/haproxy/x.map)``)."""
        return tuple(m.strip().strip("\"'") for m in _MAP_FILE.findall(self.target))


@dataclass(frozen=True)
class Proxy:
    """A ``frontend``, ``backend`` or ``listen`` section, with what ``defaults`` gave it."""

    kind: Literal["frontend", "backend", "listen"]
    name: str
    line: int
    binds: tuple[Bind, ...] = ()
    unusable_binds: tuple[str, ...] = ()  # unix sockets, fd@, ...: no URL reaches them
    servers: tuple[Server, ...] = ()
    server_templates: tuple[ServerTemplate, ...] = ()  # their slots are in servers too
    default_backend: str | None = None
    use_backends: tuple[UseBackend, ...] = ()
    health_path: str | None = None  # option httpchk / http-check send uri
    health_line: int | None = None
    response_headers: tuple[str, ...] = ()  # http-response / http-after-response set-header
    mode: str = "tcp"
    loads_server_state: bool = False  # load-server-state-from-file global|local

    @property
    def accepts(self) -> bool:
        """It takes connections itself (a frontend or listen)."""
        return self.kind != "backend"

    @property
    def balances(self) -> bool:
        """It has servers (a backend or listen)."""
        return self.kind != "frontend"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class HaproxyConfig:
    """What one configuration says, as HAProxy would read it in this environment."""

    sockets: tuple[StatsSocket, ...]
    proxies: tuple[Proxy, ...]
    server_state_file: str | None
    server_state_base: str | None
    variables: tuple[Variable, ...]
    assumptions: tuple[str, ...]  # conditions taken as true, lines not understood

    @property
    def backends(self) -> tuple[Proxy, ...]:
        return tuple(p for p in self.proxies if p.balances)

    @property
    def entries(self) -> tuple[Proxy, ...]:
        return tuple(p for p in self.proxies if p.accepts)


def host_port(address: str, *, ranges: bool = False) -> tuple[str, int] | None:
    """``127.0.0.1:80``, ``:80``, ``*:80``, ``ipv4@...``, ``[::1]:80``, ``::1:80`` -> (host,
    port); None for a unix socket, an fd, or no port. ``ranges``: ``8000-8010`` -> 8000."""
    value = address.strip()
    if value.startswith(_LOCAL_PREFIXES) or value.startswith(("/", "./", "../")):
        return None
    for prefix in _NETWORK_PREFIXES:
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    host, sep, port_text = value.rpartition(":")
    if not sep:
        return None
    if ranges and "-" in port_text:
        port_text = port_text.split("-", 1)[0]
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)
