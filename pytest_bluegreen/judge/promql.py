"""PromQL checks and comparisons: queries from the settings, judged against thresholds or rules.

The checks and comparisons, their grammar and their judging are :mod:`.queries`'s; the client
of Prometheus' HTTP API, its results and its errors are :mod:`.prometheus`'s. This module hands
on both under one name (``pytest_bluegreen.judge.promql``, the old ``pytest_bluegreen.promql``),
for the bake, the fixtures and check authors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .prometheus import (
    MAX_POINTS,
    Prometheus,
    PrometheusUnreachable,
    PromQLError,
    QueryResult,
    Series,
    Target,
)
from .queries import (
    PromQLCheck,
    PromQLComparison,
    PromQLJudgement,
    duration,
    judge_query,
    parse_checks_table,
    parse_comparisons_table,
    promql_duration,
)

__all__ = [
    "MAX_POINTS",
    "PromQLCheck",
    "PromQLComparison",
    "PromQLError",
    "PromQLJudgement",
    "Prometheus",
    "PrometheusUnreachable",
    "QueryResult",
    "Series",
    "Target",
    "duration",
    "judge_query",
    "parse_checks_table",
    "parse_comparisons_table",
    "promql_duration",
]

if not TYPE_CHECKING:  # the old names, for one release (issue 23)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"judge": "judge_query"})
