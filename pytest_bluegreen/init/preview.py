"""``bluegreen init``'s proposal of a preview route for the user's HAProxy configuration, as
the shipped ``haproxy.cfg`` has one: a request naming a color in ``X-Bluegreen-Preview`` (or
the cookie ``bluegreen_preview``) and carrying the shared key in ``X-Bluegreen-Preview-Key``
(or the cookie ``bluegreen_preview_key``) goes to that color's servers through the frontends
that route to the switched backends, whatever the weights; the key (``BG_PREVIEW_KEY`` in
HAProxy's environment) is taken out before a color sees the request.

:func:`propose` writes the lines: a block for ``global``, and for each routed frontend the
route's own lines (``route_lines``, the shipped ``haproxy.cfg``'s) before its first routing
line, and just before each of its ``use_backend`` rules that may pick a switched backend the
same rule for each color's copy (same ``.if`` branch, same ACLs, same order: a preview request
goes where an ordinary one would, to the named color's copy), the default backend's after
them all; per switched backend one copy per color (the backend's own lines as written, with
only that color's servers, without their weight or ``disabled``: bluegreen never sets their
weights; marking what it takes ``X-Bluegreen-Route: preview``). Init never edits the user's
file: the proposal is a file of its own, each block saying where it goes. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pytest_bluegreen.haproxy.configmodel import HaproxyConfig, Proxy
from pytest_bluegreen.haproxy.configtext import BLANKS, SECTIONS
from pytest_bluegreen.haproxy.preview import (
    KEY_VARIABLE,
    PREVIEW_COOKIE,
    PREVIEW_HEADER,
    PREVIEW_SECRET,
    ROUTE_ON,
    color_guard,
    global_lines,
    route_lines,
)

from .colors import Pairing, color_of
from .routes import routes_to

__all__ = ["PREVIEW_FILE", "Insertion", "PreviewProposal", "existing_route", "propose", "raw_words"]

PREVIEW_FILE = "haproxy-preview.cfg"
ROUTE_HEADER = "X-Bluegreen-Route"
_WHAT = (
    "a preview route (a tester reaches a color through the public frontends before any user does)"
)
# what a switch changes on a server, and a preview server must not have: its weight, and the
# word that keeps it from taking any traffic (a backup server stays one: the color's others
# first, as when the color is live)
_WEIGHT_GAMES = {"disabled": 0, "weight": 1}
# the lines after which HAProxy warns of an http-request rule ("will still be processed before")
_ROUTING = {"use_backend", "default_backend", "use-server", "redirect"}
# a listen section's lines that only its frontend side takes, not a backend's
_FRONTEND_ONLY = {
    "bind",
    "default_backend",
    "use_backend",
    "monitor-uri",
    "monitor",
    "capture",
    "http-request",
    "tcp-request",
    "maxconn",
    "rate-limit",
    "unique-id-format",
    "unique-id-header",
    "log-format",
    "id",
}


@dataclass(frozen=True)
class Insertion:
    """One block of the proposal and where it goes in the user's file: after line ``after``
    (0: where the block says, e.g. a new section at the end)."""

    where: str
    after: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class PreviewProposal:
    """The preview route for a configuration: its blocks (empty when there is nothing to
    propose), the file's text, the preview backends' names per switched backend, and the
    plan's line about it."""

    blocks: tuple[Insertion, ...]
    text: str | None  # None: nothing to propose (a route already, or no routed frontend)
    backends: Mapping[str, Mapping[str, str]]  # switched backend -> color -> preview backend
    note: str
    existing: bool  # the configuration has a preview route: the note is no missing part


# --- the file as written ---------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Each line as HAProxy reads it (``configtext.read_sections``): leading blanks and
    carriage returns skipped, a carriage return ends the line."""
    return [raw.lstrip(BLANKS + "\r").split("\r", 1)[0].strip(BLANKS) for raw in text.split("\n")]


def raw_words(line: str) -> list[str]:
    """A line's words as written, quotes and escapes kept (``"${VAR}"`` stays a variable):
    split at HAProxy's blanks outside quotes, up to a ``#`` outside quotes."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        if quote:
            current.append(char)
            if char == "\\" and quote == '"' and i + 1 < len(line):
                current.append(line[i + 1])
                i += 1
            elif char == quote:
                quote = ""
        elif char in "#\r":
            break
        elif char in BLANKS:
            if current:
                words.append("".join(current))
            current = []
        elif char == "\\" and i + 1 < len(line):
            current += [char, line[i + 1]]
            i += 1
        else:
            quote = char if char in "'\"" else ""
            current.append(char)
        i += 1
    if current:
        words.append("".join(current))
    return words


def _bare(word: str) -> str:
    return word.replace('"', "").replace("'", "")


def existing_route(text: str) -> int | None:
    """The first line (not a comment) naming the preview route's header or cookie: the
    configuration has a preview route already."""
    names = (PREVIEW_HEADER.lower(), PREVIEW_COOKIE)
    for number, line in enumerate(_lines(text), start=1):
        words = " ".join(raw_words(line)).lower()
        if any(name in words for name in names):
            return number
    return None


def _section_lines(lines: Sequence[str], proxy: Proxy) -> list[tuple[int, list[str]]]:
    """The lines of ``proxy``'s section as written (every ``.if`` branch), to the next
    section: (number, words)."""
    found = []
    for number in range(proxy.line + 1, len(lines) + 1):
        words = raw_words(lines[number - 1])
        if not words:
            continue
        if _bare(words[0]) in SECTIONS:
            break
        found.append((number, words))
    return found


def _balanced(block: list[str]) -> list[str]:
    """``.if`` blocks of a copied section closed: a block opened before the section or left
    open after it."""
    kept: list[str] = []
    depth = 0
    for line in block:
        keyword = line.split(" ", 1)[0]
        if keyword == ".if":
            depth += 1
        elif keyword in {".elif", ".else", ".endif"} and depth == 0:
            continue
        elif keyword == ".endif":
            depth -= 1
        kept.append(line)
    return _pruned(kept + [".endif"] * depth)


def _pruned(block: list[str]) -> list[str]:
    """Without the ``.if`` blocks left empty (the other color's servers were all they had)."""
    out: list[str] = []
    opened: list[tuple[int, bool]] = []  # where each open block starts, and if it has a line
    for line in block:
        keyword = line.split(" ", 1)[0]
        if keyword == ".if":
            opened.append((len(out), False))
        elif keyword == ".endif" and opened:
            start, full = opened.pop()
            if not full:
                del out[start:]
                continue
            if opened:
                opened[-1] = (opened[-1][0], True)
        elif keyword not in {".elif", ".else"} and opened:
            opened[-1] = (opened[-1][0], True)
        out.append(line)
    return out


# --- the preview backends --------------------------------------------------------------------


def _without_weight_games(words: list[str]) -> list[str]:
    kept: list[str] = []
    skip = 0
    for word in words:
        if skip:
            skip -= 1
            continue
        if word in _WEIGHT_GAMES:
            skip = _WEIGHT_GAMES[word]
            continue
        kept.append(word)
    return kept


def _server_color(words: list[str], colors: Sequence[str]) -> str | None:
    """A ``server NAME`` / ``server-template PREFIX`` line's color by its name."""
    if len(words) < 2:
        return None
    name = _bare(words[1])
    return color_of(name.rstrip("-_.") if words[0] == "server-template" else name, colors)


def _preview_backend(
    lines: Sequence[str], backend: Proxy, pairing: Pairing, color: str, name: str
) -> list[str]:
    """``backend``'s section copied as ``name``: its lines as written, ``color``'s servers
    only, with no weight games."""
    by_line = {
        s.line: c for c in pairing.colors for s in pairing.servers[c] if s in backend.servers
    }
    parsed = {s.line for s in backend.servers}
    header = raw_words(lines[backend.line - 1])[2:4]
    header = header if header[:1] == ["from"] else []  # its defaults section, as written
    out = [f"backend {' '.join([name, *header])}"]
    # the requests of the preview route, and only they, as the color sees them
    body: list[str] = [f"    http-request set-header {ROUTE_HEADER} preview"]
    names = {s.name: c for c in pairing.colors for s in pairing.servers[c]}
    for number, words in _section_lines(lines, backend):
        keyword = words[0]
        if keyword.startswith("."):
            body.append(" ".join(words))
            continue
        if backend.kind == "listen" and keyword in _FRONTEND_ONLY:
            continue
        if keyword == "id":
            continue  # a proxy's id is its own
        if keyword == "use-server" and len(words) > 1:
            server = _bare(words[1])
            if names.get(server, color_of(server, pairing.colors)) not in (None, color):
                continue  # the other color's server: not in this copy
        if keyword in {"server", "server-template"}:
            owner = (
                by_line.get(number) if number in parsed else _server_color(words, pairing.colors)
            )
            if owner != color:
                continue
        copied = words
        if keyword in {"server", "server-template", "default-server"}:
            copied = _without_weight_games(words)
        body.append("    " + " ".join(copied))
    return out + _balanced(body)


def _backend_names(config: HaproxyConfig, pairing: Pairing) -> dict[str, dict[str, str]]:
    taken = {p.name for p in config.proxies}
    names: dict[str, dict[str, str]] = {}
    for backend in pairing.switched:
        names[backend.name] = {}
        for color in pairing.colors:
            name = f"{backend.name}_preview_{color}"
            while name in taken:
                name = f"bluegreen_{name}"
            taken.add(name)
            names[backend.name][color] = name
    return names


# --- the frontends' rules --------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """Preview rules to add to a frontend: after line ``after``, and why there."""

    after: int
    why: str
    lines: tuple[str, ...]


def _terms(words: list[str]) -> Iterator[str]:
    """A condition's terms (an ACL's name, ``{ ... }``, each maybe negated) and ``||``."""
    i = 0
    negate = False
    while i < len(words):
        word = words[i]
        if word in {"||", "or"}:
            yield "||"
        elif word == "!":
            negate = not negate
            i += 1
            continue
        elif word.lstrip("!") == "{":
            end = next((j for j in range(i, len(words)) if words[j] == "}"), len(words) - 1)
            group = " ".join(["{", *words[i + 1 : end + 1]])
            yield ("!" if negate != word.startswith("!") else "") + group
            i = end
        else:
            bang = negate != word.startswith("!")
            yield ("!" if bang else "") + word.lstrip("!")
        negate = False
        i += 1


def _condition(words: list[str]) -> tuple[str, list[list[str]]]:
    """A rule's condition: ``if`` or ``unless``, and its clauses of terms (any clause true:
    all of its terms true)."""
    if not words:
        return "if", [[]]
    clauses: list[list[str]] = [[]]
    for term in _terms(words[1:]):
        if term == "||":
            clauses.append([])
        else:
            clauses[-1].append(term)
    return words[0], clauses


def _rule(target: str, guards: Sequence[str], condition: tuple[str, list[list[str]]]) -> str:
    """``use_backend target`` when every guard and the condition hold: the guards in each
    clause of an ``if``; ``unless !guard || ...`` for an ``unless`` (unless not all guards
    or the condition: all guards and not the condition)."""
    kind, clauses = condition
    if kind == "if":
        either = [" ".join([*guards, *clause]) for clause in clauses]
        return f"use_backend {target} if " + " || ".join(either)
    negated = [g[1:] if g.startswith("!") else f"!{g}" for g in guards]
    return f"use_backend {target} unless " + " || ".join(
        [*negated, *(" ".join(clause) for clause in clauses)]
    )


def _dynamic_expression(target: str) -> str | None:
    """``%[EXPR]`` -> ``EXPR``; None for anything else (``be_%[...]``)."""
    if target.startswith("%[") and target.endswith("]") and target.count("%[") == 1:
        return target[2:-1]
    return None


def _scope(lines: Sequence[str], proxy: Proxy) -> list[tuple[int, list[str], int]]:
    """The section's lines that belong to it at its own level: (number, words, ``.if`` depth
    after the line), up to a ``.elif``/``.else``/``.endif`` of a block opened before it."""
    found = []
    depth = 0
    for number, words in _section_lines(lines, proxy):
        keyword = _bare(words[0])
        if keyword == ".if":
            depth += 1
        elif keyword in {".elif", ".else", ".endif"} and depth == 0:
            break
        elif keyword == ".endif":
            depth -= 1
        found.append((number, words, depth))
    return found


def _scope_end(lines: Sequence[str], proxy: Proxy) -> int:
    """The section's last line with every ``.if`` it opened closed: what goes after it is
    the section's whatever the conditions (a block opened for the next section is not its)."""
    end = proxy.line
    for number, _, depth in _scope(lines, proxy):
        if depth == 0:
            end = number
    return end


def _route_start(lines: Sequence[str], entry: Proxy) -> tuple[int, str]:
    """Where the route's own lines go in ``entry``: before its first routing line (HAProxy
    warns of an ``http-request`` rule after one, and a configuration may refuse warnings), or
    the ``.if`` block holding it (the route is not one branch's), else at its end."""
    opened = 0  # where the outermost open .if block starts
    before = 0
    for number, words, depth in _scope(lines, entry):
        keyword = _bare(words[0])
        if keyword == ".if" and depth == 1:
            opened, before = number, number - 1
        if keyword in _ROUTING:
            if depth == 0:
                return number - 1, f"before its first {keyword} (line {number})"
            return before, f"before the .if block (line {opened}) with its first {keyword}"
    return _scope_end(lines, entry), "at its end"


def _frontend_rules(
    lines: Sequence[str],
    entry: Proxy,
    names: Mapping[str, Mapping[str, str]],
    colors: Sequence[str],
) -> tuple[list[_Rules], list[str]]:
    """The preview rules of ``entry``: just before each of its own ``use_backend`` rules that
    may send a request to a switched backend (every ``.if`` branch), the same rule for each
    color's copy, so a preview request meets the frontend's rules in the same order, with the
    same ACLs, as an ordinary one; for a switched default backend, after all of them. And
    what needs a hand."""
    parsed = {rule.line: rule for rule in entry.use_backends}
    found: list[_Rules] = []
    by_hand: list[str] = []
    last_rule = 0
    for number, words, _ in _scope(lines, entry):
        if _bare(words[0]) != "use_backend" or len(words) < 2:
            continue
        last_rule = number
        rule = parsed.get(number)
        target = rule.target if rule is not None else _bare(words[1])
        condition = _condition(words[2:])
        if target in names:
            rules = [_rule(names[target][c], [color_guard(c)], condition) for c in colors]
        elif "%[" in target and (expression := _dynamic_expression(target)) is not None:
            rules = [
                _rule(
                    preview[c], [color_guard(c), f"{{ {expression} -m str {backend} }}"], condition
                )
                for backend, preview in names.items()
                for c in colors
            ]
        else:
            if "%[" in target or "${" in target:
                by_hand.append(
                    f"use_backend {_bare(words[1])} (line {number}) names its backend at run "
                    "time: its preview rules are written by hand"
                )
            continue
        found.append(
            _Rules(number - 1, f"just before its use_backend (line {number})", tuple(rules))
        )
    own = entry.name if entry.name in names else entry.default_backend
    if own is not None and own in names:
        end = _scope_end(lines, entry)
        found.append(
            _Rules(
                max(end, last_rule),
                f"after its use_backend rules: for its default, {own}",
                tuple(f"use_backend {names[own][c]} if {color_guard(c)}" for c in colors),
            )
        )
    return found, by_hand


def _route_block(colors: Sequence[str]) -> list[str]:
    return [
        "    # the preview route: decided before the key is taken out of the request, and a",
        "    # client cannot say it came through it (its color's backend marks the requests)",
        f"    http-request del-header {ROUTE_HEADER} "
        f"if {{ req.fhdr({ROUTE_HEADER}) -m str preview }}",
        *route_lines(colors),
    ]


def _frontend_blocks(
    lines: Sequence[str],
    entry: Proxy,
    names: Mapping[str, Mapping[str, str]],
    colors: Sequence[str],
) -> tuple[list[Insertion], list[str]]:
    """``entry``'s blocks, in the file's order; two that go after the same line are one."""
    rules, by_hand = _frontend_rules(lines, entry, names, colors)
    after, why = _route_start(lines, entry)
    parts = [_Rules(after, why, tuple(_route_block(colors))), *rules]
    parts.sort(key=lambda part: part.after)  # stable: the route's lines before the rules
    merged: list[tuple[int, list[str], list[str]]] = []
    for part in parts:
        body = [line if line.startswith(" ") else f"    {line}" for line in part.lines]
        if merged and merged[-1][0] == part.after:
            merged[-1][1].append(part.why)
            merged[-1][2].extend(body)
        else:
            merged.append((part.after, [part.why], body))
    blocks = [
        Insertion(
            f"{entry.label} (line {entry.line}): insert after line {at}, {'; '.join(whys)}",
            at,
            (ROUTE_ON, *body, ".endif"),
        )
        for at, whys, body in merged
    ]
    return blocks, by_hand


# --- the proposal ----------------------------------------------------------------------------


def propose(
    config: HaproxyConfig,
    text: str,
    pairing: Pairing,
    maps: Mapping[str, str | None],
    source: str,
) -> PreviewProposal:
    """The preview route for ``config`` (``text`` as written, read from ``source``), or why
    there is none."""
    found = existing_route(text)
    if found is not None:
        note = (
            f"a preview route: the configuration has one ({PREVIEW_HEADER} or {PREVIEW_COOKIE} "
            f"at line {found}); the preview_http fixture sends {PREVIEW_SECRET} from "
            "secrets.env, which must be the key HAProxy compares"
        )
        return PreviewProposal((), None, {}, note, existing=True)
    lines = _lines(text)
    entries: list[Proxy] = []
    for backend in pairing.switched:
        for route in routes_to(config, backend, maps):
            if route.entry not in entries:
                entries.append(route.entry)
    tcp = [e for e in entries if e.mode != "http"]
    entries = [e for e in entries if e.mode == "http"]
    skipped = [f"{e.label} is mode {e.mode}: a preview route needs mode http" for e in tcp]
    if not entries:
        note = (
            f"{_WHAT}: no HTTP frontend routes to {', '.join(b.name for b in pairing.switched)}"
            + "".join(f"; {line}" for line in skipped)
            + "; none proposed"
        )
        return PreviewProposal((), None, {}, note, existing=False)
    names = _backend_names(config, pairing)
    blocks = [_global_block(lines)]
    for entry in entries:
        made, by_hand = _frontend_blocks(lines, entry, names, pairing.colors)
        blocks += made
        skipped += by_hand
    used = {
        word.removeprefix("use_backend ").split(" ", 1)[0]
        for block in blocks
        for line in block.lines
        for word in [line.strip()]
        if word.startswith("use_backend ")
    }
    for backend in pairing.switched:
        if not used & set(names[backend.name].values()):
            continue  # no HTTP frontend sends a request to it
        end = _scope_end(lines, backend)
        copies: list[str] = [""]
        for color in pairing.colors:
            copies += [
                *_preview_backend(lines, backend, pairing, color, names[backend.name][color]),
                "",
            ]
        blocks.append(
            Insertion(
                f"new backends, after {backend.label} (its last line: {end}): {backend.name}'s "
                "lines with one color's servers each, weights as HAProxy starts them",
                end,
                tuple(copies[:-1]),
            )
        )
    where = ", ".join(e.label for e in entries)
    note = (
        f"{_WHAT}: proposed in {PREVIEW_FILE}, next to bluegreen.toml, for {where}; add its "
        f"blocks where it says, set {KEY_VARIABLE} in HAProxy's environment and the same value "
        f"as {PREVIEW_SECRET} in secrets.env" + "".join(f"; {line}" for line in skipped)
    )
    blocks.sort(key=lambda block: block.after)  # in the file's order (stable: as made)
    text = _render(source, blocks, skipped)
    return PreviewProposal(tuple(blocks), text, names, note, existing=False)


def _global_block(lines: Sequence[str]) -> Insertion:
    block = (
        "    # who may use the preview route: client addresses or networks, space-separated",
        *global_lines(),
    )
    found = next(
        (n for n, line in enumerate(lines, start=1) if raw_words(line)[:1] == ["global"]), None
    )
    if found is None:
        return Insertion(
            "a new global section at the top of the file (it has none)",
            0,
            (
                "global",
                *block,
            ),
        )
    return Insertion(f"global (line {found}): insert after line {found}", found, block)


def _render(source: str, blocks: Sequence[Insertion], skipped: Sequence[str]) -> str:
    header = [
        f"# The preview route, proposed by `bluegreen init` for {source}",
        "# (init never edits it). A request naming a color in the X-Bluegreen-Preview header",
        "# (or the bluegreen_preview cookie) AND carrying the shared key in",
        "# X-Bluegreen-Preview-Key (or the bluegreen_preview_key cookie) goes to that color's",
        "# servers through your public frontends, whatever the weights: the same TLS, header",
        "# rules and limits users get, before any user reaches the color. Without the key it is",
        "# an ordinary request; the key is taken out before a color sees the request.",
        "#",
        f"# The key: set {KEY_VARIABLE} in HAProxy's environment (its service's environment file,",
        "# e.g. /etc/default/haproxy, or a systemd drop-in) and the same value as",
        f"# {PREVIEW_SECRET} in secrets.env (config/deploy/secrets.env by default): the",
        "# preview_http fixture sends it, and no output shows it. Make one with:",
        "# openssl rand -hex 24. Without it (unset) the route is off.",
        "# Restrict it by source too: set BG_PREVIEW_SOURCES in HAProxy's environment to the",
        '# client addresses or networks that may use it, e.g. "10.0.0.0/8 192.0.2.7" (default:',
        "# any address).",
        "#",
        "# Add each block below where its title says (line numbers of the file as it is now;",
        "# insert from the last block up, so the numbers hold), then check and reload:",
        f"# haproxy -c -f {source} && systemctl reload haproxy",
    ]
    if skipped:
        header += ["#", "# Not proposed:", *(f"#   {line}" for line in skipped)]
    out = header
    for number, block in enumerate(blocks, start=1):
        out += ["", f"# --- {number}. {block.where}", *block.lines]
    return "\n".join(out) + "\n"
