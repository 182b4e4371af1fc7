"""A ``haproxy.cfg``'s text as HAProxy reads it: its words, its environment, its ``.if``
blocks and its sections; pure, no I/O.

Words are split as HAProxy splits them (double quotes expand ``${VAR}``, single quotes do not,
``#`` starts a comment); ``setenv``/``presetenv`` apply in order, as HAProxy applies them;
``.if``/``.elif``/``.else`` blocks are evaluated for the terms HAProxy 2.x knows best
(``defined``, ``streq``, ``strneq``, numbers, ``!``, ``&&``, ``||``); any other term is taken
as true, and said so. ``haproxy/config.py`` reads the sections into the typed model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pytest_bluegreen.errors import UsageError

from .configmodel import FROM_ENVIRONMENT, Variable

__all__ = ["SECTIONS", "Section", "UnreadableCondition", "read_sections", "split_words"]

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
# HAProxy's blanks between words (C's isspace but the newline, which ends a line): not Unicode's
# (a no-break space is part of a word, U+2028 does not end a line); a carriage return or a
# ``#`` outside quotes ends the line
BLANKS = " \t\v\f"
_LINE_ENDS = "#\r"
# a number as HAProxy reads a condition's (strtoll, base 0): a sign, then decimal or 0x hex;
# ASCII digits only, of any length
_INTEGER = re.compile(r"[-+]?(?:0[xX](?P<hex>[0-9a-fA-F]+)|(?P<decimal>[0-9]+))")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


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
    while i < len(line) and line[i] not in _LINE_ENDS:
        if line[i] in BLANKS:
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
_TOKEN = re.compile(r"[ \t\v\f]*(?:(&&|\|\||!|\(|\))|([A-Za-z_]\w*\([^()]*\)|[^ \t\v\f()!&|]+))")
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
            rest = evaluation.expression[position:].strip(BLANKS)
            if rest:
                raise evaluation.unreadable(f"{rest[:10]!r} is not a term")
            break
        position = match.end()
        symbol, term = match.group(1), match.group(2)
        if evaluation.operand_next:
            evaluation.operand(symbol, term, lambda t: _term(t, env, assumptions, evaluation))
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


def _term(term: str, env: _Environment, assumptions: list[str], evaluation: _Evaluation) -> bool:
    """A number (true unless zero, of any length), a predicate HAProxy 2.6 knows, or one it
    does not (a later version's: taken as true and said); any other word HAProxy refuses."""
    number = _INTEGER.fullmatch(term)
    if number is not None:
        return (number["hex"] or number["decimal"]).strip("0") != ""
    match = re.fullmatch(r"([A-Za-z_]\w*)\((.*)\)", term)
    if match is None:
        raise evaluation.unreadable(f"{term[:10]!r} is not a number or a predicate")
    function, argument = match.group(1), match.group(2)
    if function == "defined":
        return argument.strip(BLANKS) in env.values
    if function in {"streq", "strneq"}:
        left, _, right = argument.partition(",")
        return (left == right) == (function == "streq")
    assumptions.append(f".if {term} (line {evaluation.line}) taken as true")
    return True


# --- sections --------------------------------------------------------------------------------


@dataclass
class Section:
    kind: str
    name: str
    line: int
    lines: list[tuple[int, list[str], bool]] = field(default_factory=list)
    base: str | None = None  # "from NAME" (named defaults)


def read_sections(
    text: str, environ: Mapping[str, str], assumptions: list[str]
) -> tuple[list[Section], _Environment]:
    env = _Environment(dict(environ), dict.fromkeys(environ, FROM_ENVIRONMENT))
    sections: list[Section] = []
    blocks: list[tuple[bool, bool, int]] = []  # (this branch active, some taken, its .if line)
    for number, raw in enumerate(text.split("\n"), start=1):  # HAProxy's lines: "\n" only
        # leading blanks and carriage returns skipped, then a carriage return ends the line
        stripped = raw.lstrip(BLANKS + "\r").split("\r", 1)[0].strip(BLANKS)
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
            sections.append(Section(words[0], name, number, base=base))
            continue
        if not sections:
            continue
        section = sections[-1]
        if section.kind == "global":
            _environment_line(words, number, env)
        section.lines.append((number, words, bool(blocks)))
    if blocks:
        raise UnreadableCondition(
            f"line {blocks[-1][2]}: the '.if' block there has no '.endif'; HAProxy refuses it "
            "too (haproxy -c -f FILE)"
        )
    return sections, env


def _directive(
    line: str,
    number: int,
    env: _Environment,
    blocks: list[tuple[bool, bool, int]],
    assumptions: list[str],
) -> None:
    words = split_words(line, env)
    keyword, rest = words[0], words[1:]
    if keyword == ".if":
        value = _enclosing(blocks) and _condition(rest, env, assumptions, number)
        blocks.append((value, value, number))
    elif keyword in {".elif", ".else"} and blocks:
        _, taken, opened = blocks.pop()
        value = _enclosing(blocks) and not taken
        if keyword == ".elif":
            value = value and _condition(rest, env, assumptions, number)
        blocks.append((value, taken or value, opened))
    elif keyword == ".endif" and blocks:
        blocks.pop()
    elif keyword in {".elif", ".else", ".endif"}:
        raise UnreadableCondition(
            f"line {number}: a '{keyword}' without its '.if'; HAProxy refuses it too "
            "(haproxy -c -f FILE)"
        )


def _enclosing(blocks: list[tuple[bool, bool, int]]) -> bool:
    """Every enclosing block's branch is the one taken."""
    return all(active for active, _, _ in blocks)


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
