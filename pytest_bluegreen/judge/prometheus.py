"""Prometheus' HTTP API, asked by the checks, the bake and the comparison (:mod:`.queries`).

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
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.eventually import InfrastructureError
from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.redaction import excerpt, mask_credentials, shown_url

__all__ = [
    "MAX_POINTS",
    "PromQLError",
    "Prometheus",
    "PrometheusUnreachable",
    "QueryResult",
    "Series",
    "Target",
]

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


@frozen
class Series(Frozen):
    """One series of a result: its labels and its points' values, in time order, and their
    times (Unix seconds; empty where the result was not read from a query's answer)."""

    labels: Mapping[str, str]
    values: tuple[float, ...]
    times: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """``{proxy="api_backend", server="green-api"}``; ``{}`` for a scalar or an aggregate
        without labels."""
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(self.labels.items())) + "}"


@frozen
class QueryResult(Frozen):
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


@frozen
class Target(Frozen):
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
        return (Series({}, (_number(result[1]),), (float(result[0]),)),)
    if kind == "vector":
        return tuple(
            Series(dict(r["metric"]), (_number(r["value"][1]),), (float(r["value"][0]),))
            for r in result
        )
    if kind == "matrix":
        return tuple(
            Series(
                dict(r["metric"]),
                tuple(_number(v) for _, v in r["values"]),
                tuple(float(t) for t, _ in r["values"]),
            )
            for r in result
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
            if not math.isfinite(at):
                raise ValueError(f"a query's time must be a number of seconds, not {at}")
            params["time"] = f"{at:.3f}"
        return self._result("/api/v1/query", params, expr)

    def query_range(self, expr: str, *, start: float, end: float, step: float) -> QueryResult:
        """A range query from ``start`` to ``end`` (Unix seconds), one point every ``step``."""
        if not all(map(math.isfinite, (start, end, step))) or step <= 0 or end < start:
            raise ValueError(
                f"a range needs finite numbers, step > 0 and start <= end (start {start}, "
                f"end {end}, step {step})"
            )
        if (end - start) / step > MAX_POINTS:
            raise ValueError(f"{(end - start) / step:.0f} points: at most {MAX_POINTS}")
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._result("/api/v1/query_range", params, expr)

    def _result(self, path: str, params: Mapping[str, str], expr: str) -> QueryResult:
        """The query's result; what no Prometheus answers (a 200 whose data has no result of
        the documented shape: a proxy, another service) is no Prometheus API."""
        data = self._get(path, params, expr)
        try:
            return QueryResult(
                expr, data["resultType"], _series(data["resultType"], data["result"])
            )
        except PromQLError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise self._unreadable(path) from None

    def targets(self, *, settle: float = 0.0) -> list[Target]:
        """The active scrape targets and their health.

        Prometheus publishes what its service discovery found at most every 5 seconds, so right
        after a start or a configuration reload the list is short or empty. With ``settle``
        seconds, wait (polling) until every scrape job of the loaded configuration has a
        target, active or dropped, or until ``settle`` has passed (a job with no target at all
        waits it out)."""
        deadline = time.monotonic() + settle
        try:
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
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise self._unreadable("/api/v1/targets") from None

    def _unreadable(self, path: str) -> PrometheusUnreachable:
        return PrometheusUnreachable(
            f"no Prometheus API at {shown_url(self.url)}: GET {path} answered data of another "
            "shape than Prometheus' API"
        )

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
            said = mask_credentials(str(exc))
            raise PrometheusUnreachable(  # not chained: a traceback would show exc's URL
                f"Prometheus at {shown_url(self.url)} does not answer: {type(exc).__name__}: {said}"
            ) from None
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
            return body.get("data")
        error = f"{body.get('errorType', 'error')}: {body.get('error', '')}"
        if response.status_code in {400, 422} and expr is not None:
            raise PromQLError(f"Prometheus refused {expr!r}: {error}")
        raise PrometheusUnreachable(
            f"Prometheus at {shown_url(self.url)} failed GET {path} "
            f"(HTTP {response.status_code}: {error})"
        )
