"""An outcome recorded once: appended to the history, then sent to the ``notify`` webhooks.

Every place that ends in an outcome calls :func:`record`: the gate (``GateRun``, also for a
forced switch, a deploy that failed and the bake's switch back), ``bluegreen recover``, an
instance brought in line (``reconcile``), and a pending promotion aborted or expired. So each
outcome is written once and notified once. The gate runs on the xdist controller only (or the
one process of a serial run), so the workers never record nor notify; a dry run records
nothing and so notifies nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import state
from .notify import notify

if TYPE_CHECKING:
    from pytest_bluegreen.redaction import Secrets
    from pytest_bluegreen.settings import Settings

__all__ = ["record"]


def record(
    settings: Settings,
    entry: state.HistoryEntry,
    *,
    secrets: Secrets,
    exit_code: int | None = None,
    to_history: bool = True,
) -> list[str]:
    """Append ``entry`` to the history (unless ``to_history`` is false: a refusal before the
    gate held the lock), then notify every webhook, its reason redacted first (whatever the
    caller did). Never raises for either: returns the warning lines (history not written,
    notification not delivered), secrets redacted."""
    warnings: list[str] = []
    entry = replace(entry, reason=secrets.redact(entry.reason))  # before anything is written
    if to_history:
        try:
            state.append(settings.state.state_file, entry)
        except (OSError, state.StateFileError) as exc:
            warnings.append(
                secrets.redact(
                    f"warning: history not written to {settings.state.state_file}: {exc}"
                )
            )
    warnings += notify(settings.notify, entry, secrets=secrets, exit_code=exit_code)
    return warnings
