"""Reading an HAProxy configuration file into a typed model: pure, no I/O.

What ``bluegreen init`` needs from it: the Runtime API (``stats socket`` lines of ``global``),
the server-state file, and each proxy's binds, servers, routing (``default_backend``,
``use_backend``), health check and the response headers it sets. Words are split as HAProxy
splits them (double quotes expand ``${VAR}``, single quotes do not, ``#`` starts a comment);
``setenv``/``presetenv`` apply in order, as HAProxy applies them; ``.if``/``.elif``/``.else``
blocks are evaluated for the terms HAProxy 2.x knows best (``defined``, ``streq``, ``strneq``,
numbers, ``!``, ``&&``, ``||``); any other term is taken as true, and said so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pytest_bluegreen.errors import UsageError

__all__ = [
    "FROM_ENVIRONMENT",
    "Bind",
    "HaproxyConfig",
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

SECTIONS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "log-forward",
        "fcgi-app",
        "dynamic-update",
        "crt-store",
        "traces",
    }
)
WILDCARD_HOSTS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})  # noqa: S104 - we read them
# address prefixes HAProxy takes, and whether the address is a network one (host:port)
_NETWORK_PREFIXES = ("ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@", "quic4@", "quic6@")
_LOCAL_PREFIXES = ("unix@", "abns@", "abnsz@", "fd@", "sockpair@", "uxst@", "uxdg@", "udp@")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
MAX_TEMPLATE_SLOTS = 1000  # slots of one server-template init reads (each is a server to list)
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
        return _host_port(self.address)


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
        return _host_port(self.address)

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


# --- words -----------------------------------------------------------------------------------


@dataclass
class _Environment:
    """HAProxy's environment while it parses: the process's, then setenv/presetenv in order."""

    values: dict[str, str]
    sources: dict[str, str]
    used: dict[str, Variable] = field(default_factory=dict)

    def get(self, name: str, default: str | None) -> str:
        """The value of ``${name}`` (``${name-default}``); each variable used is remembered."""
        value = self.values.get(name)
        if value is None:
            source = "unset" if default is None else "its default in the configuration"
            self.used.setdefault(name, Variable(name, default, source))
            return default or ""
        source = self.sources.get(name, FROM_ENVIRONMENT)
        self.used.setdefault(name, Variable(name, value, source))
        return value

    def set(self, name: str, value: str, source: str, *, only_if_unset: bool = False) -> None:
        if only_if_unset and name in self.values:
            return
        self.values[name] = value
        self.sources[name] = source


def _expand(text: str, env: _Environment) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return env.get(name, match.group(2))

    return _VARIABLE.sub(one, text)


def split_words(line: str, env: _Environment) -> list[str]:
    """HAProxy's word splitting: blanks separate words, ``#`` starts a comment, ``\\`` escapes,
    double quotes expand ``${VAR}``, single quotes keep everything as written."""
    words: list[str] = []
    current: list[str] | None = None  # None: between words
    i = 0
    while i < len(line) and line[i] != "#":
        if line[i].isspace():
            if current is not None:
                words.append("".join(current))
            current = None
            i += 1
            continue
        piece, i = _piece(line, i, env)
        current = current if current is not None else []
        current.append(piece)  # appended, never copied: a long word takes linear time
    if current is not None:
        words.append("".join(current))
    return words


def _piece(line: str, i: int, env: _Environment) -> tuple[str, int]:
    """The piece of a word at ``i`` (a quoted string, an escaped character, a variable, a
    character) and where the next one starts."""
    char = line[i]
    if char == "'":
        end = line.find("'", i + 1)
        end = len(line) if end < 0 else end
        return line[i + 1 : end], end + 1
    if char == '"':
        out = []
        i += 1
        while i < len(line) and line[i] != '"':
            piece, i = _piece(line, i, env) if line[i] in "\\$" else (line[i], i + 1)
            out.append(piece)
        return "".join(out), i + 1
    if char == "\\" and i + 1 < len(line):
        return line[i + 1], i + 2
    if char == "$":
        end = _variable_end(line, i)
        return _expand(line[i:end], env), end
    return char, i + 1


def _variable_end(line: str, start: int) -> int:
    match = _VARIABLE.match(line, start)
    return match.end() if match else start + 1


# --- .if blocks ------------------------------------------------------------------------------


class UnreadableCondition(UsageError):
    """An ``.if``/``.elif`` condition HAProxy would refuse too (unbalanced parentheses, an
    operator with nothing after it): one line naming the line of the configuration."""


# a condition's tokens: an operator, a parenthesis, or a term (``defined(X)``, ``streq(a,b)``,
# a number, any other word)
_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z_]\w*\([^()]*\)|[^\s()!&|]+))")
_PRECEDENCE = {"!": 3, "&&": 2, "||": 1}
_SHOWN = 60  # characters of a condition an error line shows


def _condition(words: list[str], env: _Environment, assumptions: list[str], line: int) -> bool:
    """``.if`` terms: defined(X), streq(a,b), strneq(a,b), a number; ``!``, ``&&`` (before
    ``||``), parentheses. Evaluated with explicit stacks, never by recursion: a condition of
    any length or nesting takes time in proportion to its length (HAProxy takes thousands of
    ``!``)."""
    evaluation = _Evaluation(" ".join(words), line)
    position = 0
    while position < len(evaluation.expression):
        match = _TOKEN.match(evaluation.expression, position)
        if match is None:
            rest = evaluation.expression[position:].strip()
            if rest:
                raise evaluation.unreadable(f"{rest[:10]!r} is not a term")
            break
        position = match.end()
        symbol, term = match.group(1), match.group(2)
        if evaluation.operand_next:
            evaluation.operand(symbol, term, lambda t: _term(t, env, assumptions, line))
        else:
            evaluation.operator(symbol or term)
    return evaluation.result()


@dataclass
class _Evaluation:
    """A condition being evaluated: values and pending operators on two stacks."""

    expression: str
    line: int
    values: list[bool] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)  # "!", "&&", "||", "("
    operand_next: bool = True

    def unreadable(self, why: str) -> UnreadableCondition:
        text = self.expression
        shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
        return UnreadableCondition(
            f"line {self.line}: the condition {shown!r} cannot be read ({why}); HAProxy "
            "refuses it too (haproxy -c -f FILE)"
        )

    def operand(self, symbol: str | None, term: str | None, value: Callable[[str], bool]) -> None:
        """Where a term is due: ``!``, ``(`` or the term."""
        if symbol in {"!", "("}:
            self.operators.append(symbol)
        elif term is not None:
            self.values.append(value(term))
            self.operand_next = False
        else:
            raise self.unreadable(f"a term is missing before {symbol!r}")

    def operator(self, symbol: str) -> None:
        """After a term: ``&&``, ``||`` or ``)``."""
        if symbol in {"&&", "||"}:
            while self.operators and self.operators[-1] != "(":
                if _PRECEDENCE[self.operators[-1]] < _PRECEDENCE[symbol]:
                    break
                self._apply(self.operators.pop())
            self.operators.append(symbol)
            self.operand_next = True
        elif symbol == ")":
            while self.operators and self.operators[-1] != "(":
                self._apply(self.operators.pop())
            if not self.operators:
                raise self.unreadable("a ')' without its '('")
            self.operators.pop()
        else:
            raise self.unreadable(f"an operator is missing before {symbol!r}")

    def result(self) -> bool:
        if not self.values and not self.operators:
            return False  # an empty condition
        if self.operand_next:
            raise self.unreadable("it ends with an operator")
        while self.operators:
            operator = self.operators.pop()
            if operator == "(":
                raise self.unreadable("a '(' without its ')'")
            self._apply(operator)
        return self.values[-1]

    def _apply(self, operator: str) -> None:
        if operator == "!":
            self.values.append(not self.values.pop())
            return
        right, left = self.values.pop(), self.values.pop()
        self.values.append(left and right if operator == "&&" else left or right)


def _term(term: str, env: _Environment, assumptions: list[str], line: int) -> bool:
    if term.isdigit() or (term.startswith("-") and term[1:].isdigit()):
        return int(term) != 0
    match = re.fullmatch(r"(\w+)\((.*)\)", term)
    if match:
        function, argument = match.group(1), match.group(2)
        if function == "defined":
            return argument.strip() in env.values
        if function in {"streq", "strneq"}:
            left, _, right = argument.partition(",")
            return (left == right) == (function == "streq")
    assumptions.append(f".if {term} (line {line}) taken as true")
    return True


# --- sections --------------------------------------------------------------------------------


@dataclass
class _Section:
    kind: str
    name: str
    line: int
    lines: list[tuple[int, list[str], bool]] = field(default_factory=list)
    base: str | None = None  # "from NAME" (named defaults)


def _sections(
    text: str, environ: Mapping[str, str], assumptions: list[str]
) -> tuple[list[_Section], _Environment]:
    env = _Environment(dict(environ), dict.fromkeys(environ, FROM_ENVIRONMENT))
    sections: list[_Section] = []
    blocks: list[tuple[bool, bool]] = []  # (this branch active, some branch taken)
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("."):
            _directive(stripped, number, env, blocks, assumptions)
            continue
        if blocks and not blocks[-1][0]:
            continue
        words = split_words(stripped, env)
        if not words:
            continue
        if words[0] in SECTIONS:
            base = words[words.index("from") + 1] if "from" in words[:-1] else None
            name = words[1] if len(words) > 1 and words[1] != "from" else ""
            sections.append(_Section(words[0], name, number, base=base))
            continue
        if not sections:
            continue
        section = sections[-1]
        if section.kind == "global":
            _environment_line(words, number, env)
        section.lines.append((number, words, bool(blocks)))
    return sections, env


def _directive(
    line: str,
    number: int,
    env: _Environment,
    blocks: list[tuple[bool, bool]],
    assumptions: list[str],
) -> None:
    words = split_words(line, env)
    keyword, rest = words[0], words[1:]
    if keyword == ".if":
        value = _enclosing(blocks) and _condition(rest, env, assumptions, number)
        blocks.append((value, value))
    elif keyword in {".elif", ".else"} and blocks:
        _, taken = blocks.pop()
        value = _enclosing(blocks) and not taken
        if keyword == ".elif":
            value = value and _condition(rest, env, assumptions, number)
        blocks.append((value, taken or value))
    elif keyword == ".endif" and blocks:
        blocks.pop()


def _enclosing(blocks: list[tuple[bool, bool]]) -> bool:
    """Every enclosing block's branch is the one taken."""
    return all(active for active, _ in blocks)


def _environment_line(words: list[str], number: int, env: _Environment) -> None:
    keyword = words[0]
    if keyword in {"setenv", "presetenv"} and len(words) >= 3:
        env.set(
            words[1],
            words[2],
            f"{keyword} (line {number})",
            only_if_unset=keyword == "presetenv",
        )
    elif keyword == "unsetenv":
        for name in words[1:]:
            env.values.pop(name, None)
    elif keyword == "resetenv":
        kept = set(words[1:])
        for name in list(env.values):
            if name not in kept:
                del env.values[name]


# --- the configuration -----------------------------------------------------------------------


def parse_config(text: str, environ: Mapping[str, str]) -> HaproxyConfig:
    """The configuration ``text`` as HAProxy reads it with the environment ``environ``."""
    assumptions: list[str] = []
    sections, env = _sections(text, environ, assumptions)
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
    sections: list[_Section],
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


def _proxies(sections: list[_Section], assumptions: list[str]) -> tuple[Proxy, ...]:
    """The frontends, backends and listens, each with the defaults section it takes from: the
    named one (``defaults <name>`` / ``from <name>``) or else the last one above it."""
    defaults: dict[str, _Section] = {}
    last_defaults: _Section | None = None
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
            self.default_weight = _int(args[args.index("weight") + 1], self.default_weight)
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
            found = _host_port(address, ranges=True)
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
            weight = _int(options[options.index("weight") + 1], weight)
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


def _proxy(section: _Section, defaults: _Section | None, assumptions: list[str]) -> Proxy:
    kind: Literal["frontend", "backend", "listen"] = section.kind  # type: ignore[assignment]
    builder = _ProxyBuilder(kind, section.name, section.line)
    if defaults is not None:
        for number, words, _ in defaults.lines:
            builder.read(number, words, inherited=True)
    for number, words, _ in section.lines:
        builder.read(number, words, inherited=False)
    assumptions += [f"{section.kind} {section.name}: {line}" for line in builder.unread]
    return builder.build()


def _slot_range(count: str) -> tuple[int, int]:
    """``3`` -> (1, 3), ``5-8`` -> (5, 8); (0, 0) when neither."""
    low, dash, high = count.partition("-")
    if not dash:
        return (1, int(count)) if count.isdigit() and len(count) < 10 else (0, 0)
    if low.isdigit() and high.isdigit() and len(low) < 10 and len(high) < 10:
        return int(low), int(high)
    return 0, 0


def _httpchk_path(args: list[str]) -> str:
    """``option httpchk``, ``option httpchk /uri``, ``option httpchk GET /uri [HTTP/1.1]``."""
    if not args:
        return "/"
    return args[0] if len(args) == 1 else args[1]


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _host_port(address: str, *, ranges: bool = False) -> tuple[str, int] | None:
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
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)
