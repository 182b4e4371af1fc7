"""The gate's decision, pure: outcomes, exit status, HAProxy health and which build answered
in, a verdict out."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace

from pytest_bluegreen.errors import ExitCode

from .builds import BuildEvidence, answers_problem
from .outcomes import ColorOutcomes

__all__ = ["Decision", "SessionFacts", "Verdict", "decide"]


class Verdict(enum.StrEnum):
    SWITCH = "switch"  # go ahead
    NOOP = "noop"  # target already live, nothing to do
    FAILED = "failed"  # checks failed: keep (or return) traffic on the last good color
    INCONCLUSIVE = "inconclusive"  # no check for the target ran and passed, or another build
    # than the deployed one answered them
    REFUSED = "refused"  # HAProxy health, a veto, the lock, the Runtime API


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    target: str
    live: str | None
    may_return: bool = False  # FAILED: the target's own checks failed; traffic may come back

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


@dataclass(frozen=True)
class SessionFacts:
    """What the session itself says, apart from the per-color counts."""

    exitstatus: int = ExitCode.OK
    interrupted: str | None = None  # Ctrl-C, a signal, pytest.exit(...), a stopped session
    collected: int | None = None  # tests selected to run (after -k, -m, --env); None: unknown
    finished: int | None = None  # tests that ran to their teardown; None: not counted
    narrowed: str | None = None  # the selection came from the last run's state (--lf, --sw)


def decide(
    *,
    target: str,
    live: str | None,
    outcomes: Mapping[str | None, ColorOutcomes],
    target_down: Mapping[str, str],
    facts: SessionFacts,
    builds: BuildEvidence | None = None,
) -> Decision:
    """Decide what to do with traffic, on the counts and the session's facts, never on the exit
    status alone.

    First, the checks must have judged the build that would be switched to: any answer of the
    target from another build than the deployed one (``builds``; without a deployed tag,
    answers from more than one build) is inconclusive, whatever the checks said, since they
    did not judge that build. Then any failed or errored test of the session (any color, the
    shared ones too) means no switch; only the target's own failures, in a session that was
    not interrupted, may return traffic from it (``may_return``). An interrupted session, one
    where fewer tests finished than were selected, or a selection narrowed by the last run's
    state is inconclusive. ``target_down`` maps each of the target's HAProxy servers that is
    not UP to its status.
    """
    foreign = answers_problem(target, builds) if builds is not None else None
    if foreign is not None:
        return Decision(Verdict.INCONCLUSIVE, f"inconclusive: {foreign}", target, live)
    mine = outcomes.get(target) or ColorOutcomes()
    failing = {key: c for key, c in outcomes.items() if c.failed or c.errors}
    # a failure status without a counted failure: pytest's own error, unless interrupted
    pytest_ok = facts.exitstatus in (ExitCode.OK, ExitCode.NO_TESTS_COLLECTED)
    if failing or (not pytest_ok and not facts.interrupted):
        parts = [f"{key or 'untagged'}: {counts.summary()}" for key, counts in failing.items()]
        detail = "; ".join(parts) or f"pytest exit status {facts.exitstatus}"
        reason = f"checks failed ({detail})"
        own = target in failing
        if failing and not own:
            reason += f"; none of {target}'s own checks failed"
        if facts.interrupted:
            reason += f"; the session was interrupted ({facts.interrupted})"
        return Decision(
            Verdict.FAILED, reason, target, live, may_return=own and not facts.interrupted
        )
    undecided = _inconclusive(target, mine, facts)
    if undecided is not None:
        return Decision(Verdict.INCONCLUSIVE, f"inconclusive: {undecided}", target, live)
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


def _inconclusive(target: str, mine: ColorOutcomes, facts: SessionFacts) -> str | None:
    """Why a session without failures still cannot pass the gate, or None."""
    if facts.interrupted:
        return f"the session was interrupted ({facts.interrupted}); {_finished(facts)}"
    if facts.collected is not None and (facts.finished or 0) < facts.collected:
        return f"only {_finished(facts)}"
    if facts.narrowed:
        return (
            f"the selection was narrowed by {facts.narrowed} (the last run's state), not the "
            "full check set; --allow-narrowed gates on it anyway"
        )
    if mine.passed == 0:
        return f"no check for {target} ran and passed ({mine.summary()})"
    return None


def _finished(facts: SessionFacts) -> str:
    if facts.collected is None:
        return f"{facts.finished or 0} check(s) finished"
    return f"{facts.finished or 0} of {facts.collected} selected check(s) finished"
