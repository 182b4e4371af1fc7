"""The switch procedure: plan, apply, verify through the routed URL, revert on any failure.

Apply, in this order (no moment without a server taking new requests):

1. the target's servers get the full weight and ``ready``;
2. the old color's servers go to ``drain``: no new requests, in-flight ones finish;
3. the routed URL is polled until ``verify_responses`` answers in a row come from the target;
4. the old servers' ``scur`` is polled until 0 (bounded by the drain timeout);
5. the old servers rest at weight 0 and ``ready``.

Why weight 0 rather than ``maint`` for the idle color: HAProxy keeps health-checking a weight-0
server, so the idle color's health stays visible (``show stat``), the next gate can require it
UP, and a rollback target is known healthy. ``maint`` would stop the checks.

If any step fails, every server touched is returned to the exact admin state and weight it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .errors import ExitCode, Refused
from .haproxy import AdminState, RuntimeApi, RuntimeApiError, ServerRef, ServerState
from .settings import SwitchingSettings, Topology

__all__ = [
    "SwitchError",
    "SwitchPlan",
    "SwitchResult",
    "VerifyError",
    "apply",
    "down_servers",
    "live_color",
    "plan",
    "revert",
    "verify",
]

POLL_INTERVAL = 0.02


class VerifyError(Exception):
    """The routed URL did not answer from the target color in time."""


class SwitchError(Refused):
    """A switch step failed. ``reverted`` says whether the prior states were restored."""

    exit_code = ExitCode.SWITCH_REVERTED

    def __init__(self, message: str, *, reverted: bool) -> None:
        self.reverted = reverted
        super().__init__(message)


@dataclass(frozen=True)
class SwitchPlan:
    source: str | None
    target: str
    promote: tuple[ServerRef, ...]
    retire: tuple[ServerRef, ...]
    prior: Mapping[ServerRef, ServerState]
    full_weight: int

    def describe(self) -> list[str]:
        lines = [f"switch {self.source or '(no live color)'} -> {self.target}"]
        for ref in self.promote:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: weight {was.uweight} -> {self.full_weight}, "
                f"state {was.admin.value} -> ready"
            )
        for ref in self.retire:
            was = self.prior[ref]
            lines.append(
                f"  {ref}: state {was.admin.value} -> drain, wait for 0 sessions, "
                f"then weight {was.uweight} -> 0, state ready (idle, health-checked)"
            )
        return lines


@dataclass
class SwitchResult:
    plan: SwitchPlan
    started: float
    promoted: float = 0.0
    first_target_response: float = 0.0
    drained: bool = False
    drain_seconds: float = 0.0
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


def live_color(api: RuntimeApi, topology: Topology) -> str | None:
    """The color HAProxy sends traffic to now (None when neither or both)."""
    return topology.live_color(api.server_states(topology.all_servers))


def down_servers(api: RuntimeApi, topology: Topology, color: str) -> dict[str, str]:
    """The color's servers that health checks do not report UP, with their status."""
    wanted = set(topology.servers(color))
    rows = {row.ref: row for row in api.show_stat() if row.ref in wanted}
    down: dict[str, str] = {}
    for ref in sorted(wanted):
        row = rows.get(ref)
        if row is None:
            down[str(ref)] = "missing"
        elif not row.is_up:
            down[str(ref)] = f"{row.status} ({row.check_status or 'no check'})"
    return down


def plan(api: RuntimeApi, topology: Topology, target: str, full_weight: int) -> SwitchPlan:
    """Read HAProxy and say what a switch to ``target`` would do. Changes nothing.

    Raises RuntimeApiError (unreachable, not admin, unknown server) before any change.
    """
    api.require_admin()
    prior = api.server_states(topology.all_servers)
    retire = tuple(
        ref
        for name, cfg in topology.color.items()
        if name != target
        for ref in cfg.servers
        if prior[ref].admin is not AdminState.MAINT
    )
    return SwitchPlan(
        source=topology.live_color(prior),
        target=target,
        promote=topology.servers(target),
        retire=retire,
        prior=prior,
        full_weight=full_weight,
    )


def verify(
    switching: SwitchingSettings, topology: Topology, target: str, deadline: float
) -> Verification:
    """Poll the routed URL until ``verify_responses`` answers in a row come from ``target``."""
    url = switching.verify_url
    streak = 0
    first = 0.0
    version: str | None = None
    last = "no answer yet"
    with requests.Session() as session:
        while True:
            try:
                response = session.get(
                    url,
                    timeout=max(deadline - time.monotonic(), 0.05),
                    headers={"Connection": "close"},
                )
                answer = topology.answered_by(response)
                if response.ok and answer.color == target:
                    if streak == 0:
                        first = time.monotonic()
                    streak += 1
                    version = answer.version or version
                    if streak >= switching.verify_responses:
                        return Verification(first, version, streak)
                else:
                    streak = 0
                    last = f"HTTP {response.status_code} from color {answer.color or 'unknown'}"
            except requests.RequestException as exc:
                streak = 0
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise VerifyError(
                    f"{url} did not answer from {target} {switching.verify_responses} time(s) "
                    f"in a row within {switching.verify_timeout:g}s (last: {last})"
                )
            time.sleep(POLL_INTERVAL)


def _wait_drained(
    api: RuntimeApi,
    refs: tuple[ServerRef, ...],
    deadline: float,
    progress: Callable[[str], None],
) -> bool:
    wanted = set(refs)
    next_report = time.monotonic() + 1.0
    while True:
        busy = [row for row in api.show_stat() if row.ref in wanted and row.scur > 0]
        if not busy:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_report:  # long drains say what they wait for, once a second
            sessions = ", ".join(f"{row.ref} {row.scur}" for row in busy)
            progress(f"draining: {sessions} session(s) open, {deadline - now:.0f}s left")
            next_report = now + 1.0
        time.sleep(POLL_INTERVAL)


Verifier = Callable[[str, float], Verification]  # (target, deadline) -> first answers


def apply(
    api: RuntimeApi,
    switch_plan: SwitchPlan,
    switching: SwitchingSettings,
    topology: Topology,
    *,
    server_state_file: Path | None = None,
    verifier: Verifier | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> SwitchResult:
    """Carry out the plan; on any failure restore ``switch_plan.prior`` and raise SwitchError.

    ``server_state_file``: HAProxy's server-state-file, rewritten after the switch.
    """
    if verifier is None:

        def verifier(target: str, deadline: float) -> Verification:
            return verify(switching, topology, target, deadline)

    result = SwitchResult(plan=switch_plan, started=time.monotonic())
    step = "promote"
    try:
        for ref in switch_plan.promote:
            api.set_weight(ref, switch_plan.full_weight)
            api.set_state(ref, AdminState.READY)
        result.promoted = time.monotonic()
        step = "drain"
        for ref in switch_plan.retire:
            api.set_state(ref, AdminState.DRAIN)
        step = "verify"
        verification = verifier(switch_plan.target, time.monotonic() + switching.verify_timeout)
        result.first_target_response = verification.first_response
        result.version = verification.version
        step = "wait for drain"
        drain_start = time.monotonic()
        result.drained = _wait_drained(
            api, switch_plan.retire, drain_start + switching.drain_timeout, progress
        )
        result.drain_seconds = time.monotonic() - drain_start
        if not result.drained:
            result.notes.append(
                f"old sessions still open after {switching.drain_timeout:g}s drain timeout; "
                "they finish on their own (HAProxy does not cut them)"
            )
        step = "idle the old color"
        for ref in switch_plan.retire:
            api.set_weight(ref, 0)
            api.set_state(ref, AdminState.READY)
        if server_state_file is not None:
            step = "save server state"
            api.save_server_state(server_state_file)
    except (RuntimeApiError, VerifyError, OSError) as exc:
        try:
            revert(api, switch_plan.prior)
        except RuntimeApiError as revert_exc:
            raise SwitchError(
                f"switch to {switch_plan.target} failed at '{step}': {exc}; REVERT FAILED too "
                f"({revert_exc}): restore by hand: {_manual_restore(switch_plan.prior)}",
                reverted=False,
            ) from exc
        raise SwitchError(
            f"switch to {switch_plan.target} failed at '{step}': {exc}; previous server "
            "states restored",
            reverted=True,
        ) from exc
    result.finished = time.monotonic()
    return result


def revert(api: RuntimeApi, prior: Mapping[ServerRef, ServerState]) -> None:
    """Restore weight and admin state; servers that took traffic first, so none is left empty."""
    order = sorted(prior.values(), key=lambda s: not s.takes_traffic)
    for state in order:
        api.set_weight(state.ref, state.uweight)
        api.set_state(state.ref, state.admin)


def _manual_restore(prior: Mapping[ServerRef, ServerState]) -> str:
    return "; ".join(
        f"set server {s.ref} weight {s.uweight}; set server {s.ref} state {s.admin.value}"
        for s in prior.values()
    )
