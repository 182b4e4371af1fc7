"""The ``bluegreen`` command's modules (issue 23): the epilog's exit codes come from the
exit-code table, and no command module returns or compares a bare exit code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pytest_bluegreen.cli.command import EPILOG, build_parser
from pytest_bluegreen.errors import EXIT_CODES

CLI = Path(__file__).resolve().parents[2] / "pytest_bluegreen" / "cli"


def test_the_epilog_names_every_exit_code_of_the_table() -> None:
    text = " ".join(EPILOG.split("exit codes:", 1)[1].split())
    for code, meaning in EXIT_CODES.items():
        first_words = meaning.split(";")[0].split(":")[0].split(" (")[0].strip()
        assert f"{int(code)} {first_words}" in text
    assert build_parser().epilog == EPILOG


def bare_exit_codes(tree: ast.AST) -> list[int]:
    """Lines where an int literal is returned, compared with a code, or passed as a code."""
    found = []

    def literal(node: ast.AST | None) -> bool:
        if isinstance(node, ast.Tuple):
            return any(literal(element) for element in node.elts)
        return (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and node.value in range(len(EXIT_CODES))
        )

    for node in ast.walk(tree):
        if (
            (isinstance(node, ast.Return) and literal(node.value))
            or (isinstance(node, ast.IfExp) and (literal(node.body) or literal(node.orelse)))
            or (
                isinstance(node, ast.Compare)
                and any(
                    "code" in ast.unparse(side)
                    and any(literal(other) for other in node.comparators)
                    for side in (node.left,)
                )
            )
        ):
            found.append(node.lineno)
        elif isinstance(node, ast.Call):
            given = [*node.args[1:], *(k.value for k in node.keywords if k.arg in {"code"})]
            if "report" in ast.unparse(node.func) and any(literal(arg) for arg in given):
                found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_bare_exit_code_in_the_cli(path: Path) -> None:
    assert bare_exit_codes(ast.parse(path.read_text())) == []


def test_the_check_finds_bare_exit_codes() -> None:
    source = (
        "def f(code):\n"
        "    if code == 0:\n"
        "        return 7\n"
        "    report_lines([], 0)\n"
        "    return 0 if code else 1\n"
        "    return code in (0, 1, 2, 5)\n"
    )
    assert sorted(set(bare_exit_codes(ast.parse(source)))) == [2, 3, 4, 5, 6]
