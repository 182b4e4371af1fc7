"""A fault ``bluegreen drill --power`` deployed to the idle color, marked until a deploy
without one replaces it: ``faults.json`` beside the state file (a :class:`.history.FaultsLeft`).

The drill writes it durably before its first faulted deploy; the next deploy of that color
without a fault in its environment removes it (the drill's own way back included:
``gate/deploy.py``, through which every deploy goes). A SIGKILL of the drill, or the machine
dying, leaves it: while it exists no switch goes to that color, forced or not, and ``bluegreen
status`` shows it. The one exception: the drill's own gates, dry runs that are its children.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from pytest_bluegreen.errors import Refused

from . import history
from .history import FAULTS, FaultsLeft

__all__ = ["FaultsLeftRefused", "end", "mark", "refusal", "require_none"]


class FaultsLeftRefused(Refused):
    """A switch to a color that may still run a power drill's fault: nothing changed."""


def mark(state_file: Path, color: str, tag: str, what: str, since: float | None = None) -> float:
    """The record written durably (before the faulted deploy); returns its ``since``."""
    since = time.time() if since is None else since
    record = FaultsLeft(
        color=color, tag=tag, what=what, since=since, host=socket.gethostname(), pid=os.getpid()
    )
    history.save_record(state_file, FAULTS, record)
    return since


def refusal(record: FaultsLeft, state_file: Path | None = None) -> str:
    """The one line of a switch refused (naming the record's file), and of ``bluegreen
    status``."""
    since = datetime.fromtimestamp(record.since, UTC).isoformat(timespec="seconds")
    where = "" if state_file is None else f"; {state_file.with_name(FAULTS)}"
    return (
        f"{record.color} may still run a fault bluegreen drill --power deployed (since {since}, "
        f"pid {record.pid} on {record.host}: {record.what}{where}): "
        f"deploy {record.color} again: bluegreen deploy --target-color {record.color} "
        f"--deployment-tag {record.tag}"
    )


def require_none(state_file: Path, target: str, *, dry_run: bool) -> None:
    """Raise FaultsLeftRefused when ``target`` may run a drill's fault (RecordError, one line,
    when the record cannot be read). A dry run that the drill itself started (its gates: this
    process's parent wrote the record, on this host) goes on."""
    record = history.load_faults(state_file)
    if record is None or record.color != target:
        return
    if dry_run and record.pid == os.getppid() and record.host == socket.gethostname():
        return
    raise FaultsLeftRefused(f"refused: {refusal(record, state_file)}")


def end(state_file: Path, color: str) -> str | None:
    """``color`` was deployed without a fault: its record removed; the line to say (None: there
    was none, or it is of the other color). A record that cannot be read stays (which color it
    marks is not known): said in the line."""
    try:
        record = history.load_faults(state_file)
    except history.RecordError as exc:
        return f"warning: {exc.first_line}"
    if record is None or record.color != color:
        return None
    history.clear_record(state_file, FAULTS)
    return f"{color} runs no fault of bluegreen drill --power any more: its mark is removed"
