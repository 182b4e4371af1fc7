"""The PromQL checks and comparisons of the settings, their grammar, and a query's result
judged against its thresholds.

A check (:class:`PromQLCheck`, a ``[prometheus_checks]`` or ``[bake_prometheus]`` entry) judges
*every* series of its result against k6-style thresholds (``value<0.01``; ``value`` is the last
point, ``avg``, ``med``, ``min``, ``max`` and ``p(N)`` are over the points, see
:mod:`.thresholds`). The judgement (:func:`judge_query`) is *failed* when a series misses a
threshold, else *inconclusive* when the result has no series at all or a threshold measures NaN
(a rate over no request), else *passed*: an empty result is never read as zero (Kayenta's
regression read NaN as 0).

A comparison (:class:`PromQLComparison`, a ``[compare_prometheus]`` entry) asks one number per
color and judges the new color's against the live one's by its rules (:mod:`.comparerules`,
judged by :mod:`.compare`).

``{color}`` in a query is replaced by the color judged (a check with it runs per color); the
bake's queries also take ``{interval}``, the bake interval as a PromQL duration (``10s``).

The settings parse their PromQL tables with :func:`parse_checks_table` and
:func:`parse_comparisons_table` when they are resolved: this module imports nothing heavy
(Prometheus' client is loaded for a query's step, and loads ``requests`` when asked; the
comparison loads its statistics when run).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.frozen import Frozen, frozen

from .comparerules import CompareRule, parse_value_rule
from .judgement import Judgement
from .thresholds import Threshold, ThresholdError, measure_series, parse_series

if TYPE_CHECKING:
    from .compare import Comparison
    from .prometheus import Prometheus, QueryResult

__all__ = [
    "PromQLCheck",
    "PromQLComparison",
    "PromQLJudgement",
    "duration",
    "judge_query",
    "parse_checks_table",
    "parse_comparisons_table",
    "promql_duration",
]

if not TYPE_CHECKING:  # the old names, for one release (issue 23)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"judge": "judge_query"})

# patterns compiled when first used (re's cache): every session imports the grammar, few use it
_PLACEHOLDER = r"\{([A-Za-z_][A-Za-z0-9_]*)\}"
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
_DURATION = r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h|d)?$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# --- checks: a query and its thresholds ----------------------------------------------------------


def duration(value: object) -> float:
    """``"5m"``, ``"30s"``, ``"1h"``, ``"250ms"`` or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '5m' or seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
    else:
        match = re.match(_DURATION, str(value).strip())
        if match is None:
            raise ValueError(f"expected a duration like '5m', '30s' or seconds, got {value!r}")
        seconds = float(match["number"]) * _UNITS[match["unit"] or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be finite and more than 0, got {value!r}")
    return seconds


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL duration: ``10s``, ``1500ms``."""
    whole = round(seconds)
    if abs(seconds - whole) < 1e-9 and whole > 0:
        return f"{whole}s"
    return f"{max(1, round(seconds * 1000))}ms"


@frozen
class PromQLCheck(Frozen):
    """One ``name = {query = "...", thresholds = [...]}`` entry; ``range``/``step`` (``span``
    and ``step`` here, in seconds) make it a range query over the last ``span`` seconds, one
    point every ``step`` (default: a sixtieth of the span, at least 1 s)."""

    name: str
    query: str
    thresholds: tuple[Threshold, ...]
    span: float | None = None  # the TOML key "range"
    step: float | None = None

    @property
    def per_color(self) -> bool:
        """The query names the color (``{color}``): it is judged once per color."""
        return "{color}" in self.query

    def render(self, color: str | None = None, interval: float | None = None) -> str:
        """The query as sent: ``{color}`` and ``{interval}`` replaced."""
        query = self.query
        if color is not None:
            query = query.replace("{color}", color)
        if interval is not None:
            query = query.replace("{interval}", promql_duration(interval))
        return query

    def ask(
        self,
        prometheus: Prometheus,
        *,
        color: str | None = None,
        interval: float | None = None,
        at: float | None = None,
    ) -> QueryResult:
        """Run the query (instant, or over the range ending at ``at``/now)."""
        query = self.render(color, interval)
        if self.span is None:
            return prometheus.query(query, at=at)
        end = time.time() if at is None else at
        step = self.step or max(1.0, self.span / 60)
        return prometheus.query_range(query, start=end - self.span, end=end, step=step)

    def run(
        self,
        prometheus: Prometheus,
        *,
        color: str | None = None,
        interval: float | None = None,
        at: float | None = None,
    ) -> PromQLJudgement:
        """Ask and judge. Raises :class:`PrometheusUnreachable` and :class:`PromQLError`."""
        result = self.ask(prometheus, color=color, interval=interval, at=at)
        return judge_query(self.name, result, self.thresholds)


@frozen
class PromQLJudgement(Frozen):
    """A check's result judged: its judgement, why, and one line per series and threshold."""

    name: str
    query: str
    decision: Judgement
    reason: str
    lines: tuple[str, ...] = ()
    measured: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def text(self) -> str:
        """``error_rate: failed: ...`` and the series' lines below it."""
        return "\n".join(
            [f"{self.name}: {self.decision.value}: {self.reason}", f"  query: {self.query}"]
            + [f"  {line}" for line in self.lines]
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (None in place of NaN and infinities)."""
        return {
            "name": self.name,
            "query": self.query,
            "decision": self.decision.value,
            "reason": self.reason,
            "series": {
                name: {t: (v if math.isfinite(v) else None) for t, v in values.items()}
                for name, values in self.measured.items()
            },
        }


def judge_query(name: str, result: QueryResult, thresholds: Sequence[Threshold]) -> PromQLJudgement:
    """Every series against every threshold (see the module docstring)."""
    if not result.series:
        return PromQLJudgement(
            name,
            result.query,
            Judgement.INCONCLUSIVE,
            "the query returned no series (an empty result is not zero)",
        )
    lines: list[str] = []
    missed: list[str] = []
    unmeasured: list[str] = []
    measured: dict[str, dict[str, float]] = {}
    for series in result.series:
        values = measured.setdefault(series.name, {})
        who = f"{series.name} " if series.labels else ""  # an aggregate: no label to show
        for threshold in thresholds:
            value = measure_series(threshold, series.values)
            values[threshold.text] = value
            if math.isnan(value):
                unmeasured.append(f"{who}{threshold.stat}")
                lines.append(f"{who}{threshold.stat}=NaN: not judged ({threshold.text})")
            elif threshold.holds(value):
                lines.append(f"{who}{threshold.stat}={value:.4g} meets {threshold.text!r}")
            else:
                missed.append(f"{who}{threshold.stat}={value:.4g}")
                lines.append(
                    f"{who}{threshold.stat}={value:.4g} misses threshold {threshold.text!r}"
                )
    if missed:
        decision, reason = Judgement.FAILED, f"{_few(missed)} missed a threshold"
    elif unmeasured:
        decision, reason = (
            Judgement.INCONCLUSIVE,
            f"{_few(unmeasured)} measured NaN (no data, e.g. a rate over no request): "
            "not zero, not judged",
        )
    else:
        decision = Judgement.PASSED
        reason = f"{len(result.series)} series met {len(thresholds)} threshold(s)"
    return PromQLJudgement(name, result.query, decision, reason, tuple(lines), measured)


def _few(items: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" (+{len(items) - most} more)" if len(items) > most else "")


def parse_checks_table(
    table: object, *, placeholders: Iterable[str] = ("color",), ranges: bool = True
) -> dict[str, PromQLCheck]:
    """``{"error_rate": {"query": "...", "thresholds": ["value<0.01"]}}`` -> the checks.

    ``placeholders``: the ``{NAME}`` a query may hold; ``ranges``: whether ``range``/``step``
    are allowed. Raises ``ValueError`` naming the entry."""
    if not isinstance(table, Mapping):
        raise ValueError('must be a table of name = {query = "...", thresholds = [...]}')
    allowed = tuple(placeholders)
    keys = ("query", "thresholds", *(("range", "step") if ranges else ()))
    checks: dict[str, PromQLCheck] = {}
    for name, entry in table.items():
        if not isinstance(name, str) or not re.match(_NAME, name):
            raise ValueError(f"{name!r} is not a plain name (letters, digits, _ . -)")
        if not isinstance(entry, Mapping):
            raise ValueError(f'{name}: expected {{query = "...", thresholds = [...]}}')
        unknown = sorted(set(entry) - set(keys))
        if unknown:
            raise ValueError(f"{name}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
        query = _check_query(name, entry.get("query"), allowed)
        thresholds = _check_thresholds(name, entry.get("thresholds"))
        span, step = _check_window(name, entry)
        checks[name] = PromQLCheck(name, query, thresholds, span, step)
    return checks


def _check_query(name: str, query: object, allowed: tuple[str, ...]) -> str:
    """A check's ``query``, stripped: a PromQL expression whose ``{NAME}`` are all allowed."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"{name}: query must be a PromQL expression")
    for word in re.findall(_PLACEHOLDER, query):
        if word not in allowed:
            known = ", ".join(f"{{{p}}}" for p in allowed)
            raise ValueError(f"{name}: unknown placeholder {{{word}}} (known: {known})")
    return query.strip()


def _check_thresholds(name: str, given: object) -> tuple[Threshold, ...]:
    """A check's ``thresholds``: one expression or a non-empty list of them, parsed."""
    expressions = [given] if isinstance(given, str) else given
    if not isinstance(expressions, list) or not expressions:
        raise ValueError(f'{name}: thresholds must be a non-empty list like ["value<0.01"]')
    try:
        return tuple(parse_series(str(t)) for t in expressions)
    except (ThresholdError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


def _check_window(name: str, entry: Mapping[str, object]) -> tuple[float | None, float | None]:
    """A check's ``range`` and ``step`` in seconds (None when not given): a step needs a range,
    and together they ask for at most ``MAX_POINTS`` points."""
    try:
        span = duration(entry["range"]) if "range" in entry else None
        step = duration(entry["step"]) if "step" in entry else None
    except (ThresholdError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    if step is None:
        return span, step
    if span is None:
        raise ValueError(f"{name}: step needs a range")
    from .prometheus import MAX_POINTS  # noqa: PLC0415 - the client's module, for a given step

    if span / step > MAX_POINTS:
        raise ValueError(f"{name}: range/step is more than {MAX_POINTS} points")
    return span, step


# --- comparisons: a query per color, the new one judged against the live one ---------------------


@frozen
class PromQLComparison(Frozen):
    """One ``[compare_prometheus]`` entry: ``name = {query = "...{color}...", rules = [...]}``.
    The query must give one number per color (aggregate it: ``sum(...)``)."""

    name: str
    query: str
    rules: tuple[CompareRule, ...]

    def run(self, prometheus: Prometheus, new: str, live: str) -> list[Comparison]:
        """Ask for both colors' numbers at the same instant and judge every rule."""
        from .compare import compare_values  # noqa: PLC0415 - the statistics' module, when run

        now = time.time()
        new_value = prometheus.query(self.query.replace("{color}", new), at=now).single()
        live_value = prometheus.query(self.query.replace("{color}", live), at=now).single()
        return [
            compare_values(rule, new_value, live_value, endpoint=self.name) for rule in self.rules
        ]


def parse_comparisons_table(table: object) -> dict[str, PromQLComparison]:
    """``{"error_rate": {"query": "...{color}...", "rules": ["value <= live + 0.001"]}}``."""
    if not isinstance(table, Mapping):
        raise ValueError('must be a table of name = {query = "...{color}...", rules = [...]}')
    comparisons: dict[str, PromQLComparison] = {}
    for name, entry in table.items():
        if not isinstance(name, str) or not re.match(_NAME, name):
            raise ValueError(f"{name!r} is not a plain name (letters, digits, _ . -)")
        if not isinstance(entry, Mapping):
            raise ValueError(f'{name}: expected {{query = "...{{color}}...", rules = [...]}}')
        unknown = sorted(set(entry) - {"query", "rules"})
        if unknown:
            raise ValueError(f"{name}: unknown key {unknown[0]!r} (known: query, rules)")
        query = entry.get("query")
        if not isinstance(query, str) or "{color}" not in query:
            raise ValueError(f"{name}: query must be a PromQL expression with {{color}}")
        for word in re.findall(_PLACEHOLDER, query):
            if word != "color":
                raise ValueError(f"{name}: unknown placeholder {{{word}}} (known: {{color}})")
        given = entry.get("rules")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts:
            raise ValueError(f'{name}: rules must be a non-empty list like ["value <= live"]')
        rules = tuple(parse_value_rule(text, name) for text in texts)
        comparisons[name] = PromQLComparison(name, query.strip(), rules)
    return comparisons
