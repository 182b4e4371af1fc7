"""Reading the seed's env files (``shared.env``, ``<color>.env``, ``secrets.env``).

The dotenv format as python-dotenv and Docker Compose read it, without interpolation:
``KEY=value``, an optional ``export``, ``#`` comments (inline ones after whitespace),
single-quoted values taken literally, double-quoted ones with ``\\"``, ``\\\\``, ``\\n``, ``\\t``
escapes and spanning lines. A line without ``=`` is ignored. Written here so that the bare
install needs no more than pytest, xdist and requests; ``tests/plugin/test_envfile.py`` checks it
against python-dotenv on a table of cases.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["parse_env", "read_env_file"]

_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "'": "'"}


def read_env_file(path: Path) -> dict[str, str]:
    """The file's variables; a missing file is empty."""
    if not path.is_file():
        return {}
    return parse_env(path.read_text(errors="replace"))


def parse_env(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        match = _KEY.match(text, pos, end)
        if match is None:
            pos = end + 1
            continue
        key, start = match[1], match.end()
        quote = text[start : start + 1]
        if quote == "'":
            close = text.find("'", start + 1)
            if close < 0:
                pos = end + 1
                continue
            pos = _line_end(text, close + 1)
            if pos >= 0:
                values[key] = text[start + 1 : close]
            else:
                pos = end + 1
        elif quote == '"':
            value, after = _double_quoted(text, start + 1)
            if after < 0:
                pos = end + 1
                continue
            pos = _line_end(text, after)
            if pos >= 0:
                values[key] = value
            else:
                pos = end + 1
        else:
            raw = text[start:end]
            comment = re.search(r"\s#", raw)
            values[key] = (raw[: comment.start()] if comment else raw).strip()
            pos = end + 1
    return values


def _double_quoted(text: str, pos: int) -> tuple[str, int]:
    """The value from after an opening ``"`` and the position after the closing one (-1:
    never closed)."""
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text) and text[pos + 1] in _ESCAPES:
            out.append(_ESCAPES[text[pos + 1]])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    return "", -1


def _line_end(text: str, pos: int) -> int:
    """Past the end of the line after a quoted value, or -1 when more than whitespace and a
    comment follows the value on its line (python-dotenv does not take such a line)."""
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    rest = text[pos:end].strip()
    if rest and not rest.startswith("#"):
        return -1
    return end + 1
