"""What outlives a gate run: the old color kept warm after a switch (``scale_down_delay``;
stopped after it with ``after_bake_old_color = stop``) and a pending promotion
(``--switch=manual``), each a record saying what the color ran; any deploy to a color ends the
records about it (:func:`forget`). The rules are in docs/after-the-switch.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_bluegreen.errors import BluegreenError, Refused
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.lockfile import LockHeld
from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import PENDING, WARM, PendingPromotion, WarmWindow
from pytest_bluegreen.switch.journal import JournalError, read_journal

if TYPE_CHECKING:
    from pytest_bluegreen.engines import DeployEngine
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings

    from .decision import Decision

__all__ = [
    "Aftercare",
    "Build",
    "NothingPending",
    "Untied",
    "build_of",
    "current_window",
    "end_window",
    "forget",
    "keep_warm",
    "pend",
    "pending_problem",
    "recheck_reason",
    "untied",
    "when",
    "window_problem",
]


class _Lock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Aftercare:
    """What keeping the old color warm needs: the settings, HAProxy (is the old color taking
    traffic?), the gate's lock (released while the window is waited out, taken again), the
    signals held, where to say what happens, and the deploy engine (asked for when needed:
    without the docker extra asking raises a BluegreenError)."""

    settings: Settings
    haproxies: Haproxies
    lock: _Lock
    signals: DeferredSignals
    progress: Callable[[str], None]
    engine: Callable[[], DeployEngine]


LOCK_WAIT = 60.0  # seconds the gate waits for the lock at the window's end before keeping


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# --- what a color runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """What a color runs, as its deploy engine says: its tag and its image (None, with why,
    when that cannot be read)."""

    tag: str | None
    image: str | None
    unknown: str = ""


def _engine(settings: Settings, engine: DeployEngine | None) -> DeployEngine:
    if engine is not None:
        return engine
    from pytest_bluegreen.engines import engine_for  # noqa: PLC0415 - the engines load their clients lazily

    return engine_for(settings, lambda line: None)


def tag_of(settings: Settings, color: str, engine: DeployEngine | None = None) -> str | None:
    """The tag the color was last deployed at (the engine's deployed_tag), if known."""
    try:
        return _engine(settings, engine).deployed_tag(color)
    except Exception:  # no docker extra: the tags file alone
        from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415

        return TagsFile(settings.state.tags_file).tag_of(color)


def build_of(settings: Settings, color: str, engine: DeployEngine | None = None) -> Build:
    """The color's tag and image, read from its deploy engine (Compose or Swarm)."""
    from pytest_bluegreen.engines import ImageUnknown  # noqa: PLC0415

    tag = tag_of(settings, color, engine)
    try:
        image = _engine(settings, engine).image_of(color)
    except ImageUnknown as exc:
        return Build(tag, None, exc.first_line)
    except BluegreenError as exc:  # the docker extra is not installed
        return Build(tag, None, exc.first_line)
    return Build(tag, image)


def _short(image: str) -> str:
    return image if len(image) <= 60 else image[:57] + "..."


@dataclass(frozen=True)
class Untied:
    """Why a color cannot be taken for the build a record says it ran."""

    reason: str
    changed: bool  # it runs another build (known); else what it runs cannot be told


def untied(
    settings: Settings,
    color: str,
    recorded: str | None,
    engine: DeployEngine | None = None,
) -> Untied | None:
    """None when ``color`` still runs the image ``recorded``; else why not."""
    if recorded is None:
        return Untied(f"what {color} ran was not recorded (its image could not be read)", False)
    now = build_of(settings, color, engine)
    if now.image is None:
        return Untied(f"what {color} runs now cannot be read ({now.unknown})", False)
    if now.image != recorded:
        return Untied(f"{color} now runs {_short(now.image)}, not {_short(recorded)}", True)
    return None


# --- the warm window --------------------------------------------------------------------------


def current_window(settings: Settings, live: str | None) -> WarmWindow | None:
    """The warm window while it holds: in time, its new color live, and no switch since the
    one that made it (the journal's latest entry is that switch)."""
    window = history.load_warm(settings.state.state_file)
    if window is None or window.remaining() <= 0 or window.new != live:
        return None
    try:
        latest = read_journal(settings.state.journal_file)
    except JournalError:
        return None
    if window.switch_id is None or latest is None or latest.id != window.switch_id:
        return None
    return window


def window_problem(settings: Settings, window: WarmWindow) -> str | None:
    """Why a rollback inside ``window`` must run the checks after all, or None."""
    found = untied(settings, window.old, window.old_image)
    if found is None:
        return None
    return f"inside {window.old}'s warm window, but {found.reason}"


def end_window(settings: Settings, window: WarmWindow) -> None:
    """The rollback inside ``window`` is done: its record goes (unless replaced already)."""
    if history.load_warm(settings.state.state_file) == window:
        history.clear_record(settings.state.state_file, WARM)


def keep_warm(
    run: Aftercare, old: str, new: str, *, tag: str | None, switch_id: str | None
) -> list[str]:
    """After a switch old -> new (``switch_id``: the journal's record of it; ``tag``: the
    build the run was about, if it says): record the old color's warm window (what it runs,
    which switch made it); with ``after_bake_old_color = stop``, wait it out without the lock,
    then stop the old color if nothing came first. Returns the lines to say."""
    settings = run.settings
    bake, state_file = settings.bake, settings.state.state_file
    delay, action = float(bake.scale_down_delay), bake.after_bake_old_color
    if delay <= 0 and action == "keep":
        with contextlib.suppress(OSError):  # tidy: a later switch ends a window anyway
            history.clear_record(state_file, WARM)
        return []
    engine = _engine_or_none(run.engine)
    built = build_of(settings, old, engine)
    window = WarmWindow(
        old=old,
        new=new,
        tag=tag or tag_of(settings, new, engine),
        until=time.time() + delay,
        action=action,
        old_tag=built.tag,
        old_image=built.image,
        switch_id=switch_id,
    )
    try:
        history.save_record(state_file, WARM, window)
    except OSError as exc:  # traffic moved already: say it, stop nothing
        return [f"warning: {old}'s warm window not recorded ({exc}); {old} is not stopped"]
    lines = [
        f"{old} stays warm until {when(window.until)} (scale_down_delay {delay:g}s): "
        + (
            "bluegreen rollback needs no checks until then"
            if built.image is not None
            else f"what it runs cannot be read ({built.unknown}), so bluegreen rollback runs "
            "the checks"
        )
    ]
    if action == "keep":
        return lines
    return [*lines, _stop_after(run, window)]


def _engine_or_none(engine: Callable[[], DeployEngine]) -> DeployEngine | None:
    try:
        return engine()
    except BluegreenError:  # the docker extra is missing: build_of says so
        return None


def _stop_after(run: Aftercare, window: WarmWindow) -> str:
    """Wait the window out (the lock released), take the lock again, look again, stop."""
    old = window.old
    run.lock.release()
    run.progress(
        f"{old} is stopped at {when(window.until)} (after_bake_old_color = stop); the lock is "
        "free until then (bluegreen rollback can take it)"
    )
    while window.remaining() > 0:
        why = _interrupted(run, window)
        if why is not None:
            return f"{old} not stopped: {why}"
        time.sleep(min(window.remaining(), 0.2))
    why = _retake_lock(run, window)
    if why is None:
        why = _interrupted(run, window) or _not_idle(run, window)
    if why is not None:
        return f"{old} not stopped: {why}"
    history.clear_record(run.settings.state.state_file, WARM)
    try:
        run.engine().teardown(old)
    except BluegreenError as exc:
        return f"warning: {old} not stopped: {exc.first_line}"
    return f"{old} stopped after its warm window (after_bake_old_color = stop)"


def _interrupted(run: Aftercare, window: WarmWindow) -> str | None:
    """A signal, or the window's record cleared or replaced (a rollback, a deploy, a switch)."""
    if run.signals.received:
        return f"{run.signals.received} came first"
    if not _window_changed(run.settings.state.state_file, window):
        return None
    if _takes_traffic(run, window.old):
        return "it takes traffic again (a rollback inside its warm window)"
    return (
        f"its warm-window record was cleared or replaced (a deploy to {window.old}, or a "
        "switch since)"
    )


def _window_changed(state_file: Path, window: WarmWindow) -> bool:
    """The record is no longer ``window``: a rollback, a deploy or a switch ended it, or it
    cannot be read (then the old color is left running, the safe side)."""
    try:
        return history.load_warm(state_file) != window
    except history.StateFileError:
        return True


def _retake_lock(run: Aftercare, window: WarmWindow, wait: float = LOCK_WAIT) -> str | None:
    """The gate's lock again, waiting while another command holds it; None once taken."""
    deadline = time.monotonic() + wait
    while True:
        try:
            run.lock.acquire()
            return None
        except LockHeld as exc:
            holder = exc.holder or "holder unknown"
        why = _interrupted(run, window)
        if why is not None:
            return why
        if time.monotonic() >= deadline:
            return f"the lock is held by another command ({holder}) at the window's end"
        time.sleep(0.2)


def _takes_traffic(run: Aftercare, color: str) -> list[str]:
    """The color's servers that take traffic on any instance, or ``["?"]`` (taken as yes)
    when HAProxy cannot be read."""
    try:
        states = run.haproxies.server_states(run.settings.topology.servers(color))
    except RuntimeApiError:
        return ["?"]
    return [str(ref) for ref, s in states.items() if s.takes_traffic]


def _not_idle(run: Aftercare, window: WarmWindow) -> str | None:
    """Under the lock, before stopping: the journal shows no switch since, and HAProxy sends
    the old color no traffic (it is never stopped while live)."""
    try:
        latest = read_journal(run.settings.state.journal_file)
    except JournalError as exc:
        return f"the journal cannot be read ({exc})"
    if latest is None or latest.id != window.switch_id:
        return "a switch happened since its warm window began"
    serving = _takes_traffic(run, window.old)
    if serving == ["?"]:
        return "HAProxy cannot be read to make sure it takes no traffic"
    if serving:
        return f"HAProxy sends it traffic ({', '.join(serving)})"
    return None


# --- a deploy ends what was recorded about the color --------------------------------------------


def forget(settings: Settings, color: str) -> list[str]:
    """A deploy to ``color`` begins: its warm window and its pending promotion end (the new
    build is not what served, nor what was verified); a record that cannot be read ends too.
    Returns the lines to say."""
    state_file, lines = settings.state.state_file, []
    try:
        window = history.load_warm(state_file)
    except history.StateFileError as exc:
        history.clear_record(state_file, WARM)
        lines.append(f"{exc.first_line}: removed, a new build is deployed to {color}")
    else:
        if window is not None and window.old == color:
            history.clear_record(state_file, WARM)
            lines.append(
                f"{color}'s warm window ends: a new build is deployed to it (bluegreen rollback "
                "runs the checks)"
            )
    try:
        pending = history.load_pending(state_file)
    except history.StateFileError as exc:
        history.clear_record(state_file, PENDING)
        lines.append(f"{exc.first_line}: removed, a new build is deployed to {color}")
    else:
        if pending is not None and pending.target == color:
            history.clear_record(state_file, PENDING)
            lines.append(
                f"the pending promotion of {color} {pending.tag or ''} is discarded: a new build "
                "is deployed to it"
            )
    return lines


# --- a pending promotion ----------------------------------------------------------------------


def pend(
    settings: Settings,
    decision: Decision,
    *,
    tag: str | None,
    checks_passed: int,
    engine: Callable[[], DeployEngine],
) -> list[str]:
    """--switch=manual: record what was verified (tag and image), for bluegreen promote
    (``tag``: the build the run was about, if it says; ``checks_passed``: the target's)."""
    now = time.time()
    built = build_of(settings, decision.target, _engine_or_none(engine))
    record = PendingPromotion(
        target=decision.target,
        source=decision.live,
        tag=tag or built.tag,
        image=built.image,
        checks_passed=checks_passed,
        verified_at=now,
        created_at=now,
    )
    history.save_record(settings.state.state_file, PENDING, record)
    lines = [
        f"{decision.reason}; promotion pending (--switch=manual): nothing switched",
        f"bluegreen promote switches {decision.target} (re-verifying after "
        f"{settings.promotion.max_verification_age:g}s; refused after "
        f"{settings.promotion.promotion_timeout:g}s); bluegreen abort discards it",
    ]
    if built.image is None:
        lines.append(
            f"what {decision.target} runs cannot be read ({built.unknown}): bluegreen promote "
            "will run the quick checks again"
        )
    return lines


def pending_problem(
    settings: Settings, record: PendingPromotion, *, now_untied: Untied | None = None
) -> str | None:
    """Why a pending promotion may not be promoted at all (expired, or the color runs another
    build now), or None. ``now_untied``: :func:`untied` for it, when already asked."""
    age = record.age()
    if age > settings.promotion.promotion_timeout:
        return (
            f"the pending promotion of {record.target} {record.tag or ''} expired: verified "
            f"{age:.0f}s ago, promotion_timeout is {settings.promotion.promotion_timeout:g}s; "
            "deploy and verify again"
        )
    found = now_untied or untied(settings, record.target, record.image)
    if found is not None and found.changed:
        return f"{found.reason}, the verified build: deploy and verify again"
    return None


def recheck_reason(
    settings: Settings, record: PendingPromotion, *, now_untied: Untied | None = None
) -> str | None:
    """Why ``bluegreen promote`` runs the quick checks again before switching (the
    verification is stale, or the build cannot be tied to it), or None."""
    age = record.age()
    if age > settings.promotion.max_verification_age:
        return (
            f"verified {age:.0f}s ago (max_verification_age "
            f"{settings.promotion.max_verification_age:g}s)"
        )
    found = now_untied or untied(settings, record.target, record.image)
    if found is not None:
        return f"{found.reason}: the verification cannot be tied to it"
    return None


class NothingPending(Refused):
    """bluegreen promote or abort without a pending promotion."""
