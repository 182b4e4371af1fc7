"""What the gate remembers: the JSON history of switches, and the lock against concurrent gates.

The live color itself is never stored: HAProxy says which it is. The lock belongs to the
HAProxy instance (its Runtime API address), not to a settings file: every gate and every
``bluegreen`` command on this host that changes that HAProxy takes the same lock.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import Refused, UsageError

__all__ = [
    "PENDING",
    "RECONCILE",
    "WARM",
    "GateLock",
    "GroupLock",
    "HistoryEntry",
    "LockHeld",
    "Outcome",
    "PendingPromotion",
    "Reconcile",
    "StateFileError",
    "WarmWindow",
    "append",
    "listening",
    "load_reconcile",
    "lock_for",
    "lock_for_group",
    "read_history",
]

FORMAT_VERSION = 1


class StateFileError(UsageError):
    """The state file exists but cannot be read as pytest-bluegreen history."""


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
    DEPLOY_FAILED = "deploy-failed"  # --deploy failed: no check ran, no switch
    RECOVERED = "recovered"  # bluegreen recover brought HAProxy to a consistent state
    PENDING = "pending-promotion"  # verified; bluegreen promote switches it later
    ABORTED = "aborted"  # a pending promotion discarded (bluegreen abort)
    EXPIRED = "expired"  # a pending promotion older than promotion_timeout, refused


class LockHeld(Refused):
    """Another gate holds the lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(f"another gate holds {path} ({holder or 'holder unknown'})")


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
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        return [
            HistoryEntry(**{**entry, "outcome": Outcome(entry["outcome"])})
            for entry in data["history"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateFileError(f"state file {path} is not readable history: {exc}") from None


HistoryListener = Callable[[HistoryEntry], None]
_listener: ContextVar[HistoryListener | None] = ContextVar("bluegreen_history", default=None)


@contextmanager
def listening(listener: HistoryListener) -> Iterator[None]:
    """Every entry :func:`append` writes inside this block (this thread) is also handed to
    ``listener``, once written. Only the innermost listener hears it, so nested blocks never
    see one entry twice. Every outcome of every command goes through :func:`append`: the
    gate's own metrics (``gatemetrics``) count them here, in one place."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def append(path: Path, entry: HistoryEntry) -> None:
    """Add one entry, written atomically (a crash leaves the old file whole); then the
    :func:`listening` listener hears it."""
    history = read_history(path)
    history.append(entry)
    payload = {"version": FORMAT_VERSION, "history": [asdict(e) for e in history]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    listener = _listener.get()
    if listener is not None:
        listener(entry)


class GateLock:
    """An exclusive, non-blocking ``flock`` on a file; the holder writes who it is into it.

    The kernel drops the lock when the process dies, so a crashed gate never leaves it stuck.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise Refused(
                f"cannot create the gate lock {self.path}: {exc.strerror} (set lock_dir to a "
                "folder every operator of this HAProxy can write)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def hold(self) -> Iterator[GateLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()


def lock_for(lock_dir: Path, address: str) -> GateLock:
    """The lock of the HAProxy instance whose Runtime API is ``address`` (``unix:/path`` or
    ``host:port``): one file per instance in ``lock_dir``, named after the address."""
    if address.startswith("unix:"):
        address = "unix:" + os.path.realpath(address[len("unix:") :])
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", address).strip("_")[-60:]
    digest = hashlib.sha1(address.encode(), usedforsecurity=False).hexdigest()[:10]
    return GateLock(lock_dir / f"{slug}-{digest}.lock")


class GroupLock:
    """The locks of several HAProxy instances taken as one: in a fixed (sorted) order, so two
    gates on overlapping groups cannot deadlock, and all or none (a lock held elsewhere
    releases the ones already taken)."""

    def __init__(self, locks: Sequence[GateLock]) -> None:
        self.locks = sorted(locks, key=lambda lock: str(lock.path))
        self.path = self.locks[0].path

    @property
    def held(self) -> bool:
        return all(lock.held for lock in self.locks)

    def acquire(self) -> None:
        taken: list[GateLock] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()

    @contextmanager
    def hold(self) -> Iterator[GroupLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()


def lock_for_group(lock_dir: Path, addresses: Iterable[str]) -> GateLock | GroupLock:
    """One instance's lock, or every instance's as one :class:`GroupLock`."""
    locks = [lock_for(lock_dir, address) for address in sorted(set(addresses))]
    return locks[0] if len(locks) == 1 else GroupLock(locks)


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reconcile:
        return cls(tuple(map(str, data["instances"])), str(data["color"]), float(data["since"]))


def load_reconcile(state_file: Path) -> Reconcile | None:
    data = _load(_record_path(state_file, RECONCILE))
    try:
        return None if data is None else Reconcile.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        path = _record_path(state_file, RECONCILE)
        raise StateFileError(f"{path} is not readable: {exc}") from None


def _record_path(state_file: Path, name: str) -> Path:
    return state_file.with_name(name)


def save_record(
    state_file: Path, name: str, record: WarmWindow | PendingPromotion | Reconcile
) -> None:
    path = _record_path(state_file, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(record), handle, indent=2)
    os.replace(tmp, path)


def load_warm(state_file: Path) -> WarmWindow | None:
    data = _load(_record_path(state_file, WARM))
    return None if data is None else WarmWindow(**data)


def load_pending(state_file: Path) -> PendingPromotion | None:
    data = _load(_record_path(state_file, PENDING))
    return None if data is None else PendingPromotion(**data)


def clear_record(state_file: Path, name: str) -> None:
    _record_path(state_file, name).unlink(missing_ok=True)


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path} is not readable: {exc}") from None
    return data


WARM = "warm-window.json"
PENDING = "pending-promotion.json"
RECONCILE = "reconcile.json"
