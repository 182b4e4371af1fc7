"""PromQL: the checks, the bake and the comparison ask Prometheus over its HTTP API.

Plain HTTP with ``requests`` rather than prometheus-api-client: three endpoints are all we need
(``/api/v1/query``, ``/api/v1/query_range``, ``/api/v1/targets``), requests is already the
plugin's one HTTP dependency, and the client library would bring pandas (and, before its 0.7,
numpy, matplotlib and dateparser) into every install.

What asking gives:

- Prometheus does not answer (refused, timed out, an HTTP 5xx, no Prometheus API at the URL):
  :class:`PrometheusUnreachable`, an ``InfrastructureError``: the check is an INFRA-ERROR,
  never a pass;
- Prometheus refuses the query (HTTP 400 or 422: a parse or execution error):
  :class:`PromQLError`, the check's own mistake: a failure;
- else a :class:`QueryResult`: its series, each with its labels and points (one point for an
  instant query; a scalar is one series without labels).

A check (:class:`PromQLCheck`, a ``[prometheus_checks]`` entry) judges *every* series of its
result against k6-style thresholds (``value<0.01``; ``value`` is the last point, ``avg``,
``med``, ``min``, ``max`` and ``p(N)`` are over the points, see :mod:`thresholds`). The verdict
(:func:`judge`) is *failed* when a series misses a threshold, else *inconclusive* when the
result has no series at all or a threshold measures NaN (a rate over no request), else
*passed*: an empty result is never read as zero (Kayenta's regression read NaN as 0).

``{color}`` in a query is replaced by the color judged (a check with it runs per color); the
bake's queries also take ``{interval}``, the bake interval as a PromQL duration (``10s``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.eventually import InfrastructureError
from pytest_bluegreen.redaction import excerpt, shown_url

from .compare import CompareRule, Comparison, compare_values, parse_value_rule
from .judgement import Judgement
from .thresholds import Threshold, ThresholdError, measure_series, parse_series

__all__ = [
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

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series


class PrometheusUnreachable(InfrastructureError):
    """Prometheus does not answer, or no Prometheus API answers at the URL."""

    part = "prometheus"  # INFRA-ERROR (prometheus unreachable), not the color's


class PromQLError(BluegreenError, ValueError):
    """Prometheus refused the query (a parse or execution error), or its result has another
    shape than the caller needs: the check's own mistake, a failure (exit 1); the bake counts
    the interval inconclusive."""

    exit_code = ExitCode.CHECKS_FAILED


# --- what Prometheus answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series of a result: its labels and its points' values, in time order."""

    labels: Mapping[str, str]
    values: tuple[float, ...]

    @property
    def name(self) -> str:
        """``{proxy="api_backend", server="green-api"}``; ``{}`` for a scalar or an aggregate
        without labels."""
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items())) + "}"


@dataclass(frozen=True)
class QueryResult:
    query: str
    kind: str  # vector, matrix or scalar
    series: tuple[Series, ...]

    def single(self) -> float:
        """The one number of a result with one series (its last point); NaN for no series."""
        if not self.series:
            return math.nan
        if len(self.series) > 1:
            raise PromQLError(
                f"{self.query!r} gives {len(self.series)} series, one number is needed: "
                "aggregate it (sum(...), max(...))"
            )
        values = self.series[0].values
        return values[-1] if values else math.nan


@dataclass(frozen=True)
class Target:
    """One active scrape target, as ``/api/v1/targets`` lists it."""

    job: str
    url: str
    health: str  # up, down or unknown (not scraped yet)
    labels: Mapping[str, str]
    last_error: str = ""

    def line(self) -> str:
        """``job haproxy, http://127.0.0.1:8404/metrics: down (... connection refused)``"""
        why = f" ({self.last_error})" if self.last_error else ""
        return f"job {self.job}, {self.url}: {self.health}{why}"


def _number(text: Any) -> float:
    """A Prometheus sample value (``"0.05"``, ``"NaN"``, ``"+Inf"``) as a float."""
    return float(text)


def _series(kind: str, result: Any) -> tuple[Series, ...]:
    if kind == "scalar":
        return (Series({}, (_number(result[1]),)),)
    if kind == "vector":
        return tuple(Series(dict(r["metric"]), (_number(r["value"][1]),)) for r in result)
    if kind == "matrix":
        return tuple(
            Series(dict(r["metric"]), tuple(_number(v) for _, v in r["values"])) for r in result
        )
    raise PromQLError(f"a result of type {kind!r} has no number to judge")


# --- the client ----------------------------------------------------------------------------------


# a scrape job in the YAML Prometheus shows of its loaded configuration
_JOB_NAME = re.compile(r"^- job_name: (.+)$", re.MULTILINE)


class Prometheus:
    """A client of Prometheus' HTTP API at ``url`` (``http://127.0.0.1:10200``)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        import requests  # noqa: PLC0415 - loaded when Prometheus is asked

        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy from the environment for a local API

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"Prometheus({shown_url(self.url)!r})"

    def query(self, expr: str, *, at: float | None = None) -> QueryResult:
        """An instant query, now or at ``at`` (Unix seconds)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params, expr)
        return QueryResult(expr, data["resultType"], _series(data["resultType"], data["result"]))

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> QueryResult:
        """A range query from ``start`` to ``end`` (Unix seconds), one point every ``step``."""
        if step <= 0 or end < start:
            raise ValueError(f"a range needs step > 0 and start <= end (step {step})")
        if (end - start) / step > MAX_POINTS:
            raise ValueError(f"{(end - start) / step:.0f} points: at most {MAX_POINTS}")
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("/api/v1/query_range", params, expr)
        return QueryResult(expr, data["resultType"], _series(data["resultType"], data["result"]))

    def targets(self, *, settle: float = 0.0) -> list[Target]:
        """The active scrape targets and their health.

        Prometheus publishes what its service discovery found at most every 5 seconds, so right
        after a start or a configuration reload the list is short or empty. With ``settle``
        seconds, wait (polling) until every scrape job of the loaded configuration has a
        target, active or dropped, or until ``settle`` has passed (a job with no target at all
        waits it out)."""
        deadline = time.monotonic() + settle
        while True:
            data = self._get("/api/v1/targets", {"state": "any"}, None)
            missing = self._pools_without_targets(data) if settle > 0 else set()
            if not missing or time.monotonic() >= deadline:
                break
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        return [
            Target(
                job=str(t.get("labels", {}).get("job") or t.get("scrapePool", "")),
                url=str(t.get("scrapeUrl", "")),
                health=str(t.get("health", "unknown")),
                labels=dict(t.get("labels", {})),
                last_error=str(t.get("lastError") or ""),
            )
            for t in data.get("activeTargets") or []
        ]

    def _pools_without_targets(self, targets: Mapping[str, Any]) -> set[str]:
        """The scrape jobs of the loaded configuration that no target, active or dropped,
        belongs to yet. Prometheus lists a scrape pool only once discovery has filled it, so
        the jobs come from the configuration it shows (``/api/v1/status/config``, YAML it
        writes itself: one ``- job_name: NAME`` line per job)."""
        loaded = str(self._get("/api/v1/status/config", {}, None).get("yaml", ""))
        jobs = {name.strip().strip("'\"") for name in _JOB_NAME.findall(loaded)}
        seen = {str(t.get("scrapePool", "")) for t in targets.get("activeTargets") or []}
        seen |= {  # a dropped target names its pool by the job label it was discovered with
            str(t.get("scrapePool") or t.get("discoveredLabels", {}).get("job", ""))
            for t in targets.get("droppedTargets") or []
        }
        return jobs - seen

    def _get(self, path: str, params: Mapping[str, str], expr: str | None) -> Any:
        import requests  # noqa: PLC0415

        url = self.url + path
        try:
            response = self._session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnreachable(
                f"Prometheus at {shown_url(self.url)} does not answer: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusUnreachable(
                f"no Prometheus API at {shown_url(self.url)}: GET {path} answered HTTP "
                f"{response.status_code} {excerpt(response.text, 120)!r}"
            )
        if body["status"] == "success":
            return body["data"]
        error = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        if response.status_code in {400, 422} and expr is not None:
            raise PromQLError(f"Prometheus refused {expr!r}: {error}")
        raise PrometheusUnreachable(
            f"Prometheus at {shown_url(self.url)} failed GET {path} "
            f"(HTTP {response.status_code}: {error})"
        )


# --- checks: a query and its thresholds ----------------------------------------------------------


def duration(value: Any) -> float:
    """``"5m"``, ``"30s"``, ``"1h"``, ``"250ms"`` or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '5m' or seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if match is None:
            raise ValueError(f"expected a duration like '5m', '30s' or seconds, got {value!r}")
        seconds = float(match["number"]) * _UNITS[match["unit"] or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be more than 0, got {value!r}")
    return seconds


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL duration: ``10s``, ``1500ms``."""
    whole = round(seconds)
    if abs(seconds - whole) < 1e-9 and whole > 0:
        return f"{whole}s"
    return f"{max(1, round(seconds * 1000))}ms"


@dataclass(frozen=True)
class PromQLCheck:
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
        return judge(self.name, result, self.thresholds)


@dataclass(frozen=True)
class PromQLJudgement:
    """A check's result judged: the verdict, why, and one line per series and threshold."""

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


def judge(name: str, result: QueryResult, thresholds: Sequence[Threshold]) -> PromQLJudgement:
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
        if not isinstance(name, str) or not _NAME.match(name):
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
    for word in _PLACEHOLDER.findall(query):
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
    if step is not None and span is None:
        raise ValueError(f"{name}: step needs a range")
    if span is not None and step is not None and span / step > MAX_POINTS:
        raise ValueError(f"{name}: range/step is more than {MAX_POINTS} points")
    return span, step


# --- comparisons: a query per color, the new one judged against the live one ---------------------


@dataclass(frozen=True)
class PromQLComparison:
    """One ``[compare_prometheus]`` entry: ``name = {query = "...{color}...", rules = [...]}``.
    The query must give one number per color (aggregate it: ``sum(...)``)."""

    name: str
    query: str
    rules: tuple[CompareRule, ...]

    def run(self, prometheus: Prometheus, new: str, live: str) -> list[Comparison]:
        """Ask for both colors' numbers at the same instant and judge every rule."""
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
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{name!r} is not a plain name (letters, digits, _ . -)")
        if not isinstance(entry, Mapping):
            raise ValueError(f'{name}: expected {{query = "...{{color}}...", rules = [...]}}')
        unknown = sorted(set(entry) - {"query", "rules"})
        if unknown:
            raise ValueError(f"{name}: unknown key {unknown[0]!r} (known: query, rules)")
        query = entry.get("query")
        if not isinstance(query, str) or "{color}" not in query:
            raise ValueError(f"{name}: query must be a PromQL expression with {{color}}")
        for word in _PLACEHOLDER.findall(query):
            if word != "color":
                raise ValueError(f"{name}: unknown placeholder {{{word}}} (known: {{color}})")
        given = entry.get("rules")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts:
            raise ValueError(f'{name}: rules must be a non-empty list like ["value <= live"]')
        rules = tuple(parse_value_rule(text, name) for text in texts)
        comparisons[name] = PromQLComparison(name, query.strip(), rules)
    return comparisons
