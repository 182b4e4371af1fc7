"""A canary step's judged window, and the comparison of the two colors' 5xx rates on the same
traffic. The gate judges each step (:mod:`pytest_bluegreen.gate.canary`): while HAProxy gives
the new color its share, the post checks run, HAProxy's counters of both colors are read at the
window's start and end, and the ``[bake_prometheus]`` queries are asked. A window is failed,
passed or inconclusive (:class:`~.judgement.Judgement`):

- failed when the bake's rules fail it (a post check, a Prometheus query, a bake threshold on
  the new color's counters), or when the new color's 5xx rate exceeds the live color's on the
  same traffic in the same window by more than ``canary_error_margin`` and the interval of
  that difference (Newcombe's, at ``compare_confidence``) lies beyond the margin too;
- inconclusive when either color answered fewer than ``canary_min_requests`` routed requests,
  or a reading or a query could not be had: judged again up to ``canary_extensions`` times
  (``canary_on_inconclusive = "extend"``), then the canary is aborted; never a pass.

A signal, ``bluegreen abort``, or servers changed outside the gate (a reload takes the step's
weights) stop the canary: every weight goes back. ``bluegreen promote`` ends the step at once
and skips the steps left. The rules are in docs/gate.md, "Canary steps".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .bake import PostResult
from .judgement import Judgement
from .significance import newcombe_interval

if TYPE_CHECKING:
    from .queries import PromQLJudgement

__all__ = ["Window", "compare_error_rates"]


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
