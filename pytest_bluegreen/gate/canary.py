"""The gate's judge of each canary step (a :data:`pytest_bluegreen.switch.canary.CanaryJudge`):
a window on real traffic per step, judged by the bake's rules on the new color and by the two
colors' 5xx rates on the same traffic (docs/gate.md, "Canary steps"):

- failed when the bake's rules fail it (a post check, a Prometheus query, a bake threshold on
  the new color's counters), or when the new color's 5xx rate exceeds the live color's on the
  same traffic in the same window by more than ``canary_error_margin`` and the interval of
  that difference (Newcombe's, at ``compare_confidence``) lies beyond the margin too;
- inconclusive when either color answered fewer than ``canary_min_requests`` routed requests,
  or a reading or a query could not be had: judged again up to ``canary_extensions`` times
  (``canary_on_inconclusive = "extend"``), then the canary is aborted; never a pass.

A signal, ``bluegreen abort``, or servers changed outside the gate (a reload takes the step's
weights) stop the canary: every weight goes back. ``bluegreen promote`` ends the step at once
and skips the steps left.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef
from pytest_bluegreen.judge.bake import Bake, BakePlan, PostResult, ServerWatch
from pytest_bluegreen.judge.bakecounters import Reading, compare_readings, read_counters
from pytest_bluegreen.judge.comparerules import CompareRule, Samples, parse_compare_rule
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.switch.canary import (
    CanaryFailed,
    CanaryInconclusive,
    CanaryStep,
    CanaryVerdict,
)
from pytest_bluegreen.switch.outcome import Abort

if TYPE_CHECKING:
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.judge.prometheus import Prometheus, QueryResult
    from pytest_bluegreen.judge.queries import PromQLJudgement
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings

__all__ = [
    "CanaryJudge",
    "Window",
    "compare_error_rates",
    "compare_latency",
    "histogram_samples",
]

POLL = 0.05  # seconds between looks at signals and the operator's requests
# seconds between looks at HAProxy's servers during a window: a reload (or a hand) that takes
# the step's weights ends the canary within about this, not at the window's end
WATCH_EVERY = 1.0


@dataclass(frozen=True)
class Window:
    """One judged window of a canary step (a step judged again has several)."""

    number: int  # the step's: 1..of
    of: int
    percent: int
    attempt: int  # 0, then 1.. for each extension
    judgement: Judgement
    reason: str
    post: PostResult
    new: Mapping[str, float]  # the new color's metrics over the window (empty: not read)
    old: Mapping[str, float]  # the live color's
    prometheus: tuple[PromQLJudgement, ...] = ()

    @property
    def new_requests(self) -> int:
        return int(self.new.get("requests", 0))

    @property
    def routed_requests(self) -> int:
        return self.new_requests + int(self.old.get("requests", 0))

    def line(self, new: str, old: str) -> str:
        """``canary 1/3 (5%): post 4/4 passed, green 5xx 5/98 (4.8% of routed), blue 5xx
        0/1,940: failed (...)``"""
        post = f"post {self.post.passed}/{self.post.total} passed" if self.post.total else "no post"
        again = f", judged again ({self.attempt})" if self.attempt else ""
        counted = "HAProxy counters not read"
        if self.new and self.old:
            share = self.new_requests / self.routed_requests if self.routed_requests else 0.0
            counted = (
                f"{new} 5xx {int(self.new['http_5xx'])}/{self.new_requests:,} ({share:.1%} of "
                f"routed), {old} 5xx {int(self.old['http_5xx'])}/{int(self.old['requests']):,}"
            )
        return (
            f"canary {self.number}/{self.of} ({self.percent}%){again}: {post}, "
            f"{counted}: {self.judgement.value}" + (f" ({self.reason})" if self.reason else "")
        )


def compare_error_rates(
    new: Mapping[str, float],
    old: Mapping[str, float],
    *,
    margin: float,
    confidence: float,
    names: tuple[str, str] = ("new", "live"),
) -> tuple[Judgement, str] | None:
    """The new color's 5xx rate against the live color's on the same traffic: failed when it
    is higher by more than ``margin`` and the interval of the difference lies beyond the
    margin too (a miss that may be chance is no failure); None when it holds. The counts are
    the caller's to have checked (both colors answered requests)."""
    from pytest_bluegreen.judge.significance import newcombe_interval  # noqa: PLC0415 - numpy

    errors_new, requests_new = int(new["http_5xx"]), int(new["requests"])
    errors_old, requests_old = int(old["http_5xx"]), int(old["requests"])
    if not requests_new or not requests_old:
        return Judgement.INCONCLUSIVE, "no routed request to compare the 5xx rates on"
    rate_new, rate_old = errors_new / requests_new, errors_old / requests_old
    difference = rate_new - rate_old
    low, high = newcombe_interval(
        errors_new, requests_new, errors_old, requests_old, confidence=confidence
    )
    if difference > margin and low > margin:
        return Judgement.FAILED, (
            f"5xx rate {rate_new:.2%} against {names[1]}'s {rate_old:.2%} on the same traffic: "
            f"+{difference:.2%}, interval [{low:+.2%}, {high:+.2%}] at {confidence:.0%} beyond "
            f"canary_error_margin {margin:g}"
        )
    return None


LATENCY_SAMPLES_AT_MOST = 5000  # per color: a larger histogram is scaled down to this many


def histogram_samples(result: QueryResult) -> tuple[list[float], int]:
    """A histogram's buckets (``sum by (le) (increase(..._bucket[W]))``) as latencies in ms,
    and how many requests they hold: each request at its bucket's upper bound, one past the
    last finite bound at twice that bound (beyond the histogram: never read as fast), so a
    percentile is read at the buckets' resolution. More than LATENCY_SAMPLES_AT_MOST are
    scaled down in proportion (largest remainders: a small tail bucket keeps its share; a
    wider interval, never a failure made up). No finite bucket, or values that are not finite
    numbers: no samples (the step cannot judge latency)."""
    buckets = []
    for series in result.series:
        try:
            le = float(series.labels.get("le", ""))
        except ValueError:
            continue
        if not series.values or not math.isfinite(series.values[-1]):
            return [], 0  # +Inf or NaN counts: nothing to read
        buckets.append((le, series.values[-1]))
    buckets.sort()
    finite = [le for le, _ in buckets if math.isfinite(le)]
    if not finite:
        return [], 0
    counts: list[tuple[float, float]] = []
    below = 0.0
    for le, cumulative in buckets:
        counts.append((le if math.isfinite(le) else 2 * finite[-1], max(0.0, cumulative - below)))
        below = max(below, cumulative)
    total = sum(count for _, count in counts)
    scale = min(1.0, LATENCY_SAMPLES_AT_MOST / total) if total else 1.0
    wanted = [count * scale for _, count in counts]
    whole = [math.floor(w) for w in wanted]
    short = round(sum(wanted)) - sum(whole)
    for index in sorted(range(len(wanted)), key=lambda i: whole[i] - wanted[i])[:short]:
        whole[index] += 1
    samples: list[float] = []
    for (value, _), count in zip(counts, whole, strict=True):
        samples += [value * 1000] * count
    return samples, round(total)


def compare_latency(
    new: Sequence[float], old: Sequence[float], rule: CompareRule, *, confidence: float
) -> tuple[Judgement, str] | None:
    """The new color's latency against the live one's by ``rule`` (``p(95) <= live * 1.25 +
    10``): failed when it misses the tolerance and the interval of the excess (a bootstrap of
    the bucketed latencies) lies beyond it too; None when it holds."""
    from pytest_bluegreen.judge.significance import (  # noqa: PLC0415 - numpy, a canary's only
        mean_difference,
        quantile_difference,
    )

    if rule.metric == "avg":
        estimate, (low, _), _ = mean_difference(
            new, old, factor=rule.factor, delta=rule.delta, confidence=confidence, block=1
        )
    else:
        pct = 50.0 if rule.pct is None else rule.pct
        estimate, (low, _), _ = quantile_difference(
            new, old, pct, factor=rule.factor, delta=rule.delta, confidence=confidence, block=1
        )
    if estimate > 0 and low > 0:
        return Judgement.FAILED, (
            f"latency misses {rule.text!r}: {rule.measure(Samples.of(new)):.0f} ms against "
            f"live {rule.measure(Samples.of(old)):.0f} ms (histogram buckets), +{estimate:.0f} "
            f"ms over the tolerance, interval's low end +{low:.0f} ms at {confidence:.0%}"
        )
    return None


@dataclass
class CanaryJudge:
    """Judges each canary step of one switch ``source`` -> ``target`` (a
    :data:`pytest_bluegreen.switch.canary.CanaryJudge`); ``windows`` keeps what it saw."""

    settings: Settings
    group: Haproxies
    source: str
    target: str
    run_post: Callable[[], PostResult] | None
    signals: DeferredSignals
    progress: Callable[[str], None]
    # the operator's request (bluegreen abort / promote) for this canary, taken when read
    requests: Callable[[], str | None] = lambda: None
    windows: list[Window] = field(default_factory=list)

    @property
    def new_servers(self) -> tuple[ServerRef, ...]:
        return self.settings.topology.servers(self.target)

    @property
    def old_servers(self) -> tuple[ServerRef, ...]:
        return self.settings.topology.servers(self.source)

    def __call__(self, step: CanaryStep) -> CanaryVerdict:
        canary = self.settings.canary
        extend = canary.canary_on_inconclusive == "extend"
        attempts = 1 + (canary.canary_extensions if extend else 0)
        for attempt in range(attempts):
            window = self._window(step, attempt)
            if window is None:  # bluegreen promote
                return CanaryVerdict.PROMOTE
            self.windows.append(window)
            self.progress(window.line(self.target, self.source))
            if window.judgement is Judgement.PASSED:
                # a request that came while it was judged: abort still ends it here
                return CanaryVerdict.PROMOTE if self._stopped(step) else CanaryVerdict.NEXT
            if window.judgement is Judgement.FAILED:
                raise CanaryFailed(
                    f"canary step {step.number}/{step.of} ({step.percent}%) failed: "
                    f"{window.reason}; {self.reached()}"
                )
        why = self.windows[-1].reason if self.windows else "nothing judged"
        raise CanaryInconclusive(
            f"canary step {step.number}/{step.of} ({step.percent}%) could not be judged in "
            f"{attempts} window(s) of {step.seconds:g}s ({why}; canary_on_inconclusive = "
            f"{canary.canary_on_inconclusive!r}): never a pass; {self.reached()}"
        )

    def user_share(self) -> tuple[int, int]:
        """(requests the new color answered, routed requests) over every window judged."""
        return (
            sum(w.new_requests for w in self.windows),
            sum(w.routed_requests for w in self.windows),
        )

    def reached(self) -> str:
        """``green answered 98 of 2,038 routed requests (4.8%) during the canary``"""
        new, routed = self.user_share()
        share = new / routed if routed else 0.0
        return (
            f"{self.target} answered {new:,} of {routed:,} routed request(s) ({share:.1%}) "
            "during the canary"
        )

    # -- one window ----------------------------------------------------------------------------
    def _window(self, step: CanaryStep, attempt: int) -> Window | None:
        """One window of the step, judged; None when ``bluegreen promote`` ended it. Raises
        Abort (a signal, bluegreen abort, servers changed outside the gate)."""
        started = time.monotonic()
        deadline = started + step.seconds
        self._live_serves(step)
        try:
            watch: ServerWatch | None = ServerWatch(self.group, self.settings.topology.all_servers)
        except RuntimeApiError:
            watch = None  # unreadable now: the readings below say so
        before_new, before_old, unread = self._read()
        if self._stopped(step):  # looked at before the post checks (they may take a while)
            return None
        post = self.run_post() if self.run_post is not None else PostResult()
        looked = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            if self._stopped(step):
                return None
            if watch is not None and time.monotonic() - looked >= WATCH_EVERY:
                self._unchanged(watch, step)
                looked = time.monotonic()
            time.sleep(min(left, POLL))
        if self._stopped(step):
            return None
        after_new, after_old, unread_after = self._read()
        if watch is not None:
            self._unchanged(watch, step)
        new: Mapping[str, float] = {}
        old: Mapping[str, float] = {}
        reason = unread or unread_after
        if before_new is not None and after_new is not None:
            new, reason = compare_readings(before_new, after_new)
        if before_old is not None and after_old is not None and not reason:
            old, reason = compare_readings(before_old, after_old)
        judgement, why, judged = self._judge(post, new, old, reason, (step.seconds, time.time()))
        return Window(
            step.number, step.of, step.percent, attempt, judgement, why, post, new, old, judged
        )

    @staticmethod
    def _unchanged(watch: ServerWatch, step: CanaryStep) -> None:
        """Abort when a reload took the step's weights, or someone changed them by hand: what
        the window measures is no longer the canary's (and the split is gone: every weight goes
        back at once, not at the window's end)."""
        changed = watch.changed()
        if changed:
            raise Abort(
                f"HAProxy's servers changed outside the gate during canary step {step.number}/"
                f"{step.of} ({changed}): what it measured is not the canary's"
            )

    def _live_serves(self, step: CanaryStep) -> None:
        """In every backend the canary splits, on every instance, a server of the live color
        is UP: else HAProxy gives the new color all of that backend's traffic whatever the
        weights, and no canary is running (Abort: every weight goes back). A reading that
        fails is left to the counters'."""
        old = set(self.old_servers)
        try:
            every = self.group.stat_by_instance()
        except RuntimeApiError:
            return
        for name, rows in every.items():
            for backend in sorted({ref.backend for ref in old}):
                mine = [row for row in rows if row.ref in old and row.ref.backend == backend]
                if mine and not any(row.is_up for row in mine):
                    where = self.group.label(name, backend)
                    raise Abort(
                        f"no server of the live color {self.source} is UP in {where} at canary "
                        f"step {step.number}/{step.of}: HAProxy would give {self.target} all of "
                        "its traffic, not the step's share"
                    )

    def _stopped(self, step: CanaryStep) -> bool:
        """A signal or bluegreen abort raises Abort; bluegreen promote says True."""
        if self.signals.received:
            raise Abort(f"interrupted by {self.signals.received}")
        request = self.requests()
        if request == "abort":
            raise Abort(f"aborted by 'bluegreen abort' at canary step {step.number}/{step.of}")
        return request == "promote"

    def _read(self) -> tuple[Reading | None, Reading | None, str]:
        try:
            return (
                read_counters(self.group, self.new_servers),
                read_counters(self.group, self.old_servers),
                "",
            )
        except RuntimeApiError as exc:
            return None, None, f"HAProxy's counters could not be read: {exc}"

    def _judge(
        self,
        post: PostResult,
        new: Mapping[str, float],
        old: Mapping[str, float],
        reason: str,
        window: tuple[float, float],
    ) -> tuple[Judgement, str, tuple[PromQLJudgement, ...]]:
        """The bake's rules on the new color, then the comparisons with the live one (5xx
        rate, latency); failing evidence first, then what could not be judged. ``window``:
        its seconds and its end (Unix time), for the latency's histograms."""
        settings = self.settings
        canary = settings.canary
        plan = BakePlan(
            seconds=canary.canary_step_seconds,
            interval=canary.canary_step_seconds,
            failure_limit=0,
            consecutive_successes=0,
            min_requests=0,  # canary_min_requests, below, for both colors
            thresholds=settings.bake.thresholds,
            prometheus=settings.bake.prometheus,
        )
        asks = (
            bool(plan.prometheus) or canary.canary_latency
        ) and settings.prometheus.prometheus_url
        client = settings.prometheus.client() if asks else None
        with client or contextlib.nullcontext() as prometheus:
            bake = Bake(
                plan,
                self.group,
                self.new_servers,
                lambda: post,
                signals=self.signals,
                color=self.target,
                prometheus=prometheus,
            )
            judged = bake.ask_prometheus()
            latency = self._latency(prometheus, window) if canary.canary_latency else None
        judgement, why = bake.judge(post, new, reason, judged)
        if judgement is Judgement.FAILED:
            return judgement, why, judged
        if not (new and old):
            return judgement, why, judged
        names = (self.target, self.source)
        compared = compare_error_rates(
            new,
            old,
            margin=canary.canary_error_margin,
            confidence=settings.checks.compare_confidence,
            names=names,
        )
        for found in (compared, latency):
            if found is not None and found[0] is Judgement.FAILED:
                return found[0], found[1], judged
        few = [
            f"{name} answered {int(metrics['requests'])} routed request(s)"
            for name, metrics in zip(names, (new, old), strict=True)
            if metrics["requests"] < canary.canary_min_requests
        ]
        if few:
            return (
                Judgement.INCONCLUSIVE,
                f"{', '.join(few)}, fewer than canary_min_requests {canary.canary_min_requests}",
                judged,
            )
        for found in (compared, latency):
            if found is not None:
                return found[0], found[1], judged
        return judgement, why, judged

    def _latency(
        self, prometheus: Prometheus | None, window: tuple[float, float]
    ) -> tuple[Judgement, str] | None:
        """The two colors' latency in the window from their histograms (``canary_latency``),
        by ``canary_latency_rule``; inconclusive when it cannot be read or holds too few."""
        from pytest_bluegreen.judge.prometheus import (  # noqa: PLC0415 - a canary's only
            PrometheusUnreachable,
            PromQLError,
        )

        canary = self.settings.canary
        if prometheus is None or canary.canary_latency is None:
            return Judgement.INCONCLUSIVE, "canary_latency needs prometheus_url"
        seconds, end = window
        span = max(1, math.ceil(seconds))
        found: dict[str, list[float]] = {}
        held: dict[str, int] = {}
        for color in (self.target, self.source):
            selector = canary.canary_latency.replace("{color}", color)
            expr = f"sum by (le) (increase({selector}[{span}s]))"
            try:
                found[color], held[color] = histogram_samples(prometheus.query(expr, at=end))
            except (PrometheusUnreachable, PromQLError) as exc:
                return Judgement.INCONCLUSIVE, f"latency not read: {exc}"
        few = [
            f"{color} {held[color]}"
            for color in found
            if not found[color] or held[color] < canary.canary_min_requests
        ]
        if few:
            return Judgement.INCONCLUSIVE, (
                f"latency: the histogram holds too few requests ({', '.join(few)}; "
                f"canary_min_requests {canary.canary_min_requests})"
            )
        return compare_latency(
            found[self.target],
            found[self.source],
            parse_compare_rule(canary.canary_latency_rule),
            confidence=self.settings.checks.compare_confidence,
        )
