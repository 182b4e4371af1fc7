"""k6-style thresholds: parsing, tables, evaluation against LoadResults, percentiles."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest

from pytest_bluegreen.judge.load import LoadResult, Sample, percentile
from pytest_bluegreen.judge.thresholds import (
    BAKE_DEFAULTS,
    DEFAULT_BAKE_THRESHOLDS,
    Threshold,
    ThresholdError,
    Violation,
    evaluate,
    parse,
    parse_bake_thresholds,
    parse_series,
    parse_table,
)

# --- parse ---------------------------------------------------------------------------------------

STATS = {
    "p(95)": ("p(95)", 95.0, "ms"),
    "p(99.9)": ("p(99.9)", 99.9, "ms"),
    "p(100)": ("p(100)", 100.0, "ms"),
    "avg": ("avg", None, "ms"),
    "med": ("med", None, "ms"),
    "min": ("min", None, "ms"),
    "max": ("max", None, "ms"),
    "rate": ("rate", None, ""),
    "rps": ("rps", None, ""),
}
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("stat", STATS)
def test_parse_every_stat_and_operator(stat: str, op: str) -> None:
    threshold = parse(f"{stat}{op}12.5")
    name, pct, unit = STATS[stat]
    assert threshold == Threshold(f"{stat}{op}12.5", name, op, 12.5, pct)
    assert threshold.unit == unit


def test_parse_allows_spaces_and_keeps_the_stripped_text() -> None:
    threshold = parse("  p(95) <  300 ")
    assert threshold == Threshold("p(95) <  300", "p(95)", "<", 300.0, 95.0)


@pytest.mark.parametrize(
    ("op", "measured", "holds"),
    [
        ("<", 299.9, True),
        ("<", 300.0, False),
        ("<=", 300.0, True),
        ("<=", 300.1, False),
        (">", 300.1, True),
        (">", 300.0, False),
        (">=", 300.0, True),
        (">=", 299.9, False),
        ("==", 300.0, True),
        ("==", 300.1, False),
        ("!=", 300.1, True),
        ("!=", 300.0, False),
    ],
)
def test_operators_compare_measured_to_the_limit(op: str, measured: float, holds: bool) -> None:
    assert parse(f"avg{op}300").holds(measured) is holds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "p95<300",  # k6 writes p(95)
        "p()<300",
        "p(95)<",
        "<300",
        "p(95)300",
        "p(95)=<300",
        "p(95)<<300",
        "p(95)=300",  # k6 has no single '='
        "latency<300",
        "AVG<300",
        "avg<300ms",  # no units: durations are ms
        "avg<1e3",
        "avg<-1",
        "rate<.01",
        "p(95)<300 and rate<0.01",
        "p(95)<\u0663\u0660\u0660",  # Arabic-Indic 300: a digit to Python's \\d and float()
        "p(\u0669\u0665)<300",
    ],
)
def test_bad_expressions_raise_with_the_text(text: str) -> None:
    like = "is not a threshold like 'p(95)<300', 'avg<200' or 'rate<0.01'"  # what one looks like
    with pytest.raises(ThresholdError, match=f"^{re.escape(f'{text!r} {like}')}$"):
        parse(text)


@pytest.mark.parametrize("text", ["p(0)<300", "p(100.5)<300", "p(101)<1"])
def test_percentile_out_of_range_is_an_error(text: str) -> None:
    with pytest.raises(ThresholdError, match=r"percentile must be in \(0, 100\]") as info:
        parse(text)
    assert repr(text) in str(info.value)


NINES = "9" * 400  # a finite text, an infinite float


@pytest.mark.parametrize(
    ("grammar", "text"),
    [
        pytest.param(parse, f"p(95)<{NINES}", id="threshold"),
        pytest.param(parse_series, f"value<{NINES}", id="series-nines"),
        pytest.param(parse_series, "value<1e400", id="series-exponent"),
        pytest.param(
            lambda t: parse_bake_thresholds({"haproxy": [t]}), f"eresp<{NINES}", id="bake"
        ),
    ],
)
def test_a_limit_too_large_for_a_float_is_refused(grammar: Any, text: str) -> None:
    """An infinite limit is one no measure misses (``<``) or every one does (``>``): a typo,
    not a threshold."""
    with pytest.raises(ThresholdError, match=r"is too large a number$"):
        grammar(text)


def test_threshold_error_is_a_value_error() -> None:
    assert issubclass(ThresholdError, ValueError)


# --- parse_table ---------------------------------------------------------------------------------


def test_parse_table() -> None:
    table = parse_table({"/health": ["p(95)<300", "rate<0.01"], "/version": "avg<100"})
    assert list(table) == ["/health", "/version"]
    assert [t.text for t in table["/health"]] == ["p(95)<300", "rate<0.01"]
    assert table["/version"] == (Threshold("avg<100", "avg", "<", 100.0),)


def test_parse_table_may_be_empty() -> None:
    assert parse_table({}) == {}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ([["/health", "p(95)<300"]], "thresholds must be a table"),
        ("p(95)<300", "thresholds must be a table"),
        (None, "thresholds must be a table"),
        ({"health": ["p(95)<300"]}, "threshold endpoint 'health' must be a path starting '/'"),
        ({"": ["p(95)<300"]}, "threshold endpoint '' must be a path starting '/'"),
        ({1: ["p(95)<300"]}, "threshold endpoint 1 must be a path"),
        ({"/health": []}, "thresholds for /health must be a non-empty list"),
        ({"/health": 300}, "thresholds for /health must be a non-empty list"),
        ({"/health": {"p(95)": 300}}, "thresholds for /health must be a non-empty list"),
        ({"/health": ["p(95)<300", "fast"]}, "'fast' is not a threshold"),
        ({"/health": ["p(0)<300"]}, "percentile must be in"),
    ],
)
def test_parse_table_errors(table: object, message: str) -> None:
    with pytest.raises(ThresholdError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_table(table)


# --- evaluate ------------------------------------------------------------------------------------


def sample(latency_ms: float, status: int | None = 200, error: str | None = None) -> Sample:
    return Sample("keepalive-get", 0.0, latency_ms / 1000, status, "green", error)


def load(samples: Sequence[Sample], wall: float = 1.0) -> LoadResult:
    return LoadResult(samples=list(samples), started=100.0, finished=100.0 + wall)


# 100 successful requests of 1..100 ms over 2 s: p(95)=95, avg=50.5, med=50, min=1, max=100,
# rate=0, rps=50
HEALTHY = load([sample(ms) for ms in range(1, 101)], wall=2.0)


def test_evaluate_passes_when_every_threshold_holds() -> None:
    thresholds = [
        parse(t)
        for t in (
            "p(95)<=95",
            "p(50)<51",
            "avg<50.6",
            "med==50",
            "min>=1",
            "max<=100",
            "rate<0.01",
            "rps>=50",
        )
    ]
    assert evaluate("/health", thresholds, HEALTHY) == []


@pytest.mark.parametrize(
    ("text", "measured"),
    [
        ("p(95)<95", 95.0),
        ("p(99)<90", 99.0),
        ("p(100)<100", 100.0),
        ("avg<50", 50.5),
        ("med<50", 50.0),
        ("min>1", 1.0),
        ("max<100", 100.0),
        ("rps>60", 50.0),
        ("rate>0", 0.0),
    ],
)
def test_each_kind_of_violation_reports_the_measured_value(text: str, measured: float) -> None:
    threshold = parse(text)
    violations = evaluate("/health", [parse("rate<0.01"), threshold], HEALTHY)
    assert len(violations) == 1
    assert violations[0].endpoint == "/health"
    assert violations[0].threshold == threshold
    assert violations[0].measured == pytest.approx(measured)


def test_rate_violation_counts_errors_and_bad_statuses() -> None:
    samples = [sample(10) for _ in range(16)]
    samples += [
        sample(5, status=500),
        sample(5, status=503),
        sample(5, status=404),  # unexpected status: failed too
        sample(2, status=None, error="ConnectionRefusedError: [Errno 111] Connection refused"),
    ]
    violations = evaluate("/api/echo", [parse("rate<0.01"), parse("p(95)<300")], load(samples))
    assert [(v.threshold.text, v.measured) for v in violations] == [("rate<0.01", 0.2)]


def test_latency_stats_ignore_failed_requests() -> None:
    """A fast 500 must not make the latency look good: percentiles are over successes only."""
    samples = [sample(400) for _ in range(10)] + [sample(1, status=500) for _ in range(90)]
    result = load(samples)
    for text in ("p(50)<300", "avg<300", "med<300", "min<300", "max<300"):
        (violation,) = evaluate("/health", [parse(text)], result)
        assert violation.measured == pytest.approx(400)


def test_no_successful_request_fails_on_the_rate() -> None:
    result = load([sample(5, status=500) for _ in range(10)])
    (violation,) = evaluate("/health", [parse("rate<0.01")], result)
    assert violation.measured == 1.0


def test_no_successful_request_misses_latency_thresholds() -> None:
    result = load([sample(5, status=500) for _ in range(10)])
    thresholds = [parse(t) for t in ("p(95)<300", "avg<300", "med<300", "max<300")]
    assert len(evaluate("/health", thresholds, result)) == 4


def test_empty_result_has_no_errors_and_no_throughput() -> None:
    result = load([], wall=0.0)
    assert parse("rate<1").measure(result) == 0.0
    assert parse("rps<1").measure(result) == 0.0


def test_violation_text_names_measured_value_and_threshold() -> None:
    (violation,) = evaluate("/health", [parse("p(95)<300")], load([sample(412.25)]))
    assert str(violation) == "/health: p(95)=412.2ms misses threshold 'p(95)<300'"
    rate = Violation("/api/echo", parse("rate<0.01"), 0.25)
    assert str(rate) == "/api/echo: rate=0.25 misses threshold 'rate<0.01'"


# --- nearest-rank percentiles --------------------------------------------------------------------


def nearest_rank(values: Sequence[float], pct: float) -> float:
    """Brute force, from the definition: the smallest value with at least pct % of the values
    at or below it. Exact arithmetic on the percentile as written ("99.9" is 999/10, not the
    nearest double)."""
    if not values:
        return 0.0
    wanted = Fraction(str(pct)) * len(values) / 100
    return min(v for v in set(values) if sum(1 for w in values if w <= v) >= wanted)


def test_percentile_known_values() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 95) == 10.0
    assert percentile(values, 100) == 10.0
    assert percentile(values, 0.001) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 95) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


# the percentiles thresholds are usually written with
COMMON_PCTS = (1, 10, 25, 50, 75, 90, 95, 99, 99.5, 100, 12.5, 33.3)


def test_percentile_matches_brute_force_for_every_size() -> None:
    for n in range(1, 121):
        values = [float(v) for v in range(n, 0, -1)]
        for pct in COMMON_PCTS:
            assert percentile(values, pct) == nearest_rank(values, pct), (n, pct)


def test_percentile_matches_brute_force_on_random_samples() -> None:
    rng = random.Random(20240604)
    for _ in range(150):
        n = rng.randint(1, 120)
        # few distinct values: duplicates at the rank boundary
        values = [rng.choice((0.5, 1.0, 1.5, 2.0, 30.0)) * rng.randint(1, 3) for _ in range(n)]
        if rng.random() < 0.5:
            values = [rng.expovariate(1 / 20) for _ in range(n)]
        for pct in (*COMMON_PCTS, rng.choice(range(1, 101))):
            if pct in FLOAT_ROUNDING_PCTS:
                continue  # see test_percentile_float_rounding
            assert percentile(values, pct) == nearest_rank(values, pct), (values, pct)


# pct/100*n is computed in binary floating point: 7/100*100 == 7.000000000000001, whose ceiling
# is rank 8, and 99.9/100*1000 likewise gives rank 1000 (the max) instead of 999.
# Every integer percentile this hits for n <= 120 is listed (the random test avoids them).
FLOAT_ROUNDING_CASES = [
    (7, 100),
    (14, 50),
    (28, 25),
    (55, 100),
    (56, 100),
    (68, 75),
    (99.9, 1000),
]
FLOAT_ROUNDING_PCTS = {pct for pct, _ in FLOAT_ROUNDING_CASES}


@pytest.mark.parametrize(("pct", "n"), FLOAT_ROUNDING_CASES)
def test_percentile_float_rounding(pct: float, n: int) -> None:
    values = [float(v) for v in range(1, n + 1)]
    assert percentile(values, pct) == nearest_rank(values, pct)


# --- the bake's thresholds on HAProxy's counters --------------------------------------------------


def test_the_bake_defaults_are_the_default_table_parsed() -> None:
    """``BAKE_DEFAULTS`` is written parsed (every session's settings hold it, no pattern is
    compiled for it): the same as parsing ``DEFAULT_BAKE_THRESHOLDS``."""
    assert parse_bake_thresholds(DEFAULT_BAKE_THRESHOLDS) == BAKE_DEFAULTS
    assert DEFAULT_BAKE_THRESHOLDS == {"haproxy": ["http_5xx_rate<0.01", "eresp<1", "econ<1"]}
