"""Servers given back their prior (or any wanted) weight and admin state: every command sent,
then HAProxy's read-back decides; on every instance at once for a revert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef, ServerState
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi, state_command, weight_command

from .outcome import MemberPlan, Wanted

__all__ = ["manual_restore", "restore", "revert", "revert_every"]


def revert_every(group: Haproxies, members: Sequence[MemberPlan]) -> tuple[str, ...]:
    """Every instance back to its own prior states, at once; what could not be restored."""

    def one(name: str, api: RuntimeApi) -> tuple[str, ...]:
        prior = next(m.prior for m in members if m.name == name)
        return tuple(group.label(name, s) for s in revert(api, prior))

    failed = group.each(one, names=[m.name for m in members])
    return tuple(item for name in failed for item in failed[name])


def revert(api: RuntimeApi, prior: Mapping[ServerRef, ServerState]) -> tuple[str, ...]:
    """Restore every server's weight and admin state (see :func:`restore`)."""
    return restore(api, [Wanted.of(state) for state in prior.values()])


def restore(api: RuntimeApi, wanted: Sequence[Wanted], *, tries: int = 2) -> tuple[str, ...]:
    """Give every server its wanted weight and admin state, the servers that take traffic
    first so none is left empty; returns the servers HAProxy does not show so (with why).

    A command's error does not say that nothing changed (HAProxy may have applied it and
    the answer was lost), nor does it stop the other commands: every command is sent (on one
    line, one connection: :meth:`RuntimeApi.set_each`), then HAProxy's states are read back
    and decide; what differs is sent again (``tries``)."""
    left = sorted(wanted, key=lambda w: not w.takes_traffic)
    errors: dict[ServerRef, str] = {}
    for _ in range(tries):
        errors = {}
        sent = [
            (want.ref, command)
            for want in left
            for command in (
                weight_command(want.ref, want.weight),
                state_command(want.ref, want.admin),
            )
        ]
        answered = api.set_each([command for _, command in sent]) if sent else []
        for (ref, _), exc in zip(sent, answered, strict=True):
            if exc is not None:
                errors.setdefault(ref, exc.answer or type(exc).__name__)
        try:
            now = api.server_states(w.ref for w in left)
        except RuntimeApiError as exc:
            errors = {w.ref: errors.get(w.ref) or f"not read back: {exc}" for w in left}
            continue
        left = [w for w in left if not w.shows(now[w.ref])]
        if not left:
            return ()
        for want in left:
            state = now[want.ref]
            errors.setdefault(want.ref, f"reads back weight {state.uweight} {state.admin.value}")
    return tuple(f"{w.ref} ({errors.get(w.ref, 'not restored')})" for w in left)


def manual_restore(members: Sequence[MemberPlan]) -> str:
    several = len(members) > 1
    return "; ".join(
        (f"on {m.name}: " if several else "")
        + "; ".join(
            f"set server {s.ref} weight {s.uweight}; set server {s.ref} state {s.admin.value}"
            for s in m.prior.values()
        )
        for m in members
    )
