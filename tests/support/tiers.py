"""The fast tier's sample of a sweep: a full run (``scripts/test``) runs every cell, the fast
tier (``scripts/test --fast``, ``-m "not docker and not slow"``) a diagonal of a cross product,
the first value of a one-dimensional sweep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet

__all__ = ["diagonal", "one_fast"]


def diagonal(rows: Sequence[str], columns: Sequence[str]) -> list[ParameterSet]:
    """Every (row, column) as a ``pytest.param`` (id ``ROW-COLUMN``, rows outermost, as two
    stacked ``parametrize`` give). Those on a diagonal -- every column once, every row at
    least once (the longer side sets the count) -- are the fast tier's; every other cell is
    marked ``slow``."""
    if len(columns) >= len(rows):
        sample = {(rows[i % len(rows)], column) for i, column in enumerate(columns)}
    else:
        sample = {(row, columns[i % len(columns)]) for i, row in enumerate(rows)}
    return [
        pytest.param(row, column, marks=() if (row, column) in sample else pytest.mark.slow)
        for row in rows
        for column in columns
    ]


def one_fast(values: Sequence[str]) -> list[ParameterSet]:
    """A one-dimensional sweep (a Monte Carlo property over several rules, say): the first
    value in the fast tier, the others ``slow``."""
    return [pytest.param(v, marks=() if i == 0 else pytest.mark.slow) for i, v in enumerate(values)]
