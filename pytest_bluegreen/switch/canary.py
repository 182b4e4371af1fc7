"""Canary steps before the full switch: the weights that give the new color a share of routed
traffic, the step as the transaction carries it out, what a judged step ends in, and the
operator's requests to a canary in progress (``bluegreen abort``, ``bluegreen promote``).

A canary is part of the switch's transaction (:mod:`.steps`): its steps come before ``promote``,
journaled with their weights, so the journal's prior states are the ones before the canary and
every rule of the switch holds for them (a failure, a signal or a reload returns every weight
to those states; ``bluegreen recover`` does after a SIGKILL). Judging a step is the gate's
(:mod:`pytest_bluegreen.judge.canary`).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import ExitCode, UsageError
from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.record.durable import write_durably

from .journal import JournalEntry
from .outcome import Abort, CanaryReverted, CanaryUnjudged, SwitchError

__all__ = [
    "MAX_WEIGHT",
    "STICKY_STEP",
    "CanaryFailed",
    "CanaryInconclusive",
    "CanaryJudge",
    "CanaryPlanError",
    "CanaryProgress",
    "CanaryStep",
    "CanaryVerdict",
    "ask",
    "canary_steps",
    "had_canary",
    "held_users",
    "in_progress",
    "request_and_wait",
    "request_path",
    "take_request",
]

MAX_WEIGHT = 256  # HAProxy's largest server weight
STEP_PREFIX = "canary-"  # a canary step's name in the journal and to the step hook: canary-25
STICKY_STEP = "canary-sticky"  # journaled before persistence is turned on
REQUESTS = ("abort", "promote")


class CanaryPlanError(UsageError):
    """The canary cannot be given by HAProxy's weights (no live color, a share too small)."""


class CanaryFailed(Abort):
    """A canary step judged the new color worse than the live one: every weight goes back to
    its state before the canary (the switch ends in CanaryReverted, exit 11)."""

    exit_code = ExitCode.BAKE_FAILED
    reverted_as: type[SwitchError] = CanaryReverted


class CanaryInconclusive(CanaryFailed):
    """A canary step could not be judged within its bound: back as for a failed step, never
    a pass (CanaryUnjudged, exit 6)."""

    exit_code = ExitCode.INCONCLUSIVE
    reverted_as = CanaryUnjudged


class CanaryVerdict(enum.Enum):
    NEXT = "passed"  # the step passed: the next step, or the full switch after the last
    PROMOTE = "promote"  # bluegreen promote: the remaining steps skipped, the full switch now


@dataclass(frozen=True)
class CanaryStep:
    number: int
    of: int
    percent: int
    weights: Mapping[ServerRef, int]  # every server of both colors in a backend the canary splits
    shares: Mapping[str, float]  # backend -> the new color's share its integer weights give
    seconds: float = 0.0  # the step's window (canary_step_seconds)

    @property
    def name(self) -> str:
        return f"{STEP_PREFIX}{self.percent}"

    def describe(self) -> str:
        """``canary 2/3: 25% (api_backend 25.0%, frontend_backend 25.0%)``"""
        shares = ", ".join(f"{backend} {share:.1%}" for backend, share in self.shares.items())
        return f"canary {self.number}/{self.of}: {self.percent}% ({shares})"

    def facts(self) -> dict[str, Any]:
        """What the journal records of the step."""
        return {
            "number": self.number,
            "of": self.of,
            "percent": self.percent,
            "weights": {str(ref): weight for ref, weight in self.weights.items()},
            "shares": {backend: round(share, 4) for backend, share in self.shares.items()},
        }


CanaryJudge = Callable[[CanaryStep], CanaryVerdict]


def canary_steps(
    percents: Sequence[int],
    old: Sequence[ServerRef],
    new: Sequence[ServerRef],
    *,
    seconds: float = 0.0,
) -> tuple[CanaryStep, ...]:
    """Each step's weights: in every backend that holds servers of both colors, the new color's
    servers together take ``percent`` of the backend's weight and the old color's the rest
    (weights scaled up to HAProxy's 256 so the share is close). Raises CanaryPlanError when a
    backend holds new servers but no old ones (nothing to split with) or a share rounds to 0."""
    backends = sorted({ref.backend for ref in new})
    split: dict[str, tuple[list[ServerRef], list[ServerRef]]] = {}
    for backend in backends:
        olds = [ref for ref in old if ref.backend == backend]
        news = [ref for ref in new if ref.backend == backend]
        if not olds:
            raise CanaryPlanError(
                f"bluegreen: --canary: backend {backend} has no server of the live color to "
                "share traffic with"
            )
        split[backend] = (olds, news)
    steps = []
    for number, percent in enumerate(percents, start=1):
        weights: dict[ServerRef, int] = {}
        shares: dict[str, float] = {}
        for backend, (olds, news) in split.items():
            each_new, each_old = percent / len(news), (100 - percent) / len(olds)
            scale = MAX_WEIGHT / max(each_new, each_old)
            new_weight, old_weight = round(each_new * scale), round(each_old * scale)
            if new_weight < 1 or old_weight < 1:
                raise CanaryPlanError(
                    f"bluegreen: --canary {percent}%: HAProxy's weights (1..{MAX_WEIGHT}) cannot "
                    f"give that share over {len(news)} new and {len(olds)} old server(s) of "
                    f"{backend}"
                )
            weights.update(dict.fromkeys(news, new_weight))
            weights.update(dict.fromkeys(olds, old_weight))
            given = new_weight * len(news)
            shares[backend] = given / (given + old_weight * len(olds))
        steps.append(CanaryStep(number, len(percents), percent, weights, shares, seconds))
    return tuple(steps)


# -- a canary in progress, as its journal shows it -----------------------------------------------
@dataclass(frozen=True)
class CanaryProgress:
    """The canary a running gate carries out now (``bluegreen status``)."""

    source: str | None
    target: str
    number: int
    of: int
    percent: int
    shares: Mapping[str, float]
    until: float  # wall clock: the step's window ends (a step judged again goes on)
    pid: int
    switch_id: str  # the journal entry's id: a request names it

    def line(self) -> str:
        """``canary in progress: blue -> green, step 2/3 (25%: api_backend 25.0%), 12s left``"""
        shares = ", ".join(f"{backend} {share:.1%}" for backend, share in self.shares.items())
        left = self.until - time.time()
        when = f"{left:.0f}s left in the step" if left > 0 else "the step is being judged"
        return (
            f"CANARY IN PROGRESS: {self.source or '(none)'} -> {self.target}, step "
            f"{self.number}/{self.of} ({self.percent}%: {self.target} {shares}), {when} (gate "
            f"pid {self.pid}); bluegreen abort returns traffic, bluegreen promote skips the "
            "steps left"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "step": self.number,
            "of": self.of,
            "percent": self.percent,
            "shares": dict(self.shares),
            "seconds_left": round(max(0.0, self.until - time.time()), 1),
            "pid": self.pid,
        }


def had_canary(entry: JournalEntry) -> bool:
    """The journaled switch began with canary steps."""
    return any(str(step.get("step", "")).startswith(STEP_PREFIX) for step in entry.steps)


def held_users(entry: JournalEntry) -> bool:
    """The journaled switch's canary turned sticky users on, or was about to (its
    ``canary-sticky`` record is written before the command): recovery lets them go."""
    return any(step.get("step") == STICKY_STEP for step in entry.steps)


def in_progress(entry: JournalEntry | None) -> CanaryProgress | None:
    """The canary of an open journal whose gate still runs (on this host), or None: no canary,
    past it (``promote`` journaled), or its gate is gone (a switch cut off: recover)."""
    if entry is None or not entry.open:
        return None
    names = [str(step.get("step", "")) for step in entry.steps]
    if "promote" in names or not had_canary(entry):
        return None
    if entry.host != socket.gethostname() or not _alive(entry.pid):
        return None
    # the last step's own record (its "-judged" record says no weights)
    last = next((s for s in reversed(entry.steps) if "percent" in s), None)
    if last is None:
        return None
    try:
        return CanaryProgress(
            source=entry.source,
            target=entry.target,
            number=int(last["number"]),
            of=int(last["of"]),
            percent=int(last["percent"]),
            shares={str(k): float(v) for k, v in dict(last["shares"]).items()},
            until=float(last["until"]),
            pid=entry.pid,
            switch_id=entry.id,
        )
    except (KeyError, TypeError, ValueError):  # a step record without its facts
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's gate: alive
        return True
    except OSError:
        return False
    return True


# -- the operator's requests to a canary in progress -------------------------------------------
def request_and_wait(
    journal: Path, canary: CanaryProgress, action: str, *, timeout: float = 30.0
) -> tuple[bool, str]:
    """Ask the gate running ``canary`` to ``action`` it, and wait until its journal shows it
    did (closed: traffic back; ``promote`` journaled: the full switch began) or the gate is
    gone. Returns whether it did, and what happened in one line."""
    from .journal import read_journal  # noqa: PLC0415 - beside in_progress's caller only

    ask(journal, canary.switch_id, action)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = read_journal(journal)
        if entry is None or entry.id != canary.switch_id:
            return False, f"the gate's switch {canary.switch_id} is no longer in the journal"
        steps = [str(step.get("step", "")) for step in entry.steps]
        if not entry.open:
            # abort is done only when traffic went back; a switch that went on is too late
            done = action == "promote" or entry.outcome == "reverted"
            return done, (
                f"the canary {canary.source or '(none)'} -> {canary.target} ended: "
                f"{entry.outcome} ({entry.detail or 'no detail'})"
                + ("" if done else f"; too late for '{action}': the switch went on")
            )
        if "promote" in steps:
            if action == "abort":
                return False, (
                    f"too late for 'abort': the canary's steps had passed and the gate (pid "
                    f"{canary.pid}) switches to {canary.target} (bluegreen rollback returns "
                    "traffic once it has)"
                )
            return True, (
                f"the canary's steps left were skipped: the gate (pid {canary.pid}) switches "
                f"to {canary.target} now"
            )
        if not _alive(canary.pid):
            return False, (
                f"the gate (pid {canary.pid}) is gone with its switch unfinished: run "
                "'bluegreen recover'"
            )
        time.sleep(0.05)
    return False, (
        f"asked; the gate (pid {canary.pid}) has not acted on '{action}' in {timeout:g}s: it "
        "reads requests between its readings and post checks, and acts on it then (bluegreen "
        "status shows where it is)"
    )


def request_path(journal: Path) -> Path:
    """Where ``bluegreen abort`` / ``promote`` leave their request for the gate running the
    canary the journal records: beside the journal, so the same folder's permissions guard it."""
    return journal.with_name(journal.name + ".request")


def ask(journal: Path, switch_id: str, action: str) -> None:
    """Leave ``action`` (abort or promote) for the canary of switch ``switch_id``: written
    whole or not at all, mode 0600, a link planted at the name replaced, never written
    through (:func:`~pytest_bluegreen.record.durable.write_durably`)."""
    if action not in REQUESTS:
        raise ValueError(f"a canary request is one of {', '.join(REQUESTS)}, not {action!r}")
    write_durably(request_path(journal), json.dumps({"id": switch_id, "action": action}))


def take_request(journal: Path, switch_id: str) -> str | None:
    """The request left for this switch's canary (removed once read), or None. A request for
    another switch (an old one), one that cannot be read, or anything at the name that is not
    a plain file of ours (a link, a FIFO, a folder: never waited on) is ignored."""
    path = request_path(journal)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()
    try:
        request = json.loads(data)
    except ValueError:
        return None
    if not isinstance(request, dict) or request.get("id") != switch_id:
        return None
    action = request.get("action")
    return action if action in REQUESTS else None
