"""Relative thresholds against the live color: parsing, the statistics, the decision, reports."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from pytest_bluegreen.judge.compare import (
    CompareDecision,
    Comparison,
    compare,
    plot_distributions,
    summary_table,
)
from pytest_bluegreen.judge.comparerules import (
    CompareRule,
    CompareRuleError,
    Samples,
    parse_compare_rule,
    parse_compare_table,
)
from pytest_bluegreen.judge.load import percentile
from pytest_bluegreen.judge.significance import (
    RESAMPLES,
    block_length,
    mean_difference,
    newcombe_interval,
    quantile_difference,
    wilson_interval,
)
from tests.support.tiers import diagonal, one_fast

PASSED, FAILED, INCONCLUSIVE = (
    CompareDecision.PASSED,
    CompareDecision.FAILED,
    CompareDecision.INCONCLUSIVE,
)


def lognormal(rng: np.random.Generator, n: int, scale: float = 10.0, sigma: float = 0.3) -> Samples:
    """n successful latencies (ms) with median ``scale``."""
    return Samples.of(float(v) for v in scale * rng.lognormal(0.0, sigma, n))


def decisions(rule: str, shift: float, *, reps: int, n: int, seed: int) -> Counter[str]:
    """How often each decision comes out when the new color is ``shift`` times slower."""
    parsed = parse_compare_rule(rule)
    rng = np.random.default_rng(seed)
    found: Counter[str] = Counter()
    for _ in range(reps):
        live = lognormal(rng, n)
        new = lognormal(rng, n, scale=10.0 * shift)
        found[compare(parsed, new, live).decision] += 1
    return found


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p(95) <= live", CompareRule("p(95) <= live", "p(95)", 95.0, "<=")),
        ("p(99.9)<live*1.5", CompareRule("p(99.9)<live*1.5", "p(99.9)", 99.9, "<", 1.5)),
        (
            "  p( 90 )  <=  live  *  1.10  +  2.5 ",
            CompareRule("p( 90 )  <=  live  *  1.10  +  2.5", "p(90)", 90.0, "<=", 1.1, 2.5),
        ),
        ("med <= live * 1.2 + 5", CompareRule("med <= live * 1.2 + 5", "med", None, "<=", 1.2, 5)),
        ("avg < live + 3", CompareRule("avg < live + 3", "avg", None, "<", 1.0, 3.0)),
        ("rate <= live + 0.005", CompareRule("rate <= live + 0.005", "rate", None, "<=", 1, 0.005)),
        ("rate<=live*2", CompareRule("rate<=live*2", "rate", None, "<=", 2.0, 0.0)),
    ],
)
def test_parse_valid_rules(text: str, expected: CompareRule) -> None:
    assert parse_compare_rule(text) == expected


def test_rule_tolerated_and_kind() -> None:
    rule = parse_compare_rule("med <= live * 1.2 + 5")
    assert rule.tolerated(10.0) == pytest.approx(17.0)
    assert not rule.is_rate
    assert parse_compare_rule("rate <= live + 0.005").is_rate


@pytest.mark.parametrize(
    "text",
    [
        "p95 <= live",  # no parentheses
        "p(95) >= live",  # only <= and <
        "p(95) <= 300",  # absolute: that is a threshold, not a comparison
        "p(95) <= live - 5",  # no negative tolerance
        "p(95) <= live + 5 * 1.1",  # factor before delta
        "p(95) <= 1.1 * live",
        "max <= live",
        "rate <= live + -0.1",
        "p(95) <= live * 1e2",
        "p(95) <= live * \u0662",  # an Arabic-Indic 2: a digit to Python's \\d and float()
        "",
    ],
)
def test_parse_rejects_malformed_rules_in_one_line(text: str) -> None:
    with pytest.raises(CompareRuleError) as raised:
        parse_compare_rule(text, "/api/items")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f'"/api/items": {text!r} is not a comparison like')
    assert '"p(95) <= live * 1.10"' in message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("p(100) <= live", "percentile must be between 0 and 100"),
        ("p(0) <= live", "percentile must be between 0 and 100"),
        ("p(95) <= live * 0", "factor must be greater than 0"),
        ("med <= live * 0.0 + 5", "factor must be greater than 0"),
        ("p(95) <= live * " + "9" * 400, "the factor or the delta is too large a number"),
        ("rate <= live + " + "9" * 400, "the factor or the delta is too large a number"),
    ],
)
def test_parse_rejects_out_of_range_numbers(text: str, complaint: str) -> None:
    with pytest.raises(CompareRuleError, match=complaint) as raised:
        parse_compare_rule(text)
    assert text in str(raised.value)
    assert "\n" not in str(raised.value)


def test_parse_table() -> None:
    table = {
        "/api/items": ["p(95) <= live * 1.10", "rate <= live + 0.005"],
        "/health": "med <= live * 1.2 + 5",
    }
    parsed = parse_compare_table(table)
    assert list(parsed) == ["/api/items", "/health"]
    assert [r.metric for r in parsed["/api/items"]] == ["p(95)", "rate"]
    assert parsed["/health"] == (parse_compare_rule("med <= live * 1.2 + 5"),)
    assert parse_compare_table({}) == {}


@pytest.mark.parametrize(
    ("table", "complaint"),
    [
        (["p(95) <= live"], "compare must be a table"),
        ({"api": ["p(95) <= live"]}, "compare endpoint 'api' must be a path starting '/'"),
        ({"/api": []}, 'compare rules for "/api" must be a non-empty list'),
        ({"/api": {"p(95)": "live"}}, 'compare rules for "/api" must be a non-empty list'),
        ({"/api": ["p(95) <= live", 3]}, 'compare rules for "/api" must be strings, not 3'),
        ({"/api": ["p(95) <= live", "p95 <= live"]}, "\"/api\": 'p95 <= live' is not a"),
    ],
)
def test_parse_table_errors(table: object, complaint: str) -> None:
    with pytest.raises(CompareRuleError) as raised:
        parse_compare_table(table)
    assert complaint in str(raised.value)
    assert "\n" not in str(raised.value)


def test_samples_are_consistent() -> None:
    assert Samples.of([1.0, 2.0], errors=3) == Samples((1.0, 2.0), 3, 5)
    with pytest.raises(ValueError, match="errors"):
        Samples((1.0,), 4, 3)
    with pytest.raises(ValueError, match="exceed total"):
        Samples((1.0, 2.0, 3.0), 1, 3)


@pytest.mark.parametrize("odd", [math.nan, math.inf, -1.0])
def test_a_latency_that_is_no_measurement_is_refused(odd: float) -> None:
    """NaN compares false with everything, so a new color of NaN latencies 'missed the
    tolerated value but not beyond noise' and passed every latency rule; an infinite one made
    the differences NaN. No load measures such a value: a clear error, never a verdict."""
    with pytest.raises(ValueError, match=r"not finite numbers of milliseconds >= 0"):
        Samples.of([10.0] * 99 + [odd])


# --- the statistics against known answers --------------------------------------------------------


def scipy_bootstrap(
    x: np.ndarray, y: np.ndarray, statistic: str, *, factor: float, delta: float
) -> np.ndarray:
    """scipy's independent (i.i.d.) bootstrap distribution of the difference."""

    def difference(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        if statistic == "mean":
            qa, qb = np.mean(a, axis=axis), np.mean(b, axis=axis)
        else:
            ka, kb = math.ceil(0.9 * a.shape[axis]), math.ceil(0.9 * b.shape[axis])
            qa = np.sort(a, axis=axis)[..., ka - 1]
            qb = np.sort(b, axis=axis)[..., kb - 1]
        return np.asarray(qa - (qb * factor + delta))

    found = stats.bootstrap(
        (x, y), difference, n_resamples=20_000, method="percentile", vectorized=True,
        random_state=np.random.default_rng(32),
    )  # fmt: skip
    return np.asarray(found.bootstrap_distribution)


@pytest.mark.parametrize("statistic", ["p(90)", "mean"])
def test_with_blocks_of_one_the_interval_is_scipys_independent_bootstrap(statistic: str) -> None:
    rng = np.random.default_rng(31)
    x = 10.0 * rng.lognormal(0.0, 0.5, 120)
    y = 10.0 * rng.lognormal(0.0, 0.5, 150)
    if statistic == "mean":
        estimate, (low, high), p_value = mean_difference(x, y, factor=1.1, delta=0.5, block=1)
        assert estimate == pytest.approx(float(np.mean(x) - (np.mean(y) * 1.1 + 0.5)))
    else:
        estimate, (low, high), p_value = quantile_difference(
            x, y, 90.0, factor=1.1, delta=0.5, block=1
        )
        assert estimate == percentile(list(x), 90) - (percentile(list(y), 90) * 1.1 + 0.5)
    distribution = scipy_bootstrap(x, y, statistic, factor=1.1, delta=0.5)
    # our bounds and p-value carry the Monte Carlo error of RESAMPLES resamples
    noise = 4 * math.sqrt(0.025 * 0.975 / RESAMPLES)
    assert np.mean(distribution <= low) >= 0.025 - noise
    assert np.mean(distribution < low) <= 0.025 + noise
    assert np.mean(distribution < high) <= 0.975 + noise
    assert np.mean(distribution <= high) >= 0.975 - noise
    assert p_value == pytest.approx(np.mean(distribution <= 0), abs=4 * math.sqrt(0.25 / RESAMPLES))


def test_the_interval_is_reproducible() -> None:
    rng = np.random.default_rng(33)
    x, y = rng.normal(10.0, 1.0, 300), rng.normal(10.0, 1.0, 300)
    first = quantile_difference(x, y, 95.0)
    assert quantile_difference(list(x), list(y), 95.0) == first
    estimate, (low, high), p_value = first
    assert low <= estimate <= high
    assert 0.0 <= p_value <= 1.0
    assert mean_difference(x, y) == mean_difference(x, y)


def test_the_block_grows_slowly_with_the_sample() -> None:
    assert [block_length(n) for n in (1, 2, 8, 50, 300, 1000, 5000)] == [1, 2, 4, 7, 13, 20, 34]
    with pytest.raises(ValueError, match="at least one"):
        block_length(0)


def test_the_lower_bound_is_above_zero_exactly_when_p_is_below_the_tail() -> None:
    rng = np.random.default_rng(34)
    for shift in np.linspace(0.0, 0.6, 25):
        x, y = rng.normal(10.0 + shift, 1.0, 200), rng.normal(10.0, 1.0, 200)
        for _, (low, _), p_value in (quantile_difference(x, y, 50.0), mean_difference(x, y)):
            assert (low > 0) == (p_value < 0.025), (shift, low, p_value)


def bursty(rng: np.random.Generator, n: int, scale: float = 10.0, phi: float = 0.35) -> np.ndarray:
    """n latencies whose consecutive values are alike, as a busy machine gives them: a GC pause
    or a neighbour's burst slows a run of requests of one process (log-latencies an AR(1) series
    with lag-1 autocorrelation ``phi``; each value's own spread is lognormal(0, 0.2))."""
    noise = rng.normal(0.0, math.sqrt(1 - phi * phi), n)
    series = np.empty(n)
    series[0] = rng.normal()
    for index in range(1, n):
        series[index] = phi * series[index - 1] + noise[index]
    return scale * np.exp(0.2 * series)


@pytest.mark.parametrize("rule", one_fast(["med <= live", "avg <= live"]))
def test_identical_builds_with_bursty_latencies_rarely_fail(rule: str) -> None:
    # benchmarks/compare.py: consecutive requests of one color are correlated (lag 1: 0.31) on
    # this machine; an interval that takes the requests for independent is too narrow: the exact
    # i.i.d. bootstrap (med) and Welch (avg) failed 18 and 23 of these 200 comparisons (9%, 12%;
    # 2.5% nominal). The block bootstrap fails 11 and 10 (its own bias at 23 blocks a color)
    parsed = parse_compare_rule(rule)
    rng = np.random.default_rng(25)
    found = Counter(
        compare(parsed, Samples.of(bursty(rng, 300)), Samples.of(bursty(rng, 300))).decision
        for _ in range(200)
    )
    assert found[INCONCLUSIVE] == 0
    assert found[FAILED] <= 12, found  # 6%


@pytest.mark.parametrize("rule", one_fast(["med <= live", "avg <= live", "p(95) <= live"]))
def test_a_twenty_percent_slowdown_with_bursty_latencies_is_detected(rule: str) -> None:
    parsed = parse_compare_rule(rule)
    rng = np.random.default_rng(26)
    found = Counter(
        compare(
            parsed, Samples.of(bursty(rng, 300, scale=12.0)), Samples.of(bursty(rng, 300))
        ).decision
        for _ in range(50)
    )
    assert found[FAILED] >= 45, found


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
        ((10, 10, 0, 10), (0.6075, 1.0)),
    ],
)
def test_newcombe_interval_matches_the_published_table(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857-872: 81/263, method 3
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_newcombe_interval_scales_the_live_proportion_by_the_factor() -> None:
    # p1 - 2 * p2: the live Wilson interval (and so its distances to p2) doubles
    low1, high1 = wilson_interval(30, 400)
    low2, high2 = wilson_interval(10, 400)
    p1, p2 = 30 / 400, 10 / 400
    expected = (
        p1 - 2 * p2 - math.sqrt((p1 - low1) ** 2 + (2 * (high2 - p2)) ** 2),
        p1 - 2 * p2 + math.sqrt((high1 - p1) ** 2 + (2 * (p2 - low2)) ** 2),
    )
    assert newcombe_interval(30, 400, 10, 400, factor=2.0) == pytest.approx(expected)


# --- the decision --------------------------------------------------------------------------------


def test_identical_distributions_rarely_fail() -> None:
    found = decisions("p(50) <= live", 1.0, reps=200, n=200, seed=20240611)
    assert found[INCONCLUSIVE] == 0
    assert found[FAILED] / 200 <= 0.05  # one-sided 2.5% expected
    assert found[PASSED] >= 190


@pytest.mark.parametrize("rule", one_fast(["med <= live", "p(95) <= live", "avg <= live * 1.05"]))
def test_a_twenty_percent_slowdown_is_detected(rule: str) -> None:
    found = decisions(rule, 1.2, reps=100, n=300, seed=11)
    # p(95): 93 (the i.i.d. bootstrap found 95 or more here, on independent samples only)
    assert found[FAILED] >= (90 if rule == "p(95) <= live" else 95)


def test_a_twenty_percent_slowdown_within_tolerance_passes() -> None:
    found = decisions("p(95) <= live * 1.30", 1.2, reps=100, n=300, seed=12)
    assert found[PASSED] >= 95


def test_a_faster_new_color_passes() -> None:
    found = decisions("med <= live", 0.8, reps=20, n=300, seed=13)
    assert found[PASSED] == 20


def test_a_shift_in_the_middle_with_the_tail_in_tolerance_passes_a_tail_rule() -> None:
    rng = np.random.default_rng(3)
    live = Samples.of(float(v) for v in 10.0 * rng.lognormal(0.0, 0.6, 400))
    new = Samples.of(float(v) for v in 13.0 * rng.lognormal(0.0, 0.2, 400))  # slower, narrower
    tail = compare(parse_compare_rule("p(95) <= live * 1.05"), new, live)
    assert tail.interval is not None
    assert tail.new_value <= tail.tolerated  # the p95 is within tolerance
    assert tail.decision is PASSED
    assert "meets the tolerated" in tail.reason
    middle = compare(parse_compare_rule("med <= live * 1.05"), new, live)
    assert middle.decision is FAILED


# --- the statistic the rule names: tails, means, medians -----------------------------------------


def with_tail(body: np.ndarray, *, extra_ms: float, every: int = 10) -> Samples:
    """``body`` with every ``every``-th request ``extra_ms`` slower: a regression in the tail."""
    slow = body.copy()
    slow[::every] += extra_ms
    return Samples.of(float(v) for v in slow)


@pytest.mark.parametrize(
    "rule", ["p(95) <= live * 1.10", "p(99) <= live * 1.10", "avg <= live * 1.10"]
)
def test_a_tail_regression_fails_the_rules_on_the_tail_and_the_mean(rule: str) -> None:
    # issue 21: live N(10 ms, 1) against a new color with 10% of its requests +290 ms
    rng = np.random.default_rng(21)
    live = Samples.of(float(v) for v in rng.normal(10.0, 1.0, 300))
    new = with_tail(rng.normal(10.0, 1.0, 300), extra_ms=290.0)
    found = compare(parse_compare_rule(rule), new, live)
    assert found.new_value > found.tolerated
    assert found.interval is not None
    assert found.interval[0] > 0, found.line()
    assert found.decision is FAILED, found.line()


def test_a_tail_regression_leaves_the_median_rule_alone() -> None:
    rng = np.random.default_rng(22)
    live = Samples.of(float(v) for v in rng.normal(10.0, 1.0, 300))
    new = with_tail(rng.normal(10.0, 1.0, 300), extra_ms=290.0)
    assert compare(parse_compare_rule("med <= live * 1.10"), new, live).decision is PASSED


@pytest.mark.parametrize("rule", one_fast(["p(99) <= live * 1.10", "avg <= live * 1.10"]))
def test_a_random_ten_percent_tail_is_caught_on_almost_every_seed(rule: str) -> None:
    parsed = parse_compare_rule(rule)
    rng = np.random.default_rng(23)
    failed = 0
    for _ in range(100):
        live = Samples.of(float(v) for v in rng.normal(10.0, 1.0, 300))
        body = rng.normal(10.0, 1.0, 300)
        body[rng.random(300) < 0.10] += 290.0
        failed += compare(parsed, Samples.of(float(v) for v in body), live).decision is FAILED
    assert failed >= 95


SHAPES = ("lognormal", "normal", "tail")


def identical(rng: np.random.Generator, shape: str, n: int) -> Samples:
    """n latencies (ms) of one of a few shapes a service's latencies take."""
    if shape == "lognormal":
        values = 10.0 * rng.lognormal(0.0, 0.5, n)
    elif shape == "normal":
        values = rng.normal(10.0, 1.0, n)
    else:  # a slow path taken by 10% of the requests, on both colors alike
        values = rng.normal(10.0, 1.0, n)
        values[rng.random(n) < 0.10] += 290.0
    return Samples.of(float(v) for v in values)


@pytest.mark.parametrize(
    ("rule", "shape"),
    diagonal(["p(95) <= live", "p(99) <= live", "med <= live", "avg <= live"], SHAPES),
)
def test_identical_builds_rarely_fail_any_rule(rule: str, shape: str) -> None:
    parsed = parse_compare_rule(rule)
    rng = np.random.default_rng(24)
    found = Counter(
        compare(parsed, identical(rng, shape, 300), identical(rng, shape, 300)).decision
        for _ in range(150)
    )
    assert found[INCONCLUSIVE] == 0
    assert found[FAILED] <= 150 * 0.05  # one-sided 2.5% at 95% confidence


def test_a_missed_metric_without_significance_passes() -> None:
    rng = np.random.default_rng(5)
    live = lognormal(rng, 60, sigma=0.8)
    new = Samples.of(v * 1.02 for v in lognormal(rng, 60, sigma=0.8).latencies_ms)
    found = compare(parse_compare_rule("p(50) <= live"), new, live)
    assert found.interval is not None
    assert found.interval[0] <= 0
    assert found.decision is PASSED


def test_the_tolerance_transforms_the_live_latencies() -> None:
    rng = np.random.default_rng(9)
    live, new = lognormal(rng, 200), lognormal(rng, 200)
    plain = compare(parse_compare_rule("med <= live"), new, live)
    loose = compare(parse_compare_rule("med <= live * 1.1 + 2"), new, live)
    y = np.asarray(live.latencies_ms) * 1.1 + 2
    assert loose.shift == pytest.approx(quantile_difference(new.latencies_ms, y, 50.0)[0])
    assert loose.interval == pytest.approx(quantile_difference(new.latencies_ms, y, 50.0)[1])
    assert loose.tolerated == pytest.approx(plain.live_value * 1.1 + 2)
    assert plain.shift is not None
    assert loose.shift is not None
    assert loose.shift < plain.shift - 2
    assert plain.new_value == percentile(new.latencies_ms, 50)


def test_metric_values_are_nearest_rank_percentiles_and_the_mean() -> None:
    samples = Samples.of([float(v) for v in range(1, 101)])
    assert parse_compare_rule("p(95) <= live").measure(samples) == 95.0
    assert parse_compare_rule("p(99.5) <= live").measure(samples) == 100.0
    assert parse_compare_rule("med <= live").measure(samples) == 50.0
    assert parse_compare_rule("avg <= live").measure(samples) == 50.5
    assert math.isnan(parse_compare_rule("avg <= live").measure(Samples.of([])))


def test_too_few_samples_are_inconclusive() -> None:
    rng = np.random.default_rng(1)
    new = Samples.of(lognormal(rng, 23).latencies_ms, errors=100)  # 123 requests, 23 succeeded
    live = lognormal(rng, 400)
    found = compare(parse_compare_rule("p(95) <= live * 1.10"), new, live)
    assert found.decision is INCONCLUSIVE
    assert found.reason == "needs at least 50 successful requests per color (new 23, live 400)"
    assert found.shift is None
    assert found.interval is None
    assert found.samples == (23, 400)
    fewer = compare(parse_compare_rule("p(95) <= live"), new, live, min_samples=20)
    assert fewer.decision is not INCONCLUSIVE
    rate = compare(parse_compare_rule("rate <= live"), Samples.of([], 10), live)
    assert rate.decision is INCONCLUSIVE
    assert "needs at least 50 requests per color (new 10, live 400)" in rate.reason


def test_rate_many_more_errors_fails() -> None:
    rule = parse_compare_rule("rate <= live + 0.005")
    new = Samples.of([10.0] * 380, errors=20)  # 5%
    live = Samples.of([10.0] * 400)
    found = compare(rule, new, live)
    assert found.decision is FAILED
    assert found.new_value == 0.05
    assert found.tolerated == pytest.approx(0.005)
    assert found.shift == pytest.approx(0.045)
    assert found.interval is not None
    assert found.interval[0] > 0
    low, high = newcombe_interval(20, 400, 0, 400)
    assert found.interval == pytest.approx((low - 0.005, high - 0.005))
    assert found.p_value is not None
    assert found.p_value < 0.025


def test_rate_a_small_difference_passes() -> None:
    rule = parse_compare_rule("rate <= live + 0.005")
    new = Samples.of([10.0] * 995, errors=5)  # 0.5%
    live = Samples.of([10.0] * 996, errors=4)  # 0.4%
    found = compare(rule, new, live)
    assert found.decision is PASSED
    assert found.p_value is not None
    assert found.p_value > 0.5


@pytest.mark.parametrize("text", ["rate <= live", "rate < live", "rate <= live * 2 + 0.001"])
def test_rate_no_errors_anywhere_passes(text: str) -> None:
    clean = Samples.of([10.0] * 400)
    found = compare(parse_compare_rule(text), clean, clean)
    assert found.decision is PASSED
    assert found.p_value == 1.0
    assert found.interval is not None
    assert found.interval[0] < 0


def test_rate_errors_below_significance_pass_despite_the_missed_metric() -> None:
    found = compare(
        parse_compare_rule("rate <= live"), Samples.of([1.0] * 98, 2), Samples.of([1.0] * 100)
    )
    assert found.new_value > found.tolerated
    assert found.decision is PASSED


def test_rejects_bad_confidence() -> None:
    clean = Samples.of([10.0] * 60)
    with pytest.raises(ValueError, match="confidence"):
        compare(parse_compare_rule("med <= live"), clean, clean, confidence=95)


def test_all_equal_latencies_pass_with_a_defined_p_value() -> None:
    flat = Samples.of([5.0] * 100)
    found = compare(parse_compare_rule("p(95) <= live"), flat, flat)
    assert found.decision is PASSED
    assert found.shift == 0.0
    assert found.interval == (0.0, 0.0)
    assert found.p_value == 1.0


# --- reports -------------------------------------------------------------------------------------


def failing_comparison() -> Comparison:
    rng = np.random.default_rng(21)
    live = lognormal(rng, 300)
    new = lognormal(rng, 300, scale=13.0)
    return compare(parse_compare_rule("p(95) <= live * 1.10"), new, live, endpoint="/api/items")


def test_line_names_the_values_the_interval_and_the_decision() -> None:
    found = failing_comparison()
    line = found.line()
    assert found.decision is FAILED
    assert "\n" not in line
    assert line.startswith("/api/items p(95) <= live * 1.10: ")
    assert f"new {found.new_value:.1f} ms" in line
    assert f"live {found.live_value:.1f} ms" in line
    assert f"tolerated {found.tolerated:.1f} ms" in line
    assert "[95% +" in line
    assert "p=" in line
    assert line.endswith(": failed")


def test_line_for_rates_shows_percentages() -> None:
    found = compare(
        parse_compare_rule("rate <= live + 0.005"),
        Samples.of([1.0] * 380, 20),
        Samples.of([1.0] * 400),
        endpoint="/api/items",
    )
    line = found.line()
    assert "new 5.00%, live 0.00% (tolerated 0.50%)" in line
    assert "shift +4.50 pp" in line
    assert line.endswith(": failed")


def test_line_when_inconclusive_gives_the_reason() -> None:
    found = compare(parse_compare_rule("med <= live"), Samples.of([1.0]), Samples.of([]))
    assert found.line() == (
        "med <= live: new 1.00 ms, live n/a (tolerated n/a); needs at least 50 successful "
        "requests per color (new 1, live 0): inconclusive"
    )


def test_as_dict_is_strict_json() -> None:
    decoded = json.loads(json.dumps(failing_comparison().as_dict(), allow_nan=False))
    assert decoded["decision"] == "failed"
    assert decoded["endpoint"] == "/api/items"
    assert decoded["samples"] == {"new": 300, "live": 300}
    assert decoded["interval"][0] > 0
    empty = compare(parse_compare_rule("avg <= live"), Samples.of([]), Samples.of([]))
    decoded = json.loads(json.dumps(empty.as_dict(), allow_nan=False))
    assert decoded["new"] is None
    assert decoded["tolerated"] is None
    assert decoded["interval"] is None


def test_summary_table() -> None:
    new = Samples.of([float(v) for v in range(1, 101)], errors=1)
    live = Samples.of([float(v) * 2 for v in range(1, 201)])
    table = summary_table("/api/items", new, live, "green", "blue")
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("/api/items")
    assert lines[0].split()[1:] == [
        "requests",
        "errors",
        "ok",
        "p50",
        "ms",
        "p95",
        "ms",
        "p99",
        "ms",
    ]
    assert lines[1].split() == ["green", "(new)", "101", "0.99%", "100", "50.00", "95.00", "99.00"]
    assert lines[2].split() == [
        "blue",
        "(live)",
        "200",
        "0.00%",
        "200",
        "200.00",
        "380.00",
        "396.00",
    ]
    assert len({len(line) for line in lines}) == 1  # fixed width


def test_plot_is_a_png() -> None:
    rng = np.random.default_rng(2)
    png = plot_distributions(
        "/api/items", lognormal(rng, 2000), lognormal(rng, 2000), "green", "blue"
    )
    assert png is not None
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
    assert plot_distributions("/x", Samples.of([]), lognormal(rng, 5), "a", "b") is not None


def test_plot_without_matplotlib_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.colors"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rng = np.random.default_rng(2)
    assert plot_distributions("/x", lognormal(rng, 10), lognormal(rng, 10), "a", "b") is None
