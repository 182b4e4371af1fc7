"""What a switch is planned as and ends in: the plan (``SwitchPlan``, one ``MemberPlan`` per
HAProxy instance), the result, the verification's answers, a server's wanted state, and the
errors a switch ends with (reverted: exit 8; revert failed or incomplete: exit 10)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_bluegreen.errors import BluegreenError, ExitCode, Refused
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef, ServerState
from pytest_bluegreen.haproxy.identity import InstanceIdentity

__all__ = [
    "Abort",
    "CanaryReverted",
    "CanaryUnjudged",
    "MemberPlan",
    "NotSwitched",
    "RevertFailed",
    "SwitchError",
    "SwitchIncomplete",
    "SwitchPlan",
    "SwitchResult",
    "Verification",
    "VerifyError",
    "Wanted",
]


# The three below never leave a switch: the transaction turns each into the SwitchError it
# ends with (the exit code each names). Not SwitchErrors themselves: the gate catches those.


class VerifyError(BluegreenError):
    """The routed URL did not answer from the target color in time (the switch reverts)."""

    exit_code = ExitCode.SWITCH_REVERTED


class Abort(BluegreenError):
    """A reason to revert that is not an error of HAProxy's (a signal, a reload, a hook)."""

    exit_code = ExitCode.SWITCH_REVERTED


class NotSwitched(BluegreenError):
    """Past the point of no return: HAProxy reads back other states than the switch's (tried
    again, then the switch is incomplete)."""

    exit_code = ExitCode.REVERT_FAILED


class SwitchError(Refused):
    """A switch step failed and every server's prior state was restored (exit 8)."""

    exit_code = ExitCode.SWITCH_REVERTED

    def __init__(self, message: str, *, step: str, interrupted: str | None = None) -> None:
        self.step = step
        self.interrupted = interrupted
        super().__init__(message)

    @property
    def reverted(self) -> bool:
        return True


class CanaryReverted(SwitchError):
    """A canary step judged the new color worse than the live one; every weight was returned
    to its state before the canary (exit 11, as a failed bake)."""

    exit_code = ExitCode.BAKE_FAILED


class CanaryUnjudged(SwitchError):
    """A canary step could not be judged within its bound (too little traffic, counters not
    read); every weight was returned to its state before the canary (exit 6)."""

    exit_code = ExitCode.INCONCLUSIVE


class RevertFailed(SwitchError):
    """A switch step failed, and restoring the prior states failed too (exit 10): HAProxy may
    be half-switched; ``unrestored`` names the servers (or the server-state file); the journal
    stays open."""

    exit_code = ExitCode.REVERT_FAILED

    def __init__(
        self, message: str, *, step: str, unrestored: tuple[str, ...], interrupted: str | None
    ) -> None:
        self.unrestored = unrestored
        super().__init__(message, step=step, interrupted=interrupted)

    @property
    def reverted(self) -> bool:
        return False


class SwitchIncomplete(SwitchError):
    """Past its point of no return the switch could not complete a step: HAProxy's own errors
    persisted (killed, refusing). Nothing was undone -- the target was verified -- but HAProxy
    may be half-switched or its server-state file stale; the journal stays open and
    ``bluegreen recover`` completes the switch (exit 10)."""

    exit_code = ExitCode.REVERT_FAILED

    @property
    def reverted(self) -> bool:
        return False


@dataclass(frozen=True)
class MemberPlan:
    """One HAProxy instance's part of a switch: the process and its servers' prior states."""

    name: str
    prior: Mapping[ServerRef, ServerState]
    instance: InstanceIdentity


@dataclass(frozen=True)
class SwitchPlan:
    source: str | None
    target: str
    promote: tuple[ServerRef, ...]
    retire: tuple[ServerRef, ...]
    prior: Mapping[ServerRef, ServerState]  # the first instance's (all agree on the colors)
    full_weight: int
    instance: InstanceIdentity | None = None  # the HAProxy process the prior states are from
    members: tuple[MemberPlan, ...] = ()  # every instance switched (none: the one of ``api``)

    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    def describe(self) -> list[str]:
        lines = [f"switch {self.source or '(no live color)'} -> {self.target}"]
        if len(self.members) > 1:
            lines.append(f"  on every instance at once: {', '.join(self.member_names())}")
        for ref in self.promote:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: weight {was.uweight} -> {self.full_weight}, "
                f"state {was.admin.value} -> ready{_EMPTY if was.empty else ''}"
            )
        for ref in self.retire:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: state {was.admin.value} -> drain, wait for 0 sessions, "
                f"then weight {was.uweight} -> 0, state ready (idle, health-checked)"
                f"{_EMPTY if was.empty else ''}"
            )
        return lines


_EMPTY = " (empty slot: for the replica that resolves into it)"


@dataclass
class SwitchResult:
    plan: SwitchPlan
    started: float
    promoted: float = 0.0
    first_target_response: float = 0.0
    drained: bool = False
    drain_seconds: float = 0.0
    closed_sessions: int = 0  # open on the old color at the drain's end, closed then
    version: str | None = None
    finished: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        """From the start of the switch to the first routed response from the target."""
        return (self.first_target_response - self.started) * 1000


@dataclass(frozen=True)
class Verification:
    first_response: float
    version: str | None
    responses: int


@dataclass(frozen=True)
class Wanted:
    """A server's weight and admin state, as a revert or a recovery restores them."""

    ref: ServerRef
    weight: int
    admin: AdminState

    @classmethod
    def of(cls, state: ServerState) -> Wanted:
        return cls(state.ref, state.uweight, state.admin)

    @property
    def takes_traffic(self) -> bool:
        return self.weight > 0 and self.admin is AdminState.READY

    def shows(self, state: ServerState) -> bool:
        return (state.uweight, state.admin) == (self.weight, self.admin)
