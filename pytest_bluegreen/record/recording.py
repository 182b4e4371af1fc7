"""An outcome recorded once: appended to the history, then sent to the ``notify`` webhooks.
Whatever ends in an outcome (the gate, ``recover``, an instance brought in line, a pending
promotion ended) calls :func:`record`; the xdist workers and a dry run never do."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import history
from .notify import notify

if TYPE_CHECKING:
    from pytest_bluegreen.redaction import Secrets
    from pytest_bluegreen.settings import Settings

__all__ = ["record"]


def record(
    settings: Settings,
    entry: history.HistoryEntry,
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
            history.append(settings.state.state_file, entry)
        except (OSError, history.StateFileError) as exc:
            warnings.append(
                secrets.redact(
                    f"warning: history not written to {settings.state.state_file}: {exc}"
                )
            )
    warnings += notify(settings.notify, entry, secrets=secrets, exit_code=exit_code)
    return warnings
