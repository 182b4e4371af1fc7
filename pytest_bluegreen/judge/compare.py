"""Relative thresholds: the new (idle) color judged against the live color, with statistics.

A rule fails only when its metric misses the tolerated live value *and* the difference is beyond
noise at the given confidence (:mod:`.significance`); it is inconclusive on fewer than
``min_samples`` requests. A Prometheus signal (``[compare_prometheus]``) is one number per color,
judged on the two numbers alone (:func:`compare_values`). The rules' grammar and samples are in
:mod:`.comparerules` (handed on from here too); the behaviour is described in
docs/after-the-switch.md.
"""

from __future__ import annotations

import bisect
import io
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_bluegreen.extras import require

from .comparerules import (
    CompareRule,
    CompareRuleError,
    Samples,
    parse_compare_rule,
    parse_compare_table,
    parse_value_rule,
)
from .judgement import Judgement
from .load import percentile

__all__ = [
    "CompareDecision",
    "CompareRule",
    "CompareRuleError",
    "Comparison",
    "Samples",
    "compare",
    "compare_values",
    "parse_compare_rule",
    "parse_compare_table",
    "parse_value_rule",
    "plot_distributions",
    "summary_table",
]

_OPS: Mapping[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt}


CompareDecision = Judgement  # the old name of a comparison's judgement: still imports


# --- the decision --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One rule judged on one endpoint.

    ``shift`` and ``interval`` are on the beyond-tolerance scale, where above zero means worse
    than the tolerated live color: the rule's metric on the new color minus the tolerated value
    (ms for latencies: p(N), med or avg; for ``rate`` p_new - (factor * p_live + delta)), and the
    confidence interval of that difference. Both are None when the rule was not judged.
    """

    rule: CompareRule
    decision: Judgement
    new_value: float
    live_value: float
    tolerated: float
    shift: float | None
    interval: tuple[float, float] | None
    p_value: float | None
    samples: tuple[int, int]  # new, live: the latencies (or requests, for rate) used
    reason: str
    confidence: float = 0.95
    endpoint: str = ""

    def line(self) -> str:
        """One human line: the values, the tolerated value, the shift, p and the decision."""
        fmt = _formatter(self.rule)
        head = f"{self.endpoint} {self.rule.text}" if self.endpoint else self.rule.text
        values = (
            f"new {fmt(self.new_value)}, live {fmt(self.live_value)} "
            f"(tolerated {fmt(self.tolerated)})"
        )
        if self.shift is None or self.interval is None:
            return f"{head}: {values}; {self.reason}: {self.decision}"
        unit = "pp" if self.rule.is_rate else "ms"
        signed = _signed_points if self.rule.is_rate else _signed_ms
        low, high = self.interval
        p = "n/a" if self.p_value is None else _fmt_p(self.p_value)
        return (
            f"{head}: {values}; shift {signed(self.shift)} {unit} "
            f"[{self.confidence * 100:g}% {signed(low)}, {signed(high)}] beyond tolerance, "
            f"p={p}: {self.decision}"
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form: plain numbers, None in place of NaN or infinity."""
        return {
            "endpoint": self.endpoint,
            "rule": self.rule.text,
            "metric": self.rule.metric,
            "unit": self.rule.unit,
            "decision": str(self.decision),
            "new": _finite(self.new_value),
            "live": _finite(self.live_value),
            "tolerated": _finite(self.tolerated),
            "shift": _finite(self.shift),
            "interval": (
                None
                if self.interval is None
                else [_finite(self.interval[0]), _finite(self.interval[1])]
            ),
            "confidence": self.confidence,
            "p_value": _finite(self.p_value),
            "samples": {"new": self.samples[0], "live": self.samples[1]},
            "reason": self.reason,
        }


def compare(
    rule: CompareRule,
    new: Samples,
    live: Samples,
    *,
    confidence: float = 0.95,
    min_samples: int = 50,
    endpoint: str = "",
) -> Comparison:
    """Judge the new color against the live color on one rule (see the module docstring).
    Needs the ``stats`` extra (scipy)."""
    require("scipy", "stats", "comparing colors")
    from .significance import check_confidence  # noqa: PLC0415 - the stats extra

    check_confidence(confidence)
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, not {min_samples}")
    judge = _compare_rate if rule.is_rate else _compare_latency
    return judge(rule, new, live, confidence=confidence, min_samples=min_samples, endpoint=endpoint)


def compare_values(
    rule: CompareRule, new_value: float, live_value: float, *, endpoint: str = ""
) -> Comparison:
    """Judge a Prometheus signal: the new color's number against the live color's, tolerated
    as ``live * FACTOR + DELTA``. NaN on either side (no series, a rate over no request) is
    inconclusive, never zero."""
    unjudged = _unjudged(
        rule, new_value, live_value, counts=(1, 1), confidence=1.0, endpoint=endpoint
    )
    missing = [
        color for color, value in (("new", new_value), ("live", live_value)) if math.isnan(value)
    ]
    if missing:
        return replace(
            unjudged,
            samples=(int(not math.isnan(new_value)), int(not math.isnan(live_value))),
            reason=f"no value for the {' and the '.join(missing)} color (an empty result or "
            "NaN is not zero)",
        )
    tolerated = unjudged.tolerated
    if _OPS[rule.op](new_value, tolerated):
        return replace(
            unjudged,
            decision=Judgement.PASSED,
            reason=f"new {_fmt_value(new_value)} meets the tolerated {_fmt_value(tolerated)}",
        )
    return replace(
        unjudged,
        decision=Judgement.FAILED,
        reason=f"new {_fmt_value(new_value)} misses the tolerated {_fmt_value(tolerated)}",
    )


def _compare_latency(
    rule: CompareRule,
    new: Samples,
    live: Samples,
    *,
    confidence: float,
    min_samples: int,
    endpoint: str,
) -> Comparison:
    new_value, live_value = rule.measure(new), rule.measure(live)
    counts = (len(new.latencies_ms), len(live.latencies_ms))
    unjudged = _unjudged(
        rule, new_value, live_value, counts=counts, confidence=confidence, endpoint=endpoint
    )
    needed = max(min_samples, 2) if rule.metric == "avg" else min_samples  # a variance needs 2
    if min(counts) < needed:
        return replace(
            unjudged,
            reason=f"needs at least {needed} successful requests per color "
            f"(new {counts[0]}, live {counts[1]})",
        )
    from .significance import mean_difference, quantile_difference  # noqa: PLC0415

    factor, delta = rule.factor, rule.delta
    if rule.metric == "avg":
        shift, interval, p_value = mean_difference(
            new.latencies_ms, live.latencies_ms, factor=factor, delta=delta, confidence=confidence
        )
    else:  # p(N); med is p(50)
        pct = 50.0 if rule.pct is None else rule.pct
        shift, interval, p_value = quantile_difference(
            new.latencies_ms, live.latencies_ms, pct, factor=factor, delta=delta,
            confidence=confidence,
        )  # fmt: skip
    decision, reason = _decide(rule, new_value, unjudged.tolerated, interval[0] > 0, confidence)
    return replace(
        unjudged, decision=decision, shift=shift, interval=interval, p_value=p_value, reason=reason
    )


def _unjudged(
    rule: CompareRule,
    new_value: float,
    live_value: float,
    *,
    counts: tuple[int, int],
    confidence: float,
    endpoint: str,
) -> Comparison:
    """The values without the statistics: inconclusive until judged."""
    return Comparison(
        rule=rule,
        decision=Judgement.INCONCLUSIVE,
        new_value=new_value,
        live_value=live_value,
        tolerated=rule.tolerated(live_value),
        shift=None,
        interval=None,
        p_value=None,
        samples=counts,
        reason="",
        confidence=confidence,
        endpoint=endpoint,
    )


def _compare_rate(
    rule: CompareRule,
    new: Samples,
    live: Samples,
    *,
    confidence: float,
    min_samples: int,
    endpoint: str,
) -> Comparison:
    new_value, live_value = new.error_rate, live.error_rate
    counts = (new.total, live.total)
    unjudged = _unjudged(
        rule, new_value, live_value, counts=counts, confidence=confidence, endpoint=endpoint
    )
    if min(counts) < min_samples:
        return replace(
            unjudged,
            reason=f"needs at least {min_samples} requests per color "
            f"(new {counts[0]}, live {counts[1]})",
        )
    from .significance import newcombe_interval, z_test_greater  # noqa: PLC0415

    lower, upper = newcombe_interval(
        new.errors, new.total, live.errors, live.total, factor=rule.factor, confidence=confidence
    )
    interval = (lower - rule.delta, upper - rule.delta)
    shift = new_value - unjudged.tolerated
    spread = math.sqrt(
        new_value * (1 - new_value) / new.total
        + rule.factor**2 * live_value * (1 - live_value) / live.total
    )
    decision, reason = _decide(rule, new_value, unjudged.tolerated, interval[0] > 0, confidence)
    return replace(
        unjudged,
        decision=decision,
        shift=shift,
        interval=interval,
        p_value=z_test_greater(shift, spread),
        reason=reason,
    )


def _decide(
    rule: CompareRule, new_value: float, tolerated: float, significant: bool, confidence: float
) -> tuple[Judgement, str]:
    fmt = _formatter(rule)
    level = f"{confidence * 100:g}%"
    misses = not _OPS[rule.op](new_value, tolerated)
    if misses and significant:
        return Judgement.FAILED, (
            f"new {rule.metric} {fmt(new_value)} misses the tolerated {fmt(tolerated)} and the "
            f"new color is worse beyond tolerance at {level} confidence"
        )
    if misses:
        return Judgement.PASSED, (
            f"new {rule.metric} {fmt(new_value)} misses the tolerated {fmt(tolerated)}, "
            f"but not beyond noise at {level} confidence"
        )
    if significant:
        return Judgement.PASSED, (
            f"the new color is worse beyond tolerance at {level} confidence, but its "
            f"{rule.metric} {fmt(new_value)} meets the tolerated {fmt(tolerated)}"
        )
    return Judgement.PASSED, (
        f"new {rule.metric} {fmt(new_value)} meets the tolerated {fmt(tolerated)}"
    )


# --- formatting ----------------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _ms_number(value: float, sign: str = "") -> str:
    if math.isnan(value):
        return "n/a"
    decimals = 2 if abs(value) < 10 else 1
    return f"{value:{sign}.{decimals}f}"


def _fmt_ms(value: float) -> str:
    number = _ms_number(value)
    return number if number == "n/a" else f"{number} ms"


def _signed_ms(value: float) -> str:
    return _ms_number(value, "+")


def _formatter(rule: CompareRule) -> Callable[[float], str]:
    if rule.metric == "value":
        return _fmt_value
    return _fmt_rate if rule.is_rate else _fmt_ms


def _fmt_value(value: float) -> str:
    """A Prometheus number as it is: no unit (the query decides what it means)."""
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def _fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.2f}%"


def _signed_points(value: float) -> str:
    return f"{value * 100:+.2f}"


def _fmt_p(value: float) -> str:
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def summary_table(
    endpoint: str, new: Samples, live: Samples, new_color: str, live_color: str
) -> str:
    """Both colors side by side: requests, errors, successful requests, p50/p95/p99 (ms)."""
    header = ("requests", "errors", "ok", "p50 ms", "p95 ms", "p99 ms")
    rows = [
        (f"{new_color} (new)", _summary_row(new)),
        (f"{live_color} (live)", _summary_row(live)),
    ]
    first = max(len(endpoint), *(len(label) for label, _ in rows))
    widths = [max(len(h), *(len(cells[i]) for _, cells in rows)) for i, h in enumerate(header)]
    lines = [
        f"{label:<{first}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        for label, cells in [(endpoint, header), *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _summary_row(samples: Samples) -> tuple[str, ...]:
    latencies = samples.latencies_ms
    quantiles = [
        f"{percentile(latencies, pct):.2f}" if latencies else "n/a" for pct in (50, 95, 99)
    ]
    return (
        str(samples.total),
        _fmt_rate(samples.error_rate),
        str(len(latencies)),
        *quantiles,
    )


# --- plot ----------------------------------------------------------------------------------------


def plot_distributions(
    endpoint: str, new: Samples, live: Samples, new_color: str, live_color: str
) -> bytes | None:
    """A PNG of both colors' latency ECDFs with their p50 and p95 marked; None without matplotlib.

    Drawn with matplotlib's object API on an Agg canvas: no pyplot, no global backend switch,
    nothing left registered once the bytes are out.
    """
    try:
        import numpy as np  # noqa: PLC0415 - optional, with matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - optional
        from matplotlib.colors import is_color_like  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        return None

    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # colors named like matplotlib colors ("blue", "green") are drawn in them
    named = new_color != live_color and is_color_like(new_color) and is_color_like(live_color)
    shades = (live_color, new_color) if named else ("tab:blue", "tab:orange")
    for samples, color, shade, role, style in (
        (live, live_color, shades[0], "live", "--"),
        (new, new_color, shades[1], "new", "-"),
    ):
        latencies = np.sort(np.asarray(samples.latencies_ms, dtype=np.float64))
        if latencies.size == 0:
            axes.plot([], [], color=shade, label=f"{color} ({role}): no successful request")
            continue
        share = np.arange(1, latencies.size + 1) / latencies.size
        p50 = percentile(samples.latencies_ms, 50)
        p95 = percentile(samples.latencies_ms, 95)
        axes.step(
            latencies,
            share,
            where="post",
            color=shade,
            linestyle=style,
            label=f"{color} ({role}), n={latencies.size}: p50 {_fmt_ms(p50)}, p95 {_fmt_ms(p95)}",
        )
        for value, mark in ((p50, "o"), (p95, "^")):
            axes.axvline(value, color=shade, linestyle=style, linewidth=0.8, alpha=0.6)
            axes.plot([value], [_ecdf_at(latencies.tolist(), value)], mark, color=shade)
    # a long tail (timeouts) would squeeze the body of both curves into a corner: cut the x axis
    # a little after the larger p99.5 when the slowest request lies far beyond it
    everything = new.latencies_ms + live.latencies_ms
    cut = max(
        (percentile(s.latencies_ms, 99.5) for s in (new, live) if s.latencies_ms), default=0.0
    )
    if everything and max(everything) > 1.5 * cut > 0:
        axes.set_xlim(right=1.1 * cut)
        axes.set_xlabel("latency (ms), cut after p99.5")
    else:
        axes.set_xlabel("latency (ms)")
    axes.set_ylabel("share of successful requests at or below")
    axes.set_ylim(0, 1.02)
    axes.set_title(f"{endpoint}: {new_color} (new) vs {live_color} (live)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()
    return buffer.getvalue()


def _ecdf_at(ordered: Sequence[float], value: float) -> float:
    """The share of the sorted values at or below ``value`` (the ECDF at ``value``)."""
    return bisect.bisect_right(ordered, value) / len(ordered)
