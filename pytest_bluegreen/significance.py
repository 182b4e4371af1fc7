"""The statistics behind ``compare``: a confidence interval for the difference of the statistic a
rule names -- a percentile, the mean, an error rate -- between the new and the tolerated live
color.

- ``p(N)`` and ``med`` (:func:`quantile_difference`): the difference of the two colors'
  nearest-rank N-th percentiles, with a percentile-bootstrap interval computed *exactly*, not by
  resampling. The k-th smallest value of a bootstrap resample of n values is at or below the j-th
  smallest observed value exactly when at least k of the n draws fall among those j values, so
  its bootstrap distribution is binomial: ``P(X*_(k) <= x_(j)) = P(Binomial(n, j/n) >= k)``
  (the weights Maritz and Jarrett (1978) use for the standard error of a sample quantile). The
  two colors are resampled independently, so the bootstrap distribution of the difference is
  the product of the two: its (1 - confidence)/2 and (1 + confidence)/2 quantiles are the
  interval, and the bootstrap mass at or below zero is the one-sided p-value. This is what
  ``scipy.stats.bootstrap(..., method="percentile")`` converges to with infinitely many
  resamples (the tests check the two agree), without its Monte Carlo noise: the same samples
  always give the same interval (no seed to carry), in about a millisecond for 300 requests a
  color (the comparison runs inside the gate), with memory bounded by the few hundred order
  statistics that carry any mass, however many requests were made.

  Why not the alternatives: the Hodges-Lehmann shift (used before) estimates a *location*
  shift, which follows the median: 10% of requests 290 ms slower moved it by nothing, and every
  ``p(95)``/``p(99)``/``avg`` rule passed. A distribution-free order-statistic interval per
  color has exact coverage but needs n >= log(0.025)/log(0.99) = 368 requests before the
  live color's p(99) has any upper bound at 95%, so a p(99) rule at the default 300 requests
  could never fail; the bootstrap's bound there is the live color's largest values (it assumes
  the live tail goes no further than was seen: a little optimistic for p(99) of a few hundred
  requests, which the false-alarm tests bound). A Maritz-Jarrett normal interval measured above
  its nominal false-alarm rate and lost most of its power at p(90) in our simulations.
- ``avg`` (:func:`mean_difference`): Welch's t interval for the difference of the means
  (unequal variances, Welch-Satterthwaite degrees of freedom; scipy's t quantiles), and its
  one-sided p-value. A mean follows its tail: 10% of requests 290 ms slower moves it by 29 ms.
- ``rate`` (:func:`newcombe_interval`): Newcombe's hybrid score interval for the difference of
  two proportions, from the two Wilson intervals, and a two-proportion z-test.

In every case the live color's values are first *tolerated*: each live value ``y`` becomes
``y * factor + delta`` (a monotone transform: the tolerated live percentile is the live
percentile times the factor plus the delta).

scipy (the ``stats`` extra) and numpy are needed here and only here: scipy's binomial, normal
and t distributions are tested against the literature far beyond what a hand-written version
would be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from .load import nearest_rank

__all__ = [
    "check_confidence",
    "mean_difference",
    "newcombe_interval",
    "order_statistic_bootstrap",
    "quantile_difference",
    "wilson_interval",
    "z_test_greater",
]

FloatArray = npt.NDArray[np.float64]
# order statistics whose bootstrap probability is below this are left out of the product of the
# two distributions (their total is far below any quantile the interval reads)
_NEGLIGIBLE = 1e-12


def check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")


def _z(confidence: float) -> float:
    """The standard normal quantile for a two-sided ``confidence`` interval."""
    check_confidence(confidence)
    return float(stats.norm.ppf((1 + confidence) / 2))


def order_statistic_bootstrap(
    values: Sequence[float] | FloatArray, rank: int
) -> tuple[FloatArray, FloatArray]:
    """The exact bootstrap distribution of the ``rank``-th smallest value (1-based) of ``values``.

    Returns (support, probabilities): the sorted values that carry a probability of at least
    1e-12, and those probabilities (summing to 1 up to what was left out). With the sorted
    values x_(1..n): P(X*_(k) <= x_(j)) = P(Binomial(n, j/n) >= k).
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 0:
        raise ValueError("an order statistic needs at least one value")
    if not 1 <= rank <= n:
        raise ValueError(f"rank must be between 1 and {n}, not {rank}")
    at_or_below = stats.binom.sf(rank - 1, n, np.arange(n + 1) / n)  # j = 0..n
    probabilities = np.diff(at_or_below)
    keep = probabilities >= _NEGLIGIBLE
    return ordered[keep], probabilities[keep]


def quantile_difference(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    pct: float,
    *,
    factor: float = 1.0,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float], float]:
    """The difference p_x - (factor * p_y + delta) of the nearest-rank ``pct``-th percentiles,
    its two-sided percentile-bootstrap interval and one-sided p-value (the bootstrap mass at or
    below zero), computed exactly (see the module docstring).

    The interval's lower bound is above zero exactly when the p-value is below
    (1 - confidence) / 2.
    """
    check_confidence(confidence)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size == 0 or ys.size == 0:
        raise ValueError("a percentile difference needs at least one value in each sample")
    if factor <= 0:
        raise ValueError(f"factor must be greater than 0, not {factor!r}")
    rank_x, rank_y = nearest_rank(xs.size, pct), nearest_rank(ys.size, pct)
    estimate = float(np.sort(xs)[rank_x - 1]) - (float(np.sort(ys)[rank_y - 1]) * factor + delta)
    support_x, mass_x = order_statistic_bootstrap(xs, rank_x)
    support_y, mass_y = order_statistic_bootstrap(ys, rank_y)
    differences = np.subtract.outer(support_x, support_y * factor + delta).ravel()
    masses = np.multiply.outer(mass_x, mass_y).ravel()
    order = np.argsort(differences, kind="stable")
    differences, cumulative = differences[order], np.cumsum(masses[order])
    total = float(cumulative[-1])
    tail = (1 - confidence) / 2

    def quantile(share: float) -> float:
        index = int(np.searchsorted(cumulative, share * total, side="left"))
        return float(differences[min(index, differences.size - 1)])

    at_or_below_zero = int(np.searchsorted(differences, 0.0, side="right"))
    p_value = float(cumulative[at_or_below_zero - 1]) / total if at_or_below_zero else 0.0
    return estimate, (quantile(tail), quantile(1 - tail)), min(1.0, p_value)


def mean_difference(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    *,
    factor: float = 1.0,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float], float]:
    """The difference mean_x - (factor * mean_y + delta), Welch's two-sided t interval for it
    and the one-sided p-value of Welch's test that it is above zero."""
    check_confidence(confidence)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64) * factor + delta
    n, m = xs.size, ys.size
    if n < 2 or m < 2:
        raise ValueError("a difference of means needs at least two values in each sample")
    estimate = float(xs.mean() - ys.mean())
    var_x, var_y = float(xs.var(ddof=1)) / n, float(ys.var(ddof=1)) / m
    spread = math.sqrt(var_x + var_y)
    if spread == 0:  # both samples constant: the difference is exact
        return estimate, (estimate, estimate), 0.0 if estimate > 0 else 1.0
    freedom = (var_x + var_y) ** 2 / (var_x**2 / (n - 1) + var_y**2 / (m - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, freedom)) * spread
    p_value = float(stats.t.sf(estimate / spread, freedom))
    return estimate, (estimate - half, estimate + half), p_value


def wilson_interval(
    successes: int, trials: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """The Wilson score interval for the proportion successes / trials."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"a proportion needs 0 <= successes <= trials > 0 ({successes}/{trials})")
    z = _z(confidence)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials)) / (1 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    successes1: int,
    trials1: int,
    successes2: int,
    trials2: int,
    *,
    factor: float = 1.0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for p1 - factor * p2.

    Each proportion gets its Wilson interval; the second one, scaled by ``factor``, is
    combined with the first by the square-and-add rule.
    """
    p1, p2 = successes1 / trials1, successes2 / trials2
    low1, high1 = wilson_interval(successes1, trials1, confidence=confidence)
    low2, high2 = wilson_interval(successes2, trials2, confidence=confidence)
    difference = p1 - factor * p2
    lower = difference - math.hypot(p1 - low1, factor * (high2 - p2))
    upper = difference + math.hypot(high1 - p1, factor * (p2 - low2))
    return lower, upper


def z_test_greater(excess: float, spread: float) -> float:
    """The one-sided p-value of a z-test that ``excess`` (with standard error ``spread``) > 0."""
    if spread > 0:
        return float(stats.norm.sf(excess / spread))
    # no spread (no error, or only errors, on both sides): the difference is exact
    return 0.0 if excess > 0 else 1.0
