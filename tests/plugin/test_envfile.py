"""``envfile.parse_env`` reads env files as python-dotenv does (without interpolation)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from dotenv import dotenv_values

from pytest_bluegreen.envfile import parse_env, read_env_file

LINES = [
    pytest.param("A=1", id="plain"),
    pytest.param("export B=two words", id="export"),
    pytest.param("C='single # quoted'", id="single-quoted-hash"),
    pytest.param('D="dq \\"x\\" \\n y"', id="double-quoted-escapes"),
    pytest.param("E=val # comment", id="inline-comment"),
    pytest.param("F=val#not-a-comment", id="hash-without-space"),
    pytest.param("NO_VALUE", id="no-equals"),
    pytest.param("G=", id="empty"),
    pytest.param("# a comment", id="comment"),
    pytest.param("H = spaced ", id="spaces"),
    pytest.param('I="multi\nline"', id="multi-line"),
    pytest.param("J='a\\nb'", id="single-quoted-backslash"),
    pytest.param("K=${A}/x", id="no-interpolation"),
    pytest.param("L='x' # c", id="quoted-then-comment"),
    pytest.param('M="y" trailing', id="quoted-then-garbage"),
    pytest.param("  N=indented", id="indented"),
    pytest.param("O=a=b", id="equals-in-value"),
    pytest.param('P="\\\\back"', id="escaped-backslash"),
    pytest.param("Q='it''s'", id="two-single-quoted"),
    pytest.param('R="tab\\there"', id="tab-escape"),
    pytest.param("S=   ", id="blank-value"),
    pytest.param('T="a # b"', id="double-quoted-hash"),
    pytest.param("U=ünï €", id="unicode"),
    pytest.param('V=p@ss/w#rd"&<>', id="punctuation"),
]


def python_dotenv(text: str) -> dict[str, str]:
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {k: v for k, v in values.items() if v is not None}


@pytest.mark.parametrize("line", LINES)
def test_each_line_as_python_dotenv(line: str) -> None:
    text = f"BEFORE=1\n{line}\nAFTER=2\n"
    assert parse_env(text) == python_dotenv(text)


def test_a_whole_file_as_python_dotenv() -> None:
    text = "\n".join(str(p.values[0]) for p in LINES) + "\n"
    parsed = parse_env(text)
    assert parsed == python_dotenv(text)
    assert len(parsed) > 15


def test_an_unterminated_quote_skips_only_its_line() -> None:
    assert parse_env("A='open\nB=2\n") == {"B": "2"}
    assert parse_env('A="open\n') == {}


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "none.env") == {}
