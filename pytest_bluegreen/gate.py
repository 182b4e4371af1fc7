"""The gate's decision, pure: outcomes, exit status and HAProxy health in, a verdict out."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .errors import ExitCode
from .outcomes import ColorOutcomes

__all__ = ["Decision", "Verdict", "decide"]


class Verdict(enum.StrEnum):
    SWITCH = "switch"  # go ahead
    NOOP = "noop"  # target already live, nothing to do
    FAILED = "failed"  # checks failed: keep (or return) traffic on the last good color
    INCONCLUSIVE = "inconclusive"  # no check for the target ran and passed
    REFUSED = "refused"  # HAProxy health, a veto, the lock, the Runtime API


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    target: str
    live: str | None

    @property
    def exit_code(self) -> ExitCode:
        return {
            Verdict.SWITCH: ExitCode.OK,
            Verdict.NOOP: ExitCode.OK,
            Verdict.FAILED: ExitCode.CHECKS_FAILED,
            Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
            Verdict.REFUSED: ExitCode.REFUSED,
        }[self.verdict]

    def vetoed(self, reason: str) -> Decision:
        return replace(self, verdict=Verdict.REFUSED, reason=f"vetoed: {reason}")


def decide(
    *,
    target: str,
    live: str | None,
    exitstatus: int,
    outcomes: Mapping[str | None, ColorOutcomes],
    target_down: Mapping[str, str],
) -> Decision:
    """Decide what to do with traffic.

    ``target_down`` maps each of the target's HAProxy servers that is not UP to its status
    (empty when all are UP).
    """
    mine = outcomes.get(target) or ColorOutcomes()
    if exitstatus != 0:
        failing = [
            f"{key or 'untagged'}: {counts.summary()}"
            for key, counts in outcomes.items()
            if counts.failed or counts.errors
        ]
        detail = "; ".join(failing) if failing else f"pytest exit status {exitstatus}"
        return Decision(Verdict.FAILED, f"checks failed ({detail})", target, live)
    if mine.passed == 0:
        return Decision(
            Verdict.INCONCLUSIVE,
            f"inconclusive: no check for {target} ran and passed ({mine.summary()})",
            target,
            live,
        )
    if live == target:
        return Decision(Verdict.NOOP, f"{target} is already live; nothing to switch", target, live)
    if target_down:
        servers = ", ".join(f"{ref} {status}" for ref, status in sorted(target_down.items()))
        return Decision(
            Verdict.REFUSED, f"HAProxy does not report {target} UP: {servers}", target, live
        )
    return Decision(
        Verdict.SWITCH,
        f"{mine.passed} check(s) for {target} passed and its servers are UP",
        target,
        live,
    )
