"""PromQL checks and comparisons: queries from the settings, judged against thresholds or rules.

The checks and comparisons, their grammar and their judging are :mod:`.queries`'s; the client
of Prometheus' HTTP API, its results and its errors are :mod:`.prometheus`'s. This module hands
on both under one name (``pytest_bluegreen.judge.promql``, the old ``pytest_bluegreen.promql``),
for the bake, the fixtures and check authors.
"""

from __future__ import annotations

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
    judge,
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
    "judge",
    "parse_checks_table",
    "parse_comparisons_table",
    "promql_duration",
]
