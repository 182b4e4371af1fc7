"""k6-style thresholds for the perf checks: ``p(95)<300``, ``avg<200``, ``rate<0.01``.

Durations are in milliseconds, as in k6's ``http_req_duration``; ``rate`` is the failed-request
rate (k6's ``http_req_failed``); ``rps`` the requests per second achieved. Percentiles are
nearest-rank over the successful requests, computed client-side.

The same grammar judges a series of numbers (a PromQL result, :mod:`promql`):
:func:`parse_series` takes ``value`` (k6's gauge: the last point), ``avg``, ``med``, ``min``,
``max`` and ``p(N)`` over the points, plain numbers (no unit, negative and ``1e-3`` allowed), and
:func:`measure_series` measures them; NaN where there is nothing to measure, which never holds.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import UsageError
from pytest_bluegreen.frozen import Frozen, frozen

if TYPE_CHECKING:
    from .load import LoadResult

__all__ = [
    "BAKE_DEFAULTS",
    "BAKE_METRICS",
    "DEFAULT_BAKE_THRESHOLDS",
    "BakeThreshold",
    "Threshold",
    "ThresholdError",
    "Violation",
    "evaluate",
    "measure_series",
    "parse",
    "parse_bake_thresholds",
    "parse_series",
    "parse_table",
]

_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPR = re.compile(
    r"^\s*(?P<stat>p\((?P<pct>[0-9]+(?:\.[0-9]+)?)\)|avg|med|min|max|rate|rps)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*$"
)
# a series' thresholds: k6's gauge "value" beside the trend statistics; any real number
_SERIES_EXPR = re.compile(
    r"^\s*(?P<stat>p\((?P<pct>[0-9]+(?:\.[0-9]+)?)\)|value|avg|med|min|max)\s*"
    r"(?P<op><=|>=|==|!=|<|>)\s*(?P<value>-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*$"
)


# the latency statistics that are not percentiles, over the sorted successful latencies
_SUMMARIES: Mapping[str, Callable[[list[float]], float]] = {
    "avg": lambda ok: sum(ok) / len(ok),
    "min": lambda ok: ok[0],
    "max": lambda ok: ok[-1],
}


class ThresholdError(UsageError, ValueError):
    """A threshold expression that is not k6 syntax (a ``ValueError`` too, as the settings
    and check authors catch it)."""


@frozen
class Threshold(Frozen):
    text: str
    stat: str  # p(95), avg, med, min, max, rate, rps
    op: str
    value: float
    pct: float | None = None

    @property
    def unit(self) -> str:
        return "" if self.stat in {"rate", "rps"} else "ms"

    def measure(self, result: LoadResult) -> float:
        """The measured value; NaN for a latency stat when no request succeeded."""
        if self.stat == "rate":
            return result.error_rate
        if self.stat == "rps":
            return result.throughput
        ok = sorted(s.latency * 1000 for s in result.samples if not s.failed)
        if not ok:
            return math.nan  # no latency to judge: never holds (see holds())
        pct = 50.0 if self.stat == "med" else self.pct
        if pct is not None:
            return result.latency_ms(pct)
        return _SUMMARIES[self.stat](ok)

    def holds(self, measured: float) -> bool:
        return not math.isnan(measured) and _OPS[self.op](measured, self.value)


@frozen
class Violation(Frozen):
    endpoint: str
    threshold: Threshold
    measured: float

    def __str__(self) -> str:
        t = self.threshold
        if math.isnan(self.measured):
            return f"{self.endpoint}: {t.stat} unmeasurable (no request succeeded) for {t.text!r}"
        value = f"{self.measured:.4g}" if t.stat == "rate" else f"{self.measured:.1f}"
        return f"{self.endpoint}: {t.stat}={value}{t.unit} misses threshold {t.text!r}"


def _limit(text: object, number: str) -> float:
    """A threshold's limit: a finite number (``1e400`` or 400 nines are infinite to a float,
    a limit nothing reaches or everything does)."""
    value = float(number)
    if not math.isfinite(value):
        raise ThresholdError(f"{text!r}: {number[:20]!r} is too large a number")
    return value


def parse(text: str) -> Threshold:
    match = _EXPR.match(text)
    if match is None:
        raise ThresholdError(
            f"{text!r} is not a threshold like 'p(95)<300', 'avg<200' or 'rate<0.01'"
        )
    pct = float(match["pct"]) if match["pct"] else None
    if pct is not None and not 0 < pct <= 100:
        raise ThresholdError(f"{text!r}: the percentile must be in (0, 100]")
    return Threshold(text.strip(), match["stat"], match["op"], _limit(text, match["value"]), pct)


def parse_series(text: str) -> Threshold:
    """``"value<0.01"``, ``"max<=0.5"``, ``"p(90)<1e-3"``: a threshold on a series of numbers."""
    match = _SERIES_EXPR.match(text)
    if match is None:
        raise ThresholdError(
            f"{text!r} is not a threshold like 'value<0.01', 'max<=0.5' or 'p(90)<1e-3' "
            "(value, avg, med, min, max, p(N))"
        )
    pct = float(match["pct"]) if match["pct"] else None
    if pct is not None and not 0 < pct <= 100:
        raise ThresholdError(f"{text!r}: the percentile must be in (0, 100]")
    return Threshold(text.strip(), match["stat"], match["op"], _limit(text, match["value"]), pct)


def measure_series(threshold: Threshold, points: Sequence[float]) -> float:
    """The threshold's statistic over a series' points, in time order: ``value`` is the last
    point (NaN stays NaN), the others are over the points that are numbers. NaN when there is
    nothing to measure: a NaN never holds, so no data is never read as zero."""
    if threshold.stat == "value":
        return points[-1] if points else math.nan
    numbers = sorted(p for p in points if not math.isnan(p))
    if not numbers:
        return math.nan
    if threshold.stat in _SUMMARIES:
        return _SUMMARIES[threshold.stat](numbers)
    pct = 50.0 if threshold.stat == "med" else threshold.pct
    if pct is None:
        raise ThresholdError(f"{threshold.text!r} does not measure a series")
    from .load import percentile  # noqa: PLC0415 - http.client, only when a series is judged

    return percentile(numbers, pct)


def parse_table(table: object) -> dict[str, tuple[Threshold, ...]]:
    """``{"/health": ["p(95)<300", "rate<0.01"], ...}`` -> parsed thresholds per endpoint."""
    if not isinstance(table, Mapping):
        raise ThresholdError("thresholds must be a table of endpoint = [expressions]")
    parsed: dict[str, tuple[Threshold, ...]] = {}
    for endpoint, given in table.items():
        if not isinstance(endpoint, str) or not endpoint.startswith("/"):
            raise ThresholdError(f"threshold endpoint {endpoint!r} must be a path starting '/'")
        expressions = [given] if isinstance(given, str) else given
        if not isinstance(expressions, list) or not expressions:
            raise ThresholdError(f"thresholds for {endpoint} must be a non-empty list")
        parsed[endpoint] = tuple(parse(str(e)) for e in expressions)
    return parsed


def evaluate(endpoint: str, thresholds: Iterable[Threshold], result: LoadResult) -> list[Violation]:
    out = []
    for threshold in thresholds:
        measured = threshold.measure(result)
        if not threshold.holds(measured):
            out.append(Violation(endpoint, threshold, measured))
    return out


# --- the bake's thresholds on HAProxy's counters ---------------------------------------------

BAKE_METRICS = (
    "requests",
    "http_5xx",
    "http_5xx_rate",
    "eresp",
    "econ",
    "wretr",
    "wredis",
    "qcur",
)
# compiled when first used (re's cache): every session imports the grammar, few parse a table
_BAKE_EXPR = (
    r"^\s*(?P<metric>" + "|".join(BAKE_METRICS) + r")\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<value>[0-9]+(?:\.[0-9]+)?)\s*$"
)


@frozen
class BakeThreshold(Frozen):
    """``http_5xx_rate<0.01``: one of :data:`BAKE_METRICS` over a bake interval, and its limit."""

    text: str
    metric: str
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return not math.isnan(measured) and _OPS[self.op](measured, self.value)


def parse_bake_thresholds(table: object) -> tuple[BakeThreshold, ...]:
    """``{"haproxy": ["http_5xx_rate<0.01", "eresp<1"]}`` -> the thresholds."""
    if not isinstance(table, Mapping) or set(table) - {"haproxy"}:
        raise ValueError('bake thresholds must be a table with one key, "haproxy"')
    given = table.get("haproxy", [])
    expressions = [given] if isinstance(given, str) else given
    if not isinstance(expressions, list):
        raise ValueError("bake thresholds for haproxy must be a list of expressions")
    found = []
    for text in expressions:
        match = re.match(_BAKE_EXPR, str(text))
        if match is None:
            raise ValueError(
                f"{text!r} is not a bake threshold like 'http_5xx_rate<0.01' "
                f"(metrics: {', '.join(BAKE_METRICS)})"
            )
        found.append(
            BakeThreshold(
                str(text).strip(), match["metric"], match["op"], _limit(text, match["value"])
            )
        )
    return tuple(found)


# the bake's thresholds when [bake_thresholds] gives none, as parse_bake_thresholds gives them
# (tests/judge/test_thresholds.py checks it): every session's settings hold them
BAKE_DEFAULTS = (
    BakeThreshold("http_5xx_rate<0.01", "http_5xx_rate", "<", 0.01),
    BakeThreshold("eresp<1", "eresp", "<", 1.0),
    BakeThreshold("econ<1", "econ", "<", 1.0),
)
DEFAULT_BAKE_THRESHOLDS: Mapping[str, list[str]] = {"haproxy": [t.text for t in BAKE_DEFAULTS]}
