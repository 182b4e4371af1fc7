"""PromQL's pure parts: the tables of the settings, thresholds on a series, the judgement of a
result (empty and NaN are inconclusive, never zero), and a Prometheus signal compared between
two colors. What Prometheus answers is tested against a real one in
tests/judge/test_prometheus.py."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from pytest_bluegreen.judge.compare import CompareDecision, compare_values
from pytest_bluegreen.judge.comparerules import parse_value_rule
from pytest_bluegreen.judge.prometheus import PromQLError, QueryResult, Series
from pytest_bluegreen.judge.queries import (
    PromQLCheck,
    duration,
    judge_query,
    parse_checks_table,
    parse_comparisons_table,
    promql_duration,
)
from pytest_bluegreen.judge.thresholds import ThresholdError, measure_series, parse_series
from pytest_bluegreen.settings import SettingsError, resolve

NAN = math.nan
ERROR_RATE = "sum(rate(x{server=~'{color}-api.*',code='5xx'}[1m]))"


def result(*series: tuple[dict[str, str], tuple[float, ...]]) -> QueryResult:
    return QueryResult("q", "vector", tuple(Series(labels, values) for labels, values in series))


# --- thresholds on a series ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "points", "measured"),
    [
        pytest.param("value<0.01", (0.5, 0.2, 0.005), 0.005, id="value-is-the-last-point"),
        pytest.param("avg<1", (1.0, 2.0, 6.0), 3.0, id="avg"),
        pytest.param("min>0", (4.0, 2.0, 3.0), 2.0, id="min"),
        pytest.param("max<9", (4.0, 2.0, 3.0), 4.0, id="max"),
        pytest.param("med<9", (5.0, 1.0, 3.0, 2.0), 2.0, id="med-nearest-rank"),
        pytest.param("p(90)<9", tuple(float(i) for i in range(1, 11)), 9.0, id="p90"),
        pytest.param("avg<9", (1.0, NAN, 3.0), 2.0, id="avg-skips-nan-points"),
    ],
)
def test_a_series_is_measured(text: str, points: tuple[float, ...], measured: float) -> None:
    assert measure_series(parse_series(text), points) == measured


@pytest.mark.parametrize(
    ("text", "points"),
    [
        pytest.param("value<0.01", (), id="no-point"),
        pytest.param("value<0.01", (0.0, NAN), id="last-point-nan"),
        pytest.param("avg<1", (NAN, NAN), id="only-nan"),
    ],
)
def test_nothing_to_measure_is_nan_and_never_holds(text: str, points: tuple[float, ...]) -> None:
    threshold = parse_series(text)
    measured = measure_series(threshold, points)
    assert math.isnan(measured)
    assert threshold.holds(measured) is False


def test_series_thresholds_take_any_real_number() -> None:
    assert parse_series("value >= -2.5").value == -2.5
    assert parse_series("value<1e-3").value == 0.001
    assert parse_series("  p(99.9) <= 3 ").pct == 99.9


SERIES_LIKE = "is not a threshold like 'value<0.01', 'max<=0.5' or 'p(90)<1e-3'"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        pytest.param("rate<0.01", f"'rate<0.01' {SERIES_LIKE}", id="rate-is-a-loads"),
        pytest.param("rps>10", f"'rps>10' {SERIES_LIKE}", id="rps-is-a-loads"),
        pytest.param("value<", f"'value<' {SERIES_LIKE}", id="no-limit"),
        pytest.param("<1", f"'<1' {SERIES_LIKE}", id="no-metric"),
        pytest.param("value=1", f"'value=1' {SERIES_LIKE}", id="single-equals"),
        pytest.param("p(0)<1", "'p(0)<1': the percentile must be in (0, 100]", id="p0"),
    ],
)
def test_series_thresholds_refuse_what_does_not_measure_a_series(text: str, complaint: str) -> None:
    with pytest.raises(ThresholdError, match=f"^{re.escape(complaint)}"):
        parse_series(text)


# --- judging a result ----------------------------------------------------------------------------

THRESHOLD = (parse_series("value<0.01"),)


def test_every_series_meeting_every_threshold_passes() -> None:
    judged = judge_query(
        "e", result(({"server": "a"}, (0.0,)), ({"server": "b"}, (0.005,))), THRESHOLD
    )
    assert judged.decision is CompareDecision.PASSED
    assert judged.reason == "2 series met 1 threshold(s)"
    assert judged.lines == (
        "{server=\"a\"} value=0 meets 'value<0.01'",
        "{server=\"b\"} value=0.005 meets 'value<0.01'",
    )


def test_one_series_missing_fails_and_is_named() -> None:
    judged = judge_query(
        "e", result(({"server": "a"}, (0.0,)), ({"server": "b"}, (0.05,))), THRESHOLD
    )
    assert judged.decision is CompareDecision.FAILED
    assert judged.reason == '{server="b"} value=0.05 missed a threshold'
    assert "{server=\"b\"} value=0.05 misses threshold 'value<0.01'" in judged.lines


def test_an_empty_result_is_inconclusive_not_zero() -> None:
    judged = judge_query("e", result(), THRESHOLD)
    assert judged.decision is CompareDecision.INCONCLUSIVE
    assert "no series" in judged.reason
    assert "not zero" in judged.reason


def test_nan_is_inconclusive_not_zero() -> None:
    """The Kayenta trap: a 5xx ratio over no request is 0/0 = NaN, which must not pass."""
    judged = judge_query(
        "e",
        result(
            ({}, (NAN,)),
        ),
        THRESHOLD,
    )
    assert judged.decision is CompareDecision.INCONCLUSIVE
    assert judged.reason.startswith("value measured NaN (no data")
    assert judged.lines == ("value=NaN: not judged (value<0.01)",)
    assert math.isnan(judged.measured["{}"]["value<0.01"])
    assert judged.as_dict()["series"] == {"{}": {"value<0.01": None}}


def test_a_miss_outweighs_a_nan_elsewhere() -> None:
    judged = judge_query(
        "e", result(({"server": "a"}, (NAN,)), ({"server": "b"}, (0.5,))), THRESHOLD
    )
    assert judged.decision is CompareDecision.FAILED


def test_infinity_is_judged_not_skipped() -> None:
    judged = judge_query(
        "e",
        result(
            ({}, (math.inf,)),
        ),
        THRESHOLD,
    )
    assert judged.decision is CompareDecision.FAILED


def test_single_wants_one_series() -> None:
    assert result(({}, (0.25,))).single() == 0.25
    assert math.isnan(result().single())
    with pytest.raises(PromQLError, match="gives 2 series, one number is needed"):
        result(({"a": "1"}, (1.0,)), ({"a": "2"}, (2.0,))).single()


# --- the tables ----------------------------------------------------------------------------------


def test_a_checks_table_is_parsed() -> None:
    checks = parse_checks_table(
        {
            "error_rate": {"query": f" {ERROR_RATE} ", "thresholds": ["value<0.01"]},
            "up": {"query": "min(up)", "thresholds": "value>=1", "range": "5m", "step": 15},
        }
    )
    error_rate, up = checks["error_rate"], checks["up"]
    assert (error_rate.query, error_rate.span, error_rate.per_color) == (ERROR_RATE, None, True)
    assert error_rate.render("green") == "sum(rate(x{server=~'green-api.*',code='5xx'}[1m]))"
    assert [t.text for t in up.thresholds] == ["value>=1"]
    assert (up.span, up.step, up.per_color) == (300.0, 15.0, False)


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        pytest.param([], "must be a table", id="not-a-table"),
        pytest.param({"a b": {}}, "'a b' is not a plain name", id="name"),
        pytest.param({"e": "up"}, "e: expected {query", id="entry-not-a-table"),
        pytest.param({"e": {"query": "up"}}, "e: thresholds must be a non-empty list", id="none"),
        pytest.param(
            {"e": {"query": "up", "thresholds": []}}, "thresholds must be a non-empty", id="empty"
        ),
        pytest.param({"e": {"thresholds": ["value<1"]}}, "e: query must be", id="no-query"),
        pytest.param(
            {"e": {"query": "up", "thresholds": ["rate<1"]}}, "e: 'rate<1' is not", id="grammar"
        ),
        pytest.param(
            {"e": {"query": "up", "thresholds": ["value<1"], "window": "5m"}},
            "e: unknown key 'window' (known: query, thresholds, range, step)",
            id="unknown-key",
        ),
        pytest.param(
            {"e": {"query": "x{server='{colour}'}", "thresholds": ["value<1"]}},
            "e: unknown placeholder {colour} (known: {color})",
            id="placeholder",
        ),
        pytest.param(
            {"e": {"query": "up", "thresholds": ["value<1"], "range": "5 minutes"}},
            "e: expected a duration like '5m'",
            id="range",
        ),
        pytest.param(
            {"e": {"query": "up", "thresholds": ["value<1"], "step": "5s"}},
            "e: step needs a range",
            id="step-alone",
        ),
        pytest.param(
            {"e": {"query": "up", "thresholds": ["value<1"], "range": "30d", "step": "1s"}},
            "more than 11000 points",
            id="too-many-points",
        ),
    ],
)
def test_a_bad_checks_table_is_refused_naming_the_entry(table: object, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_checks_table(table)


def test_the_bake_table_takes_interval_but_no_range() -> None:
    query = "sum(rate(x{server=~'{color}-.*'}[{interval}]))"
    [check] = parse_checks_table(
        {"e": {"query": query, "thresholds": ["value<1"]}},
        placeholders=("color", "interval"),
        ranges=False,
    ).values()
    assert check.render("blue", 10.0) == "sum(rate(x{server=~'blue-.*'}[10s]))"
    assert check.render("blue", 2.5) == "sum(rate(x{server=~'blue-.*'}[2500ms]))"
    with pytest.raises(ValueError, match="unknown key 'range'"):
        parse_checks_table(
            {"e": {"query": "up", "thresholds": ["value<1"], "range": "1m"}}, ranges=False
        )


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("5m", 300.0), ("30s", 30.0), ("250ms", 0.25), ("1h", 3600.0), (90, 90.0)],
)
def test_durations(given: object, seconds: float) -> None:
    assert duration(given) == seconds


@pytest.mark.parametrize(
    "given", ["0s", -1, "1w", True, "5 m", float("nan"), "\u0663s", "9" * 400 + "s"]
)
def test_bad_durations(given: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration(given)


def test_promql_durations() -> None:
    assert [promql_duration(s) for s in (10.0, 1.0, 0.5, 2.25)] == ["10s", "1s", "500ms", "2250ms"]


def test_a_comparisons_table_is_parsed_and_needs_color() -> None:
    [signal] = parse_comparisons_table(
        {"ratio": {"query": ERROR_RATE, "rules": ["value <= live * 1.1 + 0.001"]}}
    ).values()
    assert [(r.metric, r.factor, r.delta) for r in signal.rules] == [("value", 1.1, 0.001)]
    for table, complaint in (
        ({"ratio": {"query": "sum(up)", "rules": ["value <= live"]}}, "with {color}"),
        ({"ratio": {"query": ERROR_RATE, "rules": []}}, "rules must be a non-empty list"),
        ({"ratio": {"query": ERROR_RATE, "rules": ["p(95) <= live"]}}, "is not a comparison"),
        ({"ratio": {"query": ERROR_RATE, "rules": ["value <= live"], "x": 1}}, "unknown key"),
    ):
        with pytest.raises(ValueError, match=re.escape(complaint)):
            parse_comparisons_table(table)


# --- comparing one number per color --------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "live", "decision"),
    [
        pytest.param(0.011, 0.01, CompareDecision.PASSED, id="inside-the-tolerance"),
        pytest.param(0.05, 0.01, CompareDecision.FAILED, id="beyond-it"),
        pytest.param(NAN, 0.01, CompareDecision.INCONCLUSIVE, id="new-nan"),
        pytest.param(0.01, NAN, CompareDecision.INCONCLUSIVE, id="live-nan"),
    ],
)
def test_compare_values(new: float, live: float, decision: CompareDecision) -> None:
    rule = parse_value_rule("value <= live * 1.10 + 0.001")
    judged = compare_values(rule, new, live, endpoint="ratio")
    assert judged.decision is decision
    if decision is CompareDecision.INCONCLUSIVE:
        assert "is not zero" in judged.reason
    assert judged.line().startswith("ratio value <= live * 1.10 + 0.001: new ")
    assert "ms" not in judged.line()


def test_compare_values_line() -> None:
    judged = compare_values(parse_value_rule("value < live + 0.01"), 0.05, 0.001, endpoint="r")
    assert judged.line() == (
        "r value < live + 0.01: new 0.05, live 0.001 (tolerated 0.011); "
        "new 0.05 misses the tolerated 0.011: failed"
    )


# --- the settings ------------------------------------------------------------------------------


def test_the_settings_file_carries_the_three_tables(tmp_path: Path) -> None:
    (tmp_path / "bluegreen.toml").write_text(
        'prometheus_url = "http://127.0.0.1:9090"\n'
        "[prometheus_checks.error_rate]\n"
        "query = '''\n  sum(rate(x{server=~\"{color}-api.*\"}[1m]))'''\n"
        'thresholds = ["value<0.01"]\n'
        "[bake_prometheus]\n"
        "e = { query = \"sum(rate(x{server=~'{color}-.*'}[{interval}]))\", "
        'thresholds = ["value<1"] }\n'
        "[compare_prometheus]\n"
        'r = { query = "sum(x{server=~\'{color}-.*\'})", rules = ["value <= live"] }\n'
    )
    settings = resolve({}, {}, {}, tmp_path)
    assert settings.prometheus.prometheus_url == "http://127.0.0.1:9090"
    assert settings.prometheus.checks["error_rate"].render("blue") == (
        'sum(rate(x{server=~"blue-api.*"}[1m]))'
    )
    assert [c.name for c in settings.bake.prometheus] == ["e"]
    assert list(settings.checks.compare_prometheus) == ["r"]
    assert settings.sources["prometheus_checks"] == "file bluegreen.toml prometheus_checks"


def test_the_defaults(tmp_path: Path) -> None:
    settings = resolve({}, {}, {}, tmp_path)
    assert settings.prometheus.prometheus_url is None  # a deployment without Prometheus
    assert (settings.prometheus.checks, settings.bake.prometheus) == ({}, ())
    assert settings.checks.compare_prometheus == {}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param(
            '[prometheus_checks]\ne = { query = "up" }\n',
            "bluegreen: prometheus_checks: e: thresholds must be a non-empty list like "
            '["value<0.01"] (from file bluegreen.toml prometheus_checks)',
            id="checks",
        ),
        pytest.param(
            '[bake_prometheus]\ne = { query = "x[{window}]", thresholds = ["value<1"] }\n',
            "bluegreen: bake_prometheus: e: unknown placeholder {window} (known: {color}, "
            "{interval}) (from file bluegreen.toml bake_prometheus)",
            id="bake",
        ),
        pytest.param(
            'prometheus_url = "ftp://x"\n',
            "bluegreen: prometheus_url",
            id="url",
        ),
    ],
)
def test_bad_prometheus_settings_stop_with_one_line(
    tmp_path: Path, toml: str, message: str
) -> None:
    (tmp_path / "bluegreen.toml").write_text(toml)
    with pytest.raises(SettingsError) as raised:
        resolve({}, {}, {}, tmp_path)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_check_renders_color_only_where_asked() -> None:
    check = PromQLCheck("e", "up{job='{color}'}", (parse_series("value>=1"),))
    assert check.render() == "up{job='{color}'}"
    assert check.render("green") == "up{job='green'}"
