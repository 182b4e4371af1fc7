"""``pytest_bluegreen.testing``: what a check author imports (issue 23). Its names are the
objects of the modules behind them, loaded only when asked for; the starter checks, the shipped
checks and the docs import from it (and from the ``contrib.services`` plugin) only."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen import testing

ROOT = Path(__file__).resolve().parents[2]
# what check authors may import from the package: the face, and the services' plugin
ALLOWED = {"pytest_bluegreen.testing", "pytest_bluegreen.contrib.services"}


def test_every_name_is_the_object_where_it_lives() -> None:
    assert sorted(testing.__all__) == sorted(testing.EXPORTS)
    for name, (module, there) in testing.EXPORTS.items():
        home = importlib.import_module(f"pytest_bluegreen.{module}")
        assert getattr(testing, name) is getattr(home, there), name
    assert set(testing.__all__) <= set(dir(testing))


def test_what_the_issue_names_is_there() -> None:
    wanted = {
        "ColorSession",
        "eventually",
        "InfrastructureError",
        "run_load",
        "evaluate_thresholds",
        "settings_of",
        "RuntimeApi",
        "ServerState",
        "StatRow",
    }
    assert wanted <= set(testing.__all__)
    assert callable(testing.eventually)  # the function, not the module of that name


def test_a_name_it_does_not_export_is_an_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'GateRun'"):
        _ = testing.GateRun


LOADED = """
import sys
import pytest_bluegreen{extra}
print(*sorted(m for m in sys.modules if m.startswith("pytest_bluegreen")))
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", ["pytest_bluegreen", "pytest_bluegreen._moved"]),
        (
            ".testing",
            ["pytest_bluegreen", "pytest_bluegreen._moved", "pytest_bluegreen.testing"],
        ),
    ],
    ids=["package", "testing"],
)
def test_importing_it_is_cheap(extra: str, expected: list[str]) -> None:
    """Nothing behind the names loads before a check asks for one (the plugin's import cost:
    benchmarks/plugin_overhead.py)."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(extra=extra)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == expected


def imports_in(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("pytest_bluegreen")}


CHECK_FILES = sorted(
    [
        *(ROOT / "checks").glob("*.py"),
        *(ROOT / "pytest_bluegreen" / "init" / "starter" / "checks").glob("*.py"),
    ]
)


@pytest.mark.parametrize("path", CHECK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_checks_import_the_face_only(path: Path) -> None:
    assert imports_in(path.read_text()) - ALLOWED == set()


def test_the_docs_import_the_face_only() -> None:
    found: dict[str, list[str]] = {}
    written = re.compile(r"^\s*from (pytest_bluegreen[\w.]*) import", re.MULTILINE)
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for module in written.findall(path.read_text()):
            found.setdefault(module, []).append(path.name)
    assert {m: where for m, where in found.items() if m not in ALLOWED} == {}
    assert "pytest_bluegreen.testing" in found  # the walk sees the docs' examples


def test_the_walk_sees_an_internal_import() -> None:
    assert imports_in("from pytest_bluegreen.judge.load import run_load\n") == {
        "pytest_bluegreen.judge.load"
    }
