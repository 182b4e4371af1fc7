"""What outlives a gate run: the old color kept warm after a switch, and a promotion pending.

- **The warm window** (``scale_down_delay``): after a switch the old color stays at weight 0,
  health-checked; ``bluegreen rollback`` inside the window skips the checks (the known-good
  build served a moment ago) and cancels what comes after it. After the window,
  ``after_bake_old_color = stop`` stops the old color's containers through the deploy engine
  (the gate waits out the window for that), ``keep`` leaves them.
- **A pending promotion** (``--switch=manual``, also ``--promote-later``): the target
  deployed and verified, nothing switched; ``bluegreen promote`` switches it later
  (re-running the quick checks first when the verification is older than
  ``max_verification_age``), ``bluegreen abort`` discards it, and one older than
  ``promotion_timeout`` is refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import state
from .errors import BluegreenError, Refused
from .state import PENDING, WARM, PendingPromotion, WarmWindow

if TYPE_CHECKING:
    from .gate import Decision
    from .gaterun import GateRun
    from .settings import Settings

__all__ = ["color_image", "keep_warm", "pend", "pending_problem", "when"]


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def keep_warm(run: GateRun, old: str, new: str) -> list[str]:
    """Record the old color's warm window; with ``after_bake_old_color = stop``, wait it out
    (a signal or a rollback inside it cancels the stop) and stop the old color."""
    bake, state_file = run.settings.bake, run.settings.state.state_file
    delay, action = float(bake.scale_down_delay), bake.after_bake_old_color
    if delay <= 0 and action == "keep":
        return []
    window = WarmWindow(
        old=old, new=new, tag=run.tag(None), until=time.time() + delay, action=action
    )
    try:
        state.save_record(state_file, WARM, window)
    except OSError as exc:  # traffic moved already: say it, stop nothing
        return [f"warning: {old}'s warm window not recorded ({exc}); {old} is not stopped"]
    lines = [
        f"{old} stays warm until {when(window.until)} (scale_down_delay {delay:g}s): "
        f"bluegreen rollback needs no checks until then"
    ]
    if action == "keep":
        return lines
    run.progress(f"{old} is stopped at {when(window.until)} (after_bake_old_color = stop)")
    while window.remaining() > 0:
        if run.signals.received or _window_changed(state_file, window):
            cancelled = run.signals.received or "a rollback inside the window"
            return [*lines, f"{old} not stopped: {cancelled} came first"]
        time.sleep(min(window.remaining(), 0.2))
    state.clear_record(state_file, WARM)
    try:
        run.deploy_step.engine.teardown(old)
    except BluegreenError as exc:
        return [*lines, f"warning: {old} not stopped: {exc.first_line}"]
    return [*lines, f"{old} stopped after its warm window (after_bake_old_color = stop)"]


def _window_changed(state_file: Path, window: WarmWindow) -> bool:
    """The record is no longer ``window``: a rollback cancelled it, or it cannot be read (then
    the old color is left running, the safe side)."""
    try:
        return state.load_warm(state_file) != window
    except state.StateFileError:
        return True


def color_image(settings: Settings, color: str) -> str | None:
    """The image id the color's containers run, when there is an engine to ask."""
    try:
        from .engines.compose import compose_containers, docker_client  # noqa: PLC0415

        client = docker_client()
    except Exception:  # no docker extra, no engine: the promotion records none
        return None
    try:
        services = settings.topology.color[color].services
        for container in compose_containers(client, settings.compose.project_name, services):
            return str(container.attrs.get("Image") or "") or None
        return None
    finally:
        client.close()


def pend(run: GateRun, decision: Decision) -> list[str]:
    """--switch=manual: record what was verified, for bluegreen promote."""
    now = time.time()
    record = PendingPromotion(
        target=decision.target,
        source=decision.live,
        tag=run.tag(None),
        image=color_image(run.settings, decision.target),
        checks_passed=run.outcomes[decision.target].passed,
        verified_at=now,
        created_at=now,
    )
    state.save_record(run.settings.state.state_file, PENDING, record)
    return [
        f"{decision.reason}; promotion pending (--switch=manual): nothing switched",
        f"bluegreen promote switches {decision.target} (re-verifying after "
        f"{run.settings.promotion.max_verification_age:g}s; refused after "
        f"{run.settings.promotion.promotion_timeout:g}s); bluegreen abort discards it",
    ]


def pending_problem(settings: Settings, record: PendingPromotion) -> str | None:
    """Why a pending promotion may not be promoted as it is, or None."""
    age = record.age()
    if age > settings.promotion.promotion_timeout:
        return (
            f"the pending promotion of {record.target} {record.tag or ''} expired: verified "
            f"{age:.0f}s ago, promotion_timeout is {settings.promotion.promotion_timeout:g}s; "
            "deploy and verify again"
        )
    image = color_image(settings, record.target)
    if record.image is not None and image is not None and image != record.image:
        return (
            f"{record.target} now runs image {image[:19]}, not the verified {record.image[:19]}: "
            "deploy and verify again"
        )
    return None


class NothingPending(Refused):
    """bluegreen promote or abort without a pending promotion."""
