"""What the gate remembers: the JSON history of switches, and the records that outlive a run
(the old color's warm window, a pending promotion, an instance to bring in line, a fault a
power drill deployed).

The live color itself is never stored: HAProxy says which it is. The lock against concurrent
gates is the HAProxy's (``haproxy/lock.py``).

**Every write is durable**: the history and the records go to a temporary file that is synced,
renamed over the old one, and the folder synced (``durable.write_durably``); a record removed
is removed durably too. The history's read-modify-write runs under a lock file beside it, so
two writers never lose each other's entry.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import json
import math
import os
import socket
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pytest_bluegreen.errors import UsageError
from pytest_bluegreen.haproxy.lockfile import open_lock_file, require_own_plain_file
from pytest_bluegreen.record.durable import read_plain, remove_durably, write_durably

__all__ = [
    "BAKE_REASON",
    "FAULTS",
    "PENDING",
    "RECONCILE",
    "WARM",
    "FaultsLeft",
    "HistoryEntry",
    "Outcome",
    "PendingPromotion",
    "Reconcile",
    "RecordError",
    "StateFileError",
    "WarmWindow",
    "append",
    "check_history",
    "ensure_folder",
    "listening",
    "load_faults",
    "load_pending",
    "load_reconcile",
    "load_warm",
    "read_history",
]

FORMAT_VERSION = 1


class StateFileError(UsageError):
    """The state file exists but cannot be read as pytest-bluegreen history."""


# how a switch back after a failed (or unjudged) bake begins its reason (gate/afterswitch.py
# writes it): the dashboard tells a bake's rollback from another by it (report/snapshot.py)
BAKE_REASON = "bake "


class Outcome(enum.StrEnum):
    """What a gate run did, as the history records it."""

    SWITCHED = "switched"  # traffic moved to the target, verified
    ROLLED_BACK = "rolled-back"  # traffic returned to the other color, verified
    NOOP = "noop"  # the target was already live
    FAILED = "failed"  # checks failed; traffic kept where it was
    INCONCLUSIVE = "inconclusive"  # no check for the target ran and passed
    REFUSED = "refused"  # HAProxy, a veto, the Runtime API: nothing changed
    REVERTED = "reverted"  # the switch failed and the prior states were restored
    REVERT_FAILED = "revert-failed"  # the switch failed and so did restoring the prior states
    INCOMPLETE = "incomplete"  # past its point of no return, not every step could be completed
    DEPLOY_FAILED = "deploy-failed"  # --deploy failed: no check ran, no switch
    RECOVERED = "recovered"  # bluegreen recover brought HAProxy to a consistent state
    PENDING = "pending-promotion"  # verified; bluegreen promote switches it later
    ABORTED = "aborted"  # a pending promotion discarded (bluegreen abort)
    EXPIRED = "expired"  # a pending promotion older than promotion_timeout, refused


@dataclass(frozen=True)
class HistoryEntry:
    time: str
    from_color: str | None
    to_color: str
    tag: str | None
    outcome: Outcome
    host: str
    reason: str = ""
    forced: bool = False

    @classmethod
    def now(cls, **fields: Any) -> HistoryEntry:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(time=stamp, host=socket.gethostname(), **fields)


def read_history(path: Path) -> list[HistoryEntry]:
    """Every entry, each field of its type (as the records: :func:`_from_json`), else
    StateFileError in one line; a key this version does not know is refused too (rewriting
    the file would drop it)."""
    try:
        data = _parse_json(read_plain(path, HISTORY_LIMIT).decode())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unreadable_history(path, exc.strerror or str(exc)) from None
    except ValueError as exc:  # not UTF-8, not JSON
        raise _unreadable_history(path, str(exc)) from None
    try:
        if not isinstance(data, dict) or not isinstance(data.get("history"), list):
            raise TypeError('a JSON object with a "history" list was expected')
        return [_history_entry(entry) for entry in data["history"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable_history(path, str(exc)) from None


def _unreadable_history(path: Path, why: str) -> StateFileError:
    return StateFileError(
        f"state file {path} is not readable history ({why}): move it aside to start a new history"
    )


_ENTRY_FIELDS = frozenset(field.name for field in dataclasses.fields(HistoryEntry))


def _history_entry(data: object) -> HistoryEntry:
    if isinstance(data, dict) and not data.keys() <= _ENTRY_FIELDS:
        unknown = sorted(set(data) - _ENTRY_FIELDS)
        if unknown:
            raise TypeError(f"an entry has {unknown[0]!r}, which this version does not know")
    return _from_json(HistoryEntry, data)


def _parse_json(text: str) -> Any:
    """``json.loads``; nesting too deep for the parser is a ValueError, as any bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


HistoryListener = Callable[[HistoryEntry], None]
_listener: ContextVar[HistoryListener | None] = ContextVar("bluegreen_history", default=None)


@contextmanager
def listening(listener: HistoryListener) -> Iterator[None]:
    """Every entry :func:`append` writes inside this block (this thread) is also handed to
    ``listener``, once written. Only the innermost listener hears it, so nested blocks never
    see one entry twice. Every outcome of every command goes through :func:`append`: the
    gate's own metrics (``report/metrics.py``) count them here, in one place."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def append(path: Path, entry: HistoryEntry) -> None:
    """Add one entry, durably (a crash leaves the old file or the new one, whole), read and
    rewritten under ``.<name>.lock`` beside it (no other writer's entry is lost); then the
    :func:`listening` listener hears it. Raises OSError or StateFileError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_lock_file(path.with_name(f".{path.name}.lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for one read and one write: milliseconds
        history = read_history(path)
        history.append(entry)
        write_durably(path, history_text(history))
    finally:
        os.close(fd)  # closing drops the lock
    listener = _listener.get()
    if listener is not None:
        listener(entry)


def history_text(history: list[HistoryEntry]) -> str:
    """The state file's text: ``{"version": 1, "history": [...]}`` with one entry per line,
    each in json's C encoder (``indent=`` takes the pure-Python one: for a history of a
    hundred thousand entries, seconds of every gate run)."""
    names = [field.name for field in dataclasses.fields(HistoryEntry)]
    encode = json.JSONEncoder(ensure_ascii=True).encode
    lines = ",\n    ".join(encode({name: getattr(e, name) for name in names}) for e in history)
    body = f"[\n    {lines}\n  ]" if history else "[]"
    return f'{{\n  "version": {FORMAT_VERSION},\n  "history": {body}\n}}\n'


def ensure_folder(path: Path, setting: str) -> None:
    """The folder of ``path`` exists and this user can create files in it, neither ``path``
    nor a record beside it is a symbolic link, the history's lock file is this user's and
    the history itself is readable, else one line naming it and ``setting`` (a gate checks
    before anything changes, so that no write of its history or records fails or goes astray
    after a switch: a switch with its history lost, and exit 0)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".bluegreen-probe.")
    except OSError as exc:
        raise StateFileError(
            f"cannot write in {folder}: {exc.strerror or exc} (set {setting} to a file in a "
            "folder this user can write)"
        ) from None
    os.close(fd)
    os.unlink(probe)
    records = (WARM, PENDING, RECONCILE, FAULTS)
    for name in (path, *(_record_path(path, record) for record in records)):
        if name.is_symlink():
            target = os.path.realpath(name)
            raise StateFileError(
                f"{name} is a symbolic link (to {target}): the gate writes a new file and "
                f"renames it over the old one, which would replace the link and leave {target}"
                " behind; "
                + (f"set {setting} to {target}" if name == path else "put the file in its place")
            )
    check_history(path, setting, create=True)


def check_history(path: Path, setting: str, *, create: bool = False) -> None:
    """What :func:`append` will open and read, checked before a switch: the history's lock
    file is a plain file of this user's (made, mode 0600, when ``create``; a dry run makes
    nothing) and the history is readable. StateFileError, one line."""
    lock = path.with_name(f".{path.name}.lock")
    try:
        if create:
            os.close(open_lock_file(lock))  # as append() opens it
        elif os.path.lexists(lock):
            fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                require_own_plain_file(fd, lock, fix_mode=False)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StateFileError(
            f"cannot open the history's lock file {lock}: {exc.strerror or exc} (set {setting}"
            " to a file in a folder this user can write)"
        ) from None
    read_history(path)  # the history append() will read and rewrite: one line if it cannot


# --- what outlives a run: the old color kept warm, a promotion pending ----------------------


@dataclass(frozen=True)
class WarmWindow:
    """After a switch the old color stays at weight 0, health-checked, until ``until`` (epoch
    seconds); a rollback inside the window needs no checks; then ``action`` (keep or stop)."""

    old: str
    new: str
    tag: str | None  # the new color's tag
    until: float
    action: str
    # what the old color ran when the window began (a rollback without checks must find the
    # same build), and the journal entry of the switch that made the window (a later switch,
    # a switch back after a bake included, ends it)
    old_tag: str | None = None
    old_image: str | None = None
    switch_id: str | None = None

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self.until - (time.time() if now is None else now))


@dataclass(frozen=True)
class PendingPromotion:
    """A color deployed and verified, waiting for ``bluegreen promote``."""

    target: str
    source: str | None
    tag: str | None
    image: str | None  # what the verified color ran (its deploy engine's image_of)
    checks_passed: int
    verified_at: float  # epoch seconds
    created_at: float

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.verified_at


@dataclass(frozen=True)
class Reconcile:
    """HAProxy instances left out of a switch (``--allow-missing-instance``): when they answer
    again, ``bluegreen recover`` or the next gate gives them the other instances' server
    states (``color`` was live on those when recorded)."""

    instances: tuple[str, ...]
    color: str
    since: float  # epoch seconds


@dataclass(frozen=True)
class FaultsLeft:
    """``bluegreen drill --power`` deploys faults to ``color`` (the idle one): written before
    its first faulted deploy, removed once a deploy of the color without a fault succeeded.
    While it exists, no switch goes to ``color`` (record/faults.py)."""

    color: str
    tag: str  # what to deploy the color back at (its tag before the drill)
    what: str  # the fault last deployed: "HTTP 500 on 1.00% of /api/* requests"
    since: float  # epoch seconds: the drill's first faulted deploy
    host: str
    pid: int  # the drill's


# read by _from_json
R = TypeVar("R", WarmWindow, PendingPromotion, Reconcile, FaultsLeft, HistoryEntry)

HISTORY_LIMIT = 256 * 1024 * 1024  # read at most (hundreds of thousands of entries)
RECORD_LIMIT = 1024 * 1024  # a record is a few hundred bytes
WARM = "warm-window.json"
PENDING = "pending-promotion.json"
RECONCILE = "reconcile.json"
FAULTS = "faults.json"

# how to get past a record that cannot be read, named in its error
_CLEARED_BY = {
    WARM: "remove it to end the warm window (bluegreen rollback then runs the checks)",
    PENDING: "'bluegreen abort' discards it",
    RECONCILE: "remove it; then 'bluegreen status' shows whether the instances agree, and "
    "'bluegreen recover --to COLOR' brings them in line",
    FAULTS: "deploy the idle color again (bluegreen deploy --target-color COLOR), then remove it",
}


def _record_path(state_file: Path, name: str) -> Path:
    return state_file.with_name(name)


class RecordError(StateFileError):
    """A record that cannot be read: the one line names the file, why, and how to get past
    it."""

    def __init__(self, path: Path, why: str, cleared_by: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"state file {path} is not readable ({why}): {cleared_by}")


def record_error(state_file: Path, name: str, why: str) -> RecordError:
    return RecordError(_record_path(state_file, name), why, _CLEARED_BY[name])


def save_record(
    state_file: Path, name: str, record: WarmWindow | PendingPromotion | Reconcile | FaultsLeft
) -> None:
    """Write the record durably (synced, renamed over, the folder synced)."""
    write_durably(_record_path(state_file, name), json.dumps(asdict(record), indent=2) + "\n")


def load_warm(state_file: Path) -> WarmWindow | None:
    return _load_record(state_file, WARM, WarmWindow)


def load_pending(state_file: Path) -> PendingPromotion | None:
    return _load_record(state_file, PENDING, PendingPromotion)


def load_reconcile(state_file: Path) -> Reconcile | None:
    return _load_record(state_file, RECONCILE, Reconcile)


def load_faults(state_file: Path) -> FaultsLeft | None:
    return _load_record(state_file, FAULTS, FaultsLeft)


def clear_record(state_file: Path, name: str) -> None:
    """Remove the record, durably (a pending promotion aborted must not come back after a
    power loss)."""
    remove_durably(_record_path(state_file, name))


def _load_record(state_file: Path, name: str, kind: type[R]) -> R | None:
    """The record, or None when there is none; StateFileError (one line: the file, why, how
    to clear it) when it is not JSON or not the record's shape. Keys the record does not know
    are left out, fields it has added since with a default may be missing: the loader follows
    the dataclass, so a field added to one needs no change here."""
    path = _record_path(state_file, name)
    try:
        text = read_plain(path, RECORD_LIMIT).decode()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise record_error(state_file, name, exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise record_error(state_file, name, str(exc)) from None
    try:
        return _from_json(kind, _parse_json(text))
    except (ValueError, TypeError) as exc:
        raise record_error(state_file, name, str(exc)) from None


def _from_json(kind: type[R], data: object) -> R:
    if not isinstance(data, dict):
        raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
    values: dict[str, Any] = {}
    plan = _FIELDS.get(kind) or _FIELDS.setdefault(kind, _fields_of(kind))
    for name, hint, as_is, required in plan:
        if name not in data:
            if required:
                raise ValueError(f"it has no {name!r}")
            continue
        value = data[name]
        # the common case first: a field of a plain type holding that type
        values[name] = value if type(value) in as_is else _typed(name, hint, value)
    return kind(**values)


_PLAIN = (str, int, bool)  # taken as they are when JSON gave that very type
# per record type: worked out once (a race computes the same twice)
_FIELDS: dict[type, tuple[tuple[str, Any, frozenset[type], bool], ...]] = {}


def _fields_of(kind: type) -> tuple[tuple[str, Any, frozenset[type], bool], ...]:
    """Each field's name, type, the JSON types taken as they are (``str | None``: str and
    None) and whether it has no default: worked out once per record type (``get_type_hints``
    evaluates the annotations' strings: for each of a long history's entries, three quarters
    of reading it)."""
    hints = typing.get_type_hints(kind)

    def as_is(hint: Any) -> frozenset[type]:
        if typing.get_origin(hint) in (types.UnionType, typing.Union):
            return frozenset().union(*(as_is(arg) for arg in typing.get_args(hint)))
        return frozenset({hint}) if hint in (*_PLAIN, type(None)) else frozenset()

    return tuple(
        (
            field.name,
            hints[field.name],
            as_is(hints[field.name]),
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
        )
        for field in dataclasses.fields(kind)
    )


def _typed(name: str, hint: Any, value: object) -> Any:
    """``value`` as the field's type says (str, int, float, bool, X | None, tuple[X, ...]), or
    TypeError naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        [inner] = [a for a in args if a is not type(None)]
        return _typed(name, inner, value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"{name!r} is not a list")
        return tuple(_typed(name, args[0], item) for item in value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and isinstance(value, str):
        return hint(value)  # ValueError when it is none of its values
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)  # an integer past a float's range: OverflowError
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise TypeError(f"{name!r} is not a finite number")
        return number
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise TypeError(f"{name!r} is {json.dumps(value)[:40]}, not {getattr(hint, '__name__', hint)}")
