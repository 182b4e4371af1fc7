"""The fast tier's sample of a sweep (tests/support/tiers.py): every row and every column in
it, every cell in a full run."""

from __future__ import annotations

import pytest

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
