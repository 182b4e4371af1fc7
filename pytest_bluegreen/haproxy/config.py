"""Reading an HAProxy configuration file into a typed model: pure, no I/O.

What ``bluegreen init`` needs from it: the Runtime API (``stats socket`` lines of ``global``),
the server-state file, and each proxy's binds, servers, routing (``default_backend``,
``use_backend``), health check and the response headers it sets. The text is read as HAProxy
reads it in ``configtext.py`` (words, environment, ``.if`` blocks, sections); the records are
``configmodel.py``'s. This module hands on both modules' names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .configmodel import (
    FROM_ENVIRONMENT,
    WILDCARD_HOSTS,
    Bind,
    HaproxyConfig,
    Level,
    Proxy,
    Server,
    ServerTemplate,
    StatsSocket,
    UseBackend,
    Variable,
    host_port,
)
from .configtext import SECTIONS, Section, UnreadableCondition, read_sections, split_words

__all__ = [
    "FROM_ENVIRONMENT",
    "MAX_TEMPLATE_SLOTS",
    "SECTIONS",
    "WILDCARD_HOSTS",
    "Bind",
    "HaproxyConfig",
    "Level",
    "Proxy",
    "Server",
    "ServerTemplate",
    "StatsSocket",
    "UnreadableCondition",
    "UseBackend",
    "Variable",
    "parse_config",
    "split_words",
]

MAX_TEMPLATE_SLOTS = 1000  # slots of one server-template init reads (each is a server to list)


# --- the configuration -----------------------------------------------------------------------


def parse_config(text: str, environ: Mapping[str, str]) -> HaproxyConfig:
    """The configuration ``text`` as HAProxy reads it with the environment ``environ``."""
    assumptions: list[str] = []
    sections, env = read_sections(text, environ, assumptions)
    sockets, state_file, state_base = _global_settings(sections)
    return HaproxyConfig(
        sockets=sockets,
        proxies=_proxies(sections, assumptions),
        server_state_file=state_file,
        server_state_base=state_base,
        variables=tuple(env.used.values()),
        assumptions=tuple(assumptions),
    )


def _global_settings(
    sections: list[Section],
) -> tuple[tuple[StatsSocket, ...], str | None, str | None]:
    """The global sections' stats sockets, ``server-state-file`` and ``server-state-base``."""
    sockets: list[StatsSocket] = []
    state_file = state_base = None
    for section in sections:
        if section.kind != "global":
            continue
        for number, words, conditional in section.lines:
            if words[:2] == ["stats", "socket"] and len(words) > 2:
                sockets.append(_socket(words[2:], number, conditional))
            elif words[0] == "server-state-file" and len(words) > 1:
                state_file = words[1]
            elif words[0] == "server-state-base" and len(words) > 1:
                state_base = words[1]
    return tuple(sockets), state_file, state_base


def _proxies(sections: list[Section], assumptions: list[str]) -> tuple[Proxy, ...]:
    """The frontends, backends and listens, each with the defaults section it takes from: the
    named one (``defaults <name>`` / ``from <name>``) or else the last one above it."""
    defaults: dict[str, Section] = {}
    last_defaults: Section | None = None
    proxies: list[Proxy] = []
    for section in sections:
        if section.kind == "defaults":
            last_defaults = section
            if section.name:
                defaults[section.name] = section
        elif section.kind in {"frontend", "backend", "listen"}:
            inherited = defaults.get(section.base or "", last_defaults)
            proxies.append(_proxy(section, inherited, assumptions))
    return tuple(proxies)


def _socket(words: list[str], number: int, conditional: bool) -> StatsSocket:
    level: Level = "operator"  # HAProxy's default for a stats socket
    given = False
    if "level" in words[:-1]:
        word = words[words.index("level") + 1]
        if word in ("user", "operator", "admin"):
            level, given = word, True  # type: ignore[assignment]
    return StatsSocket(words[0], level, given, "ssl" in words[1:], number, conditional)


@dataclass
class _ProxyBuilder:
    kind: Literal["frontend", "backend", "listen"]
    name: str
    line: int
    binds: list[Bind] = field(default_factory=list)
    unusable_binds: list[str] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    templates: list[ServerTemplate] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # lines read as nothing, and why
    default_backend: str | None = None
    use_backends: list[UseBackend] = field(default_factory=list)
    health: tuple[str, int] | None = None
    headers: list[str] = field(default_factory=list)
    mode: str = "tcp"
    default_weight: int = 1
    loads_state: bool = False

    def read(self, number: int, words: list[str], *, inherited: bool) -> None:
        """A line of the section, or (``inherited``) of the defaults section it takes from."""
        if not self._inheritable(number, words[0], words[1:]) and not inherited:
            self._own(number, words[0], words[1:])

    def _inheritable(self, number: int, keyword: str, args: list[str]) -> bool:
        """Keywords a defaults section gives its proxies; True when ``keyword`` was one."""
        if keyword == "mode" and args:
            self.mode = args[0]
        elif keyword == "default_backend" and args:
            self.default_backend = args[0]
        elif keyword == "default-server" and "weight" in args[:-1]:
            self.default_weight = _atol(args[args.index("weight") + 1])
        elif keyword == "load-server-state-from-file" and args:
            self.loads_state = args[0] in {"global", "local"}
        elif keyword == "option" and args[:1] == ["httpchk"]:
            self.health = (_httpchk_path(args[1:]), number)
        elif keyword == "http-check" and args[:1] == ["send"] and "uri" in args[:-1]:
            self.health = (args[args.index("uri") + 1], number)
        else:
            return False
        return True

    def _own(self, number: int, keyword: str, args: list[str]) -> None:
        if keyword == "bind" and args:
            self._bind(args, number)
        elif keyword == "server" and len(args) >= 2:
            self._server(args, number)
        elif keyword == "server-template" and args:
            self._template(args, number)
        elif keyword == "use_backend" and args:
            self.use_backends.append(UseBackend(args[0], " ".join(args[1:]), number))
        elif keyword in {"http-response", "http-after-response"} and args[:1] in (
            ["set-header"],
            ["add-header"],
        ):
            self.headers.append(args[1])

    def _bind(self, args: list[str], number: int) -> None:
        ssl = "ssl" in args[1:]
        for address in args[0].split(","):
            found = host_port(address, ranges=True)
            if found is None:
                self.unusable_binds.append(address)
            else:
                self.binds.append(Bind(found[0], found[1], ssl, number))

    def _server(self, args: list[str], number: int) -> None:
        self.servers.append(self._one_server(args[0], args[1], args[2:], number))

    def _one_server(
        self, name: str, address: str, options: list[str], number: int, template: str | None = None
    ) -> Server:
        weight = self.default_weight
        if "weight" in options[:-1]:
            weight = _atol(options[options.index("weight") + 1])
        return Server(
            name=name,
            address=address,
            weight=weight,
            disabled="disabled" in options,
            backup="backup" in options,
            ssl="ssl" in options,
            line=number,
            template=template,
        )

    def _template(self, args: list[str], number: int) -> None:
        """``server-template PREFIX NUM|LOW-HIGH FQDN[:PORT] [options]``: its slots, as servers."""
        shown = " ".join(args[:3])
        if len(args) < 3:
            self.unread.append(f"server-template {shown} (line {number}): no address")
            return
        prefix, count, address, options = args[0], args[1], args[2], args[3:]
        first, last = _slot_range(count)
        if not 1 <= first <= last or last - first >= MAX_TEMPLATE_SLOTS:
            self.unread.append(
                f"server-template {shown} (line {number}) is not read: its slot count {count!r} "
                f"is not a number or range of 1 to {MAX_TEMPLATE_SLOTS} slots; list the slots' "
                "servers in bluegreen.toml (colors.<color>.servers)"
            )
            return
        template = ServerTemplate(prefix, first, last, address, number)
        self.templates.append(template)
        for name in template.names:
            self.servers.append(self._one_server(name, address, options, number, prefix))

    def build(self) -> Proxy:
        return Proxy(
            kind=self.kind,
            name=self.name,
            line=self.line,
            binds=tuple(self.binds),
            unusable_binds=tuple(self.unusable_binds),
            servers=tuple(self.servers),
            server_templates=tuple(self.templates),
            default_backend=self.default_backend if self.kind != "backend" else None,
            use_backends=tuple(self.use_backends),
            health_path=self.health[0] if self.health else None,
            health_line=self.health[1] if self.health else None,
            response_headers=tuple(self.headers),
            mode=self.mode,
            loads_server_state=self.loads_state,
        )


def _proxy(section: Section, defaults: Section | None, assumptions: list[str]) -> Proxy:
    kind: Literal["frontend", "backend", "listen"] = section.kind  # type: ignore[assignment]
    builder = _ProxyBuilder(kind, section.name, section.line)
    if defaults is not None:
        for number, words, _ in defaults.lines:
            builder.read(number, words, inherited=True)
    for number, words, _ in section.lines:
        builder.read(number, words, inherited=False)
    assumptions += [f"{section.kind} {section.name}: {line}" for line in builder.unread]
    return builder.build()


def _digits(text: str) -> bool:
    """ASCII digits, fewer than ten (``str.isdigit`` takes ``²``, which ``int`` refuses)."""
    return text.isascii() and text.isdigit() and len(text) < 10


def _slot_range(count: str) -> tuple[int, int]:
    """``3`` -> (1, 3), ``5-8`` -> (5, 8); (0, 0) when neither."""
    low, dash, high = count.partition("-")
    if not dash:
        return (1, int(count)) if _digits(count) else (0, 0)
    if _digits(low) and _digits(high):
        return int(low), int(high)
    return 0, 0


def _httpchk_path(args: list[str]) -> str:
    """``option httpchk``, ``option httpchk /uri``, ``option httpchk GET /uri [HTTP/1.1]``."""
    if not args:
        return "/"
    return args[0] if len(args) == 1 else args[1]


def _atol(text: str) -> int:
    """A number as HAProxy reads a weight (C's ``atol``): its leading ASCII digits, sign
    included, 0 without any (``٣`` and ``0x10`` are 0, ``5abc`` is 5, ``1_0`` is 1)."""
    found = re.match(r"[ \t]*([-+]?[0-9]{1,18})", text)
    return int(found.group(1)) if found else 0
