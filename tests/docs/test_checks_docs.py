"""docs/adding-a-check.md tells the truth about checks/: its table of checks and markers, its
fixture table and its worked example. No stack needed: the checks are only collected."""

from __future__ import annotations

import re

import pytest

from tests.support.stack import ROOT

DOC = ROOT / "docs" / "adding-a-check.md"
MARKERS = {"quick", "shared", "perf", "post"}


def documented_checks() -> dict[str, set[str]]:
    """check function -> markers, from the doc's table of shipped checks."""
    table: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`test_"):
            continue
        name = cells[1].strip("`").split("[")[0]
        table[name] = {m.strip() for m in cells[2].split(",")} & MARKERS
    return table


def test_every_check_is_documented_with_its_markers(pytester: pytest.Pytester) -> None:
    items, _ = pytester.inline_genitems(str(ROOT / "checks"), "--env", "all")
    collected: dict[str, set[str]] = {}
    for item in items:
        if item.path.name in {"test_perf.py", "test_compare.py"}:
            continue  # the perf checks are documented in their modules and docs/after-the-switch.md
        name = item.name.split("[")[0]
        collected[name] = {m.name for m in item.iter_markers()} & MARKERS
    assert collected == documented_checks()


@pytest.mark.parametrize("module", ["fixtures.py", "contrib/services.py"])
def test_fixture_table_is_the_plugins(module: str) -> None:
    docstring = (ROOT / "pytest_bluegreen" / module).read_text()
    plugin_table = re.findall(r"^\|.*\|$", docstring.split('"""')[1], re.MULTILINE)
    assert plugin_table
    assert "\n".join(plugin_table) in DOC.read_text()


def test_worked_example_is_the_shipped_check() -> None:
    example = re.search(
        r"That is `checks/test_agents.py`:\n\n```python\n(.*?)```", DOC.read_text(), re.DOTALL
    )
    assert example is not None
    source = (ROOT / "checks" / "test_agents.py").read_text()
    assert example[1] == source[source.index("from __future__") :]
