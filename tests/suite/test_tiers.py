"""The fast tier's sample of a sweep (tests/support/tiers.py): every row and every column in
it, every cell in a full run; and tests/slow.txt, the tests a full run measured at seconds."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SLOW_LIST, slow_ids
from tests.support.stack import ROOT
from tests.support.tiers import diagonal, one_fast


@pytest.mark.parametrize(("rows", "columns"), [(7, 9), (2, 9), (4, 3), (3, 3), (1, 5), (5, 1)])
def test_the_diagonal_has_every_row_and_column_and_the_rest_is_slow(
    rows: int, columns: int
) -> None:
    row_names = [f"r{i}" for i in range(rows)]
    column_names = [f"c{i}" for i in range(columns)]
    cells = diagonal(row_names, column_names)
    assert [tuple(c.values) for c in cells] == [(r, c) for r in row_names for c in column_names]
    fast = [tuple(c.values) for c in cells if not c.marks]
    assert {r for r, _ in fast} == set(row_names)
    assert {c for _, c in fast} == set(column_names)
    assert len(fast) == max(rows, columns)
    assert all([m.name for m in c.marks] == ["slow"] for c in cells if c.marks)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_one_value_of_a_sweep_is_fast_and_the_rest_slow(count: int) -> None:
    values = [f"v{i}" for i in range(count)]
    params = one_fast(values)
    assert [p.values for p in params] == [(v,) for v in values]
    assert [[m.name for m in p.marks] for p in params] == [[]] + [["slow"]] * (count - 1)


# --- tests/slow.txt: the tests a full run measured at seconds, left out of the fast tier ----

GROUP_SUFFIX = re.compile(r"@\w+$")  # what tests/conftest.py's collection_finish adds under xdist


def test_every_listed_slow_test_is_still_there() -> None:
    """A renamed or removed test left in tests/slow.txt would silently stop marking: each
    id names a module that exists and a test function defined in it."""
    listed = slow_ids(SLOW_LIST.read_text())
    assert listed, "tests/slow.txt lists nothing"
    missing = []
    for test_id in sorted(listed):
        module, _, name = test_id.partition("::")
        function = name.split("[", 1)[0]
        path = ROOT / module
        if not path.is_file() or f"\ndef {function}(" not in path.read_text():
            missing.append(test_id)
    assert missing == [], "tests/slow.txt names tests that are gone: " + ", ".join(missing)


def test_the_listed_tests_are_marked_slow_and_only_they(request: pytest.FixtureRequest) -> None:
    """This session's collected tests: a listed one has ``slow`` (so ``-m "not slow"`` leaves
    it), one that is neither listed nor slow by its timeout or sweep has not."""
    listed = slow_ids(SLOW_LIST.read_text())
    items = request.session.items
    here = {GROUP_SUFFIX.sub("", item.nodeid): item for item in items}
    for test_id in listed & set(here):
        assert here[test_id].get_closest_marker("slow") is not None, test_id
    mine = here[GROUP_SUFFIX.sub("", request.node.nodeid)]
    assert mine.get_closest_marker("slow") is None


def test_comments_and_blank_lines_are_not_ids() -> None:
    text = "# a comment\n\ntests/a.py::test_b[x y]\n  tests/c.py::test_d  \n#tests/e.py::test_f\n"
    assert slow_ids(text) == {"tests/a.py::test_b[x y]", "tests/c.py::test_d"}
