"""What a relative threshold is: the rule ``METRIC OP live [* FACTOR] [+ DELTA]``, its grammar
(the ``[compare]`` table the settings parse, a ``[compare_prometheus]`` signal's ``value`` rule)
and the samples of one color it measures. How a rule is judged is in :mod:`.compare`.

A rule compares one metric of the new color with the same metric of the live color, widened
by a tolerance: ``p(95) <= live * 1.10``, ``med <= live * 1.2 + 5``, ``rate <= live + 0.005``.
The metric is ``p(N)`` (nearest-rank percentile, 0 < N < 100), ``med`` (p(50)), ``avg`` (the
mean) over the successful requests' latencies in milliseconds, or ``rate`` (the share of failed
requests, 0..1). The right side is ``live``, optionally ``* FACTOR`` (> 0), optionally
``+ DELTA`` (>= 0; milliseconds for latencies, an absolute share for ``rate``), in that order.
The *tolerated* value is ``live * FACTOR + DELTA``.

The settings parse ``[compare]`` with this grammar when they are resolved: this module imports
nothing heavy (the load's module only when a color is measured; scipy is :mod:`.compare`'s).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from pytest_bluegreen.errors import UsageError
from pytest_bluegreen.frozen import Frozen, frozen

__all__ = [
    "CompareRule",
    "CompareRuleError",
    "Samples",
    "parse_compare_rule",
    "parse_compare_table",
    "parse_value_rule",
]

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# patterns compiled when first used (re's cache): every session imports the grammar, few use it
_EXPR = (
    rf"^\s*(?P<metric>p\(\s*(?P<pct>{_NUMBER})\s*\)|med|avg|rate)\s*(?P<op><=|<)\s*live"
    rf"(?:\s*\*\s*(?P<factor>{_NUMBER}))?(?:\s*\+\s*(?P<delta>{_NUMBER}))?\s*$"
)
_EXPECTED = 'is not a comparison like "p(95) <= live * 1.10" or "rate <= live + 0.005"'
_VALUE_EXPR = (
    rf"^\s*value\s*(?P<op><=|<)\s*live"
    rf"(?:\s*\*\s*(?P<factor>{_NUMBER}))?(?:\s*\+\s*(?P<delta>{_NUMBER}))?\s*$"
)


class CompareRuleError(UsageError, ValueError):
    """A relative threshold that is not of the form ``METRIC OP live [* FACTOR] [+ DELTA]``
    (a ``ValueError`` too, as the settings catch it)."""


@frozen
class Samples(Frozen):
    """What the load measured on one color.

    ``latencies_ms`` are the successful requests' latencies; ``total`` counts every request,
    failed ones included, and ``errors`` the failed ones.
    """

    latencies_ms: tuple[float, ...]
    errors: int
    total: int

    def __post_init__(self) -> None:
        # NaN compares false with everything: "misses the tolerated, but not beyond noise" would
        # pass it; an infinite one turns the differences into NaN. No load measures either.
        odd = [v for v in self.latencies_ms if not (math.isfinite(v) and v >= 0)]
        if odd:
            raise ValueError(
                f"{len(odd)} latencies are not finite numbers of milliseconds >= 0 (the first: "
                f"{odd[0]!r}): nothing to judge a color by"
            )
        if not 0 <= self.errors <= self.total:
            raise ValueError(f"errors ({self.errors}) must be between 0 and total ({self.total})")
        if len(self.latencies_ms) + self.errors > self.total:
            raise ValueError(
                f"{len(self.latencies_ms)} latencies and {self.errors} errors exceed "
                f"total ({self.total})"
            )

    @classmethod
    def of(cls, latencies_ms: Iterable[float], errors: int = 0) -> Samples:
        """Samples whose total is the successful latencies plus the errors."""
        latencies = tuple(float(v) for v in latencies_ms)
        return cls(latencies, errors, len(latencies) + errors)

    @property
    def error_rate(self) -> float:
        """The failed share of the requests; NaN when there was no request."""
        return self.errors / self.total if self.total else math.nan


@frozen
class CompareRule(Frozen):
    text: str
    metric: str  # p(95), med, avg, rate; value (a Prometheus signal)
    pct: float | None  # the percentile of p(N); None for med, avg, rate and value
    op: str  # <= or <
    factor: float = 1.0
    delta: float = 0.0

    @property
    def is_rate(self) -> bool:
        return self.metric == "rate"

    @property
    def unit(self) -> str:
        return "ms" if self.metric not in {"rate", "value"} else ""

    def tolerated(self, live_value: float) -> float:
        """The most the new color may reach (or stay below, for ``<``): live * factor + delta."""
        return live_value * self.factor + self.delta

    def measure(self, samples: Samples) -> float:
        """The rule's metric on one color; NaN when there is nothing to measure."""
        if self.is_rate:
            return samples.error_rate
        latencies = samples.latencies_ms
        if not latencies:
            return math.nan
        if self.metric == "avg":
            return math.fsum(latencies) / len(latencies)
        from .load import percentile  # noqa: PLC0415 - http.client, only when a color is measured

        return percentile(latencies, 50.0 if self.pct is None else self.pct)


def parse_compare_rule(text: str, endpoint: str | None = None) -> CompareRule:
    """``"p(95) <= live * 1.10"`` -> the rule; ``endpoint`` only names it in errors."""
    where = f'"{endpoint}": ' if endpoint is not None else ""
    match = re.match(_EXPR, text)
    if match is None:
        raise CompareRuleError(f"{where}{text!r} {_EXPECTED}")
    pct = float(match["pct"]) if match["pct"] is not None else None
    if pct is not None and not 0 < pct < 100:
        raise CompareRuleError(f"{where}{text!r}: the percentile must be between 0 and 100")
    factor = float(match["factor"]) if match["factor"] is not None else 1.0
    if factor <= 0:
        raise CompareRuleError(f"{where}{text!r}: the factor must be greater than 0")
    delta = float(match["delta"]) if match["delta"] is not None else 0.0
    if not (math.isfinite(factor) and math.isfinite(delta)):  # 1e400, 400 nines: no limit at all
        raise CompareRuleError(f"{where}{text!r}: the factor or the delta is too large a number")
    metric = f"p({match['pct']})" if pct is not None else match["metric"]
    return CompareRule(text.strip(), metric, pct, match["op"], factor, delta)


def parse_value_rule(text: str, name: str | None = None) -> CompareRule:
    """``"value <= live * 1.10 + 0.001"`` -> the rule of a Prometheus signal; ``name`` only
    names it in errors."""
    where = f'"{name}": ' if name is not None else ""
    match = re.match(_VALUE_EXPR, text) if isinstance(text, str) else None
    if match is None:
        raise CompareRuleError(
            f'{where}{text!r} is not a comparison like "value <= live * 1.10 + 0.001"'
        )
    factor = float(match["factor"]) if match["factor"] is not None else 1.0
    if factor <= 0:
        raise CompareRuleError(f"{where}{text!r}: the factor must be greater than 0")
    delta = float(match["delta"]) if match["delta"] is not None else 0.0
    if not (math.isfinite(factor) and math.isfinite(delta)):  # 1e400, 400 nines: no limit at all
        raise CompareRuleError(f"{where}{text!r}: the factor or the delta is too large a number")
    return CompareRule(text.strip(), "value", None, match["op"], factor, delta)


def parse_compare_table(table: object) -> dict[str, tuple[CompareRule, ...]]:
    """``{"/api/items": ["p(95) <= live * 1.10"], ...}`` -> parsed rules per endpoint.

    A single expression in place of the list is accepted, as in the ``thresholds`` table.
    """
    if not isinstance(table, Mapping):
        raise CompareRuleError("compare must be a table of endpoint = [expressions]")
    parsed: dict[str, tuple[CompareRule, ...]] = {}
    for endpoint, given in table.items():
        if not isinstance(endpoint, str) or not endpoint.startswith("/"):
            raise CompareRuleError(f"compare endpoint {endpoint!r} must be a path starting '/'")
        expressions = [given] if isinstance(given, str) else given
        if not isinstance(expressions, list) or not expressions:
            raise CompareRuleError(
                f'compare rules for "{endpoint}" must be a non-empty list of expressions'
            )
        for text in expressions:
            if not isinstance(text, str):
                raise CompareRuleError(
                    f'compare rules for "{endpoint}" must be strings, not {text!r}'
                )
        parsed[endpoint] = tuple(parse_compare_rule(text, endpoint) for text in expressions)
    return parsed
