"""Prometheus' text exposition format (version 0.0.4), written and read by hand: the few
families the gate publishes need no client library.

- :func:`render` writes families: ``# HELP``, ``# TYPE``, then one line per sample, label
  values escaped as the format says (``\\`` -> ``\\\\``, ``"`` -> ``\\"``, a newline -> ``\\n``;
  the same for HELP text, without the quote);
- :func:`parse` reads samples back (a textfile written before, a Pushgateway's ``/metrics``),
  only those of the metric names asked for, so another exporter's lines never get in the way.

``promtool check metrics`` accepts what :func:`render` writes (tests/test_gate_metrics.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pytest_bluegreen.errors import BluegreenError, ExitCode

__all__ = ["ExpositionError", "Family", "Labels", "Sample", "parse", "render"]

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Kind = Literal["counter", "gauge"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


class ExpositionError(BluegreenError, ValueError):
    """Text that is not in the exposition format (the line number says where). The gate's
    metrics are written and pushed as a warning's matter: one that escaped would be a bug of
    ours."""

    exit_code = ExitCode.INTERNAL_ERROR


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type, help, and its samples (labels -> value)."""

    name: str
    kind: Kind
    help: str
    samples: Mapping[Labels, float] = field(default_factory=dict)


def labels_of(**given: str) -> Labels:
    return tuple(sorted(given.items()))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape(family.help, quote=False)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in sorted(family.samples.items()):
            lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _escape(text: str, *, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v, quote=True)}"' for k, v in labels) + "}"


def _number(given: float) -> str:
    value = float(given)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def parse(text: str, names: Iterable[str]) -> Iterator[Sample]:
    """The samples of the metrics ``names`` in ``text``; other lines are skipped unread.
    Raises ExpositionError on a line of those metrics that does not parse."""
    wanted = set(names)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = _NAME.match(stripped)
        if found is None or found.group() not in wanted:
            continue
        try:
            yield _sample(stripped, found.end(), found.group())
        except (ValueError, IndexError) as exc:
            raise ExpositionError(f"line {number}: {exc}: {line[:120]!r}") from None


def _sample(line: str, at: int, name: str) -> Sample:
    labels: dict[str, str] = {}
    if line[at : at + 1] == "{":
        at = _read_labels(line, at + 1, labels)
    rest = line[at:].split()
    if not rest or len(rest) > 2 or not line[at : at + 1].isspace():
        raise ValueError("expected a value (and an optional timestamp) after the name")
    return Sample(name, tuple(sorted(labels.items())), _value(rest[0]))


def _read_labels(line: str, at: int, into: dict[str, str]) -> int:
    """Labels from just after ``{`` to the closing ``}``; the index after it."""
    while True:
        at = _skip_spaces(line, at)
        if line[at] == "}":
            return at + 1
        found = _LABEL_NAME.match(line, at)
        if found is None:
            raise ValueError(f"a label name expected at column {at + 1}")
        at = _skip_spaces(line, found.end())
        if line[at] != "=":
            raise ValueError(f"'=' expected at column {at + 1}")
        at = _skip_spaces(line, at + 1)
        if line[at] != '"':
            raise ValueError(f"a quoted label value expected at column {at + 1}")
        value, at = _read_quoted(line, at + 1)
        into[found.group()] = value
        at = _skip_spaces(line, at)
        if line[at] == ",":
            at += 1
        elif line[at] != "}":
            raise ValueError(f"',' or '}}' expected at column {at + 1}")


def _read_quoted(line: str, at: int) -> tuple[str, int]:
    out: list[str] = []
    while line[at] != '"':
        if line[at] == "\\":
            escaped = line[at + 1]
            if escaped not in _UNESCAPE:
                raise ValueError(f"unknown escape \\{escaped} at column {at + 1}")
            out.append(_UNESCAPE[escaped])
            at += 2
        else:
            out.append(line[at])
            at += 1
    return "".join(out), at + 1


def _skip_spaces(line: str, at: int) -> int:
    while line[at] in " \t":
        at += 1
    return at


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "Inf": math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    return float(text)
