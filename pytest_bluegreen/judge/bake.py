"""After the switch: the bake window. Every interval the ``post`` checks run against the
now-live color, HAProxy's counters for its servers are read (:mod:`.bakecounters`, handed on from
here too) and the ``[bake_prometheus]`` queries asked; each interval, and the bake, is passed,
failed or inconclusive (:class:`~.judgement.Judgement`); the bake stops, judging nothing more,
when a server no longer has the state the switch left it. The rules are in
docs/after-the-switch.md, "The bake".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.haproxy.answers import AdminState, RuntimeApiError, ServerRef
from pytest_bluegreen.haproxy.instances import Haproxies

from .bakecounters import METRICS, Reading, compare_readings, deltas, read_counters
from .judgement import Judgement
from .thresholds import DEFAULT_BAKE_THRESHOLDS, BakeThreshold, parse_bake_thresholds

if TYPE_CHECKING:  # imported where used: every session resolves the bake's settings (and
    # parses its thresholds here), and promql brings http.client and ssl with it
    from pytest_bluegreen.process.signals import DeferredSignals

    from .prometheus import Prometheus
    from .queries import PromQLCheck, PromQLJudgement

__all__ = [
    "DEFAULT_BAKE_THRESHOLDS",
    "METRICS",
    "Bake",
    "BakeResult",
    "BakeThreshold",
    "Interval",
    "PostResult",
    "Reading",
    "ServerWatch",
    "compare_readings",
    "deltas",
    "parse_bake_thresholds",
    "read_counters",
]

if not TYPE_CHECKING:  # the old names, for one release (issue 23)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"IntervalVerdict": "judge.judgement.Judgement"})


@dataclass(frozen=True)
class PostResult:
    """One run of the ``post`` checks."""

    passed: int = 0
    failed: int = 0
    failed_ids: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.passed + self.failed


@dataclass(frozen=True)
class Interval:
    number: int
    of: int
    started: float  # wall clock, for the timeline
    seconds: float
    judgement: Judgement
    reason: str
    post: PostResult
    metrics: Mapping[str, float] = field(default_factory=dict)
    prometheus: tuple[PromQLJudgement, ...] = ()
    changed: str = ""  # servers changed outside the gate, seen at its end: the bake stops

    def line(self) -> str:
        """``bake 3/12: post 4/4 passed, 5xx 0/1,812, eresp 0: passed`` (``, prometheus 1/1
        passed`` after the counters when [bake_prometheus] has queries)"""
        post = f"post {self.post.passed}/{self.post.total} passed" if self.post.total else "no post"
        m = self.metrics
        counters = (
            f"5xx {int(m['http_5xx'])}/{int(m['requests']):,}, eresp {int(m['eresp'])}"
            if m
            else "HAProxy counters not judged"
        )
        if self.prometheus:
            passed = sum(j.decision is Judgement.PASSED for j in self.prometheus)
            counters += f", prometheus {passed}/{len(self.prometheus)} passed"
        return f"bake {self.number}/{self.of}: {post}, {counters}: {self.judgement.value}" + (
            f" ({self.reason})" if self.reason else ""
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": self.number,
            "of": self.of,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "verdict": self.judgement.value,  # the JSON's key (docs/json.md)
            "reason": self.reason,
            "post": {"passed": self.post.passed, "failed": list(self.post.failed_ids)},
            "haproxy": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
            "prometheus": [j.as_dict() for j in self.prometheus],
        }


@dataclass(frozen=True)
class BakeResult:
    judgement: Judgement  # passed, failed or inconclusive
    reason: str
    intervals: tuple[Interval, ...]
    interrupted: str | None = None  # a signal stopped the bake
    ended: float = 0.0  # monotonic, when the judgement was reached
    changed: str = ""  # the servers changed outside the gate that stopped the bake

    @property
    def failing(self) -> Interval | None:
        """The last interval that did not pass: the evidence."""
        return next(
            (i for i in reversed(self.intervals) if i.judgement is not Judgement.PASSED), None
        )


@dataclass(frozen=True)
class BakePlan:
    seconds: float
    interval: float
    failure_limit: int
    consecutive_successes: int
    min_requests: int
    thresholds: tuple[BakeThreshold, ...]
    prometheus: tuple[PromQLCheck, ...] = ()  # [bake_prometheus]

    @property
    def count(self) -> int:
        return max(1, math.ceil(self.seconds / self.interval))


class ServerWatch:
    """The weight and admin state of every server of both colors on every instance, as the
    switch left them; :meth:`changed` says which differ now."""

    def __init__(self, group: Haproxies, servers: Sequence[ServerRef]) -> None:
        """Raises RuntimeApiError."""
        self.group = group
        self.servers = tuple(servers)
        self.left = self._read()

    def _read(self) -> dict[str, dict[ServerRef, tuple[int, AdminState]]]:
        return {
            name: {ref: (state.uweight, state.admin) for ref, state in states.items()}
            for name, states in self.group.states_by_instance(self.servers).items()
        }

    def changed(self) -> str:
        """``api_backend/blue-api weight 0 ready -> 100 ready, ...``; empty when every server
        is as the switch left it, or HAProxy cannot be read now (the counters say so)."""
        try:
            now = self._read()
        except RuntimeApiError:
            return ""
        found = []
        for name, states in now.items():
            for ref, (weight, admin) in states.items():
                before = self.left.get(name, {}).get(ref)
                if before is not None and before != (weight, admin):
                    was = f"{before[0]} {before[1].value}"
                    found.append(
                        self.group.label(name, f"{ref} weight {was} -> {weight} {admin.value}")
                    )
        return ", ".join(found)


class Bake:
    """The bake of one switch: ``run()`` returns its judgement, each interval's line going to
    ``progress`` as it ends."""

    def __init__(
        self,
        plan: BakePlan,
        group: Haproxies,
        servers: Sequence[ServerRef],
        run_post: Callable[[], PostResult],
        *,
        signals: DeferredSignals,
        progress: Callable[[str], None] = lambda line: None,
        color: str | None = None,
        prometheus: Prometheus | None = None,
        watch: ServerWatch | None = None,
    ) -> None:
        """``color``: the new color (``{color}`` in the Prometheus queries); ``prometheus``:
        the client that asks them (needed when the plan has any); ``watch``: the servers as
        the switch left them (the bake stops when they change)."""
        if plan.prometheus and prometheus is None:
            raise ValueError("a bake with Prometheus queries needs a Prometheus client")
        self.plan = plan
        self.group = group
        self.servers = tuple(servers)
        self.run_post = run_post
        self.signals = signals
        self.progress = progress
        self.color = color
        self.prometheus = prometheus
        self.watch = watch

    def run(self) -> BakeResult:
        intervals: list[Interval] = []
        streak = 0
        for number in range(1, self.plan.count + 1):
            interval = self._interval(number)
            if interval is None:
                judgement = (
                    Judgement.PASSED if self._passes_so_far(intervals) else Judgement.INCONCLUSIVE
                )
                return self._end(
                    judgement,
                    f"interrupted by {self.signals.received} after {len(intervals)} interval(s)",
                    intervals,
                    interrupted=self.signals.received,
                )
            intervals.append(interval)
            self.progress(interval.line())
            if interval.changed:
                return self._end(
                    Judgement.INCONCLUSIVE,
                    f"stopped at interval {number}/{self.plan.count}: HAProxy's servers were "
                    f"changed outside the gate ({interval.changed})",
                    intervals,
                    changed=interval.changed,
                )
            failed = sum(i.judgement is Judgement.FAILED for i in intervals)
            if failed > self.plan.failure_limit:
                return self._end(
                    Judgement.FAILED,
                    f"interval {number}/{self.plan.count} failed: {interval.reason}",
                    intervals,
                )
            streak = streak + 1 if interval.judgement is Judgement.PASSED else 0
            if self.plan.consecutive_successes and streak >= self.plan.consecutive_successes:
                return self._end(
                    Judgement.PASSED,
                    f"{streak} interval(s) in a row passed",
                    intervals,
                )
        if self._passes_so_far(intervals):
            return self._end(
                Judgement.PASSED,
                f"{sum(i.judgement is Judgement.PASSED for i in intervals)} of "
                f"{len(intervals)} interval(s) passed",
                intervals,
            )
        unsure = [i for i in intervals if i.judgement is Judgement.INCONCLUSIVE]
        why = unsure[-1].reason if unsure else "no interval passed"
        return self._end(
            Judgement.INCONCLUSIVE,
            f"{len(unsure)} of {len(intervals)} interval(s) could not be judged ({why})",
            intervals,
        )

    def _passes_so_far(self, intervals: Sequence[Interval]) -> bool:
        passed = sum(i.judgement is Judgement.PASSED for i in intervals)
        unsure = sum(i.judgement is Judgement.INCONCLUSIVE for i in intervals)
        failed = sum(i.judgement is Judgement.FAILED for i in intervals)
        return (
            passed >= 1 and unsure <= self.plan.failure_limit and failed <= self.plan.failure_limit
        )

    def _end(
        self,
        judgement: Judgement,
        reason: str,
        intervals: Sequence[Interval],
        interrupted: str | None = None,
        changed: str = "",
    ) -> BakeResult:
        return BakeResult(
            judgement, reason, tuple(intervals), interrupted, time.monotonic(), changed=changed
        )

    def _interval(self, number: int) -> Interval | None:
        """One interval, or None when a signal came first."""
        started, wall = time.monotonic(), time.time()
        deadline = started + self.plan.interval
        unread = ""
        try:
            before: Reading | None = read_counters(self.group, self.servers)
        except RuntimeApiError as exc:
            before = None
            unread = f"HAProxy's counters could not be read at the interval's start: {exc}"
        post = self.run_post()
        while (left := deadline - time.monotonic()) > 0:
            if self.signals.received:
                return None
            time.sleep(min(left, 0.05))
        if self.signals.received:
            return None
        metrics: dict[str, float] = {}
        reason = unread
        try:
            after: Reading | None = read_counters(self.group, self.servers)
        except RuntimeApiError as exc:
            reason = f"HAProxy's counters could not be read: {exc}"
            after = None
        if before is not None and after is not None:
            metrics, reason = compare_readings(before, after)
        changed = self.watch.changed() if self.watch is not None else ""
        if changed:  # what was measured is not the switched build's alone: nothing judged
            return Interval(
                number=number,
                of=self.plan.count,
                started=wall,
                seconds=time.monotonic() - started,
                judgement=Judgement.INCONCLUSIVE,
                reason=f"HAProxy's servers were changed outside the gate ({changed})",
                post=post,
                changed=changed,
            )
        judged = self.ask_prometheus()
        judgement, reason = self.judge(post, metrics, reason, judged)
        return Interval(
            number=number,
            of=self.plan.count,
            started=wall,
            seconds=time.monotonic() - started,
            judgement=judgement,
            reason=reason,
            post=post,
            metrics=metrics,
            prometheus=judged,
        )

    def ask_prometheus(self) -> tuple[PromQLJudgement, ...]:
        """Each Prometheus query at the interval's end, judged; one that cannot be asked is
        inconclusive with the reason."""
        from .prometheus import PrometheusUnreachable, PromQLError  # noqa: PLC0415
        from .queries import PromQLJudgement  # noqa: PLC0415

        if self.prometheus is None:  # only without queries: __init__ refuses them without one
            return ()
        judged = []
        at = time.time()
        for check in self.plan.prometheus:
            try:
                judged.append(
                    check.run(self.prometheus, color=self.color, interval=self.plan.interval, at=at)
                )
            except (PrometheusUnreachable, PromQLError) as exc:
                judged.append(
                    PromQLJudgement(
                        check.name,
                        check.render(self.color, self.plan.interval),
                        Judgement.INCONCLUSIVE,
                        str(exc),
                    )
                )
        return tuple(judged)

    def judge(
        self,
        post: PostResult,
        metrics: Mapping[str, float],
        reason: str,
        prometheus: Sequence[PromQLJudgement] = (),
    ) -> tuple[Judgement, str]:
        """Failing evidence first (post checks, a Prometheus query), then the counters, then
        what could not be judged."""
        if post.failed:
            return Judgement.FAILED, f"post check(s) failed: {', '.join(post.failed_ids)}"
        failed = [j for j in prometheus if j.decision is Judgement.FAILED]
        if failed:
            return Judgement.FAILED, _joined(failed)
        counters = self._judge_counters(metrics, reason)
        if counters is not None:
            return counters
        unsure = [j for j in prometheus if j.decision is Judgement.INCONCLUSIVE]
        if unsure:
            return Judgement.INCONCLUSIVE, _joined(unsure)
        return Judgement.PASSED, ""

    def _judge_counters(
        self, metrics: Mapping[str, float], reason: str
    ) -> tuple[Judgement, str] | None:
        """HAProxy's counters against their thresholds; None when they pass."""
        if not metrics:
            return Judgement.INCONCLUSIVE, reason or "HAProxy's counters could not be read"
        missed = [
            f"{t.metric}={_shown(metrics[t.metric])} misses {t.text!r}"
            for t in self.plan.thresholds
            if not math.isnan(metrics[t.metric]) and not t.holds(metrics[t.metric])
        ]
        if missed:
            return Judgement.FAILED, "; ".join(missed)
        if metrics["requests"] < self.plan.min_requests:
            return (
                Judgement.INCONCLUSIVE,
                f"{int(metrics['requests'])} request(s), fewer than bake_min_requests "
                f"{self.plan.min_requests}",
            )
        empty = [t.text for t in self.plan.thresholds if math.isnan(metrics[t.metric])]
        if empty:
            return (
                Judgement.INCONCLUSIVE,
                f"no request to judge {', '.join(empty)} on (an empty measurement is not zero)",
            )
        return None


def _joined(judged: Sequence[PromQLJudgement]) -> str:
    """``prometheus error_rate: {} value=0.05 missed a threshold; ...``"""
    return "; ".join(f"prometheus {j.name}: {j.reason}" for j in judged)


def _shown(value: float) -> str:
    return f"{value:.4g}"
