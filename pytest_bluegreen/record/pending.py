"""A pending promotion's end (``pytest --switch=manual`` verified a color; ``bluegreen
promote`` switches to it, ``bluegreen abort`` discards it): when it has expired, and its
removal under the gate's lock with the history entry and webhooks that record it."""

from __future__ import annotations

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.haproxy.lock import HaproxyLock
from pytest_bluegreen.settings import Settings

from . import history, recording

__all__ = ["end_pending", "expired", "gate_lock", "record_end"]


def expired(settings: Settings, record: history.PendingPromotion, now: float | None = None) -> bool:
    """Older than ``promotion_timeout``: refused, and ended as expired."""
    return record.age(now) > settings.promotion.promotion_timeout


def gate_lock(settings: Settings) -> HaproxyLock:
    """The gate's lock on these HAProxy instances: a command that ends a pending promotion
    holds it too, so that no gate writes the record or the history at the same time."""
    return HaproxyLock(settings.state.lock_dir, settings.haproxies())


def end_pending(
    settings: Settings,
    record: history.PendingPromotion,
    outcome: history.Outcome | None,
    reason: str,
) -> list[str]:
    """Under the gate lock: remove the pending promotion if it is still ``record`` (not one a
    gate wrote since), and record ``outcome`` (None: promoted, the switch recorded it). The
    warning lines; a lock held elsewhere leaves the record in place, said in one."""
    state_file = settings.state.state_file
    try:
        with gate_lock(settings).hold():
            if history.load_pending(state_file) != record:
                return []
            if outcome is not None:  # the history that records its end, before it goes
                history.check_history(state_file, "state_file", create=True)
            history.clear_record(state_file, history.PENDING)
            if outcome is None:
                return []
            return record_end(settings, record, outcome, reason, code=ExitCode.REFUSED)
    except BluegreenError as exc:
        return [f"warning: the pending promotion in {state_file} was left: {exc.first_line}"]
    except history.StateFileError as exc:
        return [f"warning: the pending promotion in {state_file} was left: {exc}"]


def record_end(
    settings: Settings,
    record: history.PendingPromotion,
    outcome: history.Outcome,
    reason: str,
    *,
    code: int,
) -> list[str]:
    """A pending promotion's end (aborted, expired), recorded and notified; the warnings."""
    entry = history.HistoryEntry.now(
        from_color=record.source,
        to_color=record.target,
        tag=record.tag,
        outcome=outcome,
        reason=reason,
    )
    return recording.record(settings, entry, secrets=settings.load_secrets(), exit_code=code)
