"""What the gate remembers: the JSON history of switches, and the lock against concurrent gates.

The live color itself is never stored: HAProxy says which it is. The lock belongs to the
HAProxy instance, not to a settings file: every gate and every ``bluegreen`` command on this
host that changes that HAProxy takes the same lock (``instances.lock_keys`` says which files
name one HAProxy, however its address is spelled).

**The lock cannot be taken over by another local user.** Its folder (``lock_dir``, default
``/run/bluegreen``) is made mode 0700 by the first gate and refused, with one line, when it
belongs to someone other than this user or root, when group or others may write to it, or
when a folder above it may be changed by another user (a sticky ``/tmp`` is fine): such a
user could plant a symbolic link at a lock's predictable name, or delete a held lock so that
two gates run at once. A lock file is opened without following a symbolic link, never
truncated, mode 0600 (no other user can open it to ``flock`` it and block every gate), and
after the ``flock`` the gate checks that the name still leads to the file it locked; a holder
checks it again before it changes traffic (:meth:`GateLock.verify`).

**Every write is durable**: the history and the records go to a temporary file that is synced,
renamed over the old one, and the folder synced (``journal.write_durably``); a record removed
is removed durably too. The history's read-modify-write runs under a lock file beside it, so
two writers never lose each other's entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import stat
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pytest_bluegreen.errors import Refused, UsageError
from pytest_bluegreen.switch.journal import read_plain, remove_durably, write_durably

__all__ = [
    "PENDING",
    "RECONCILE",
    "WARM",
    "GateLock",
    "GroupLock",
    "HistoryEntry",
    "LockHeld",
    "LockLost",
    "Outcome",
    "PendingPromotion",
    "Reconcile",
    "RecordError",
    "StateFileError",
    "UnsafeLock",
    "WarmWindow",
    "address_key",
    "append",
    "check_history",
    "ensure_folder",
    "listening",
    "load_pending",
    "load_reconcile",
    "load_warm",
    "lock_for",
    "lock_for_group",
    "open_lock_file",
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
    INCOMPLETE = "incomplete"  # past its point of no return, not every step could be completed
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


class UnsafeLock(Refused):
    """The lock folder or file could be changed by another user: nothing is locked, nothing
    changes."""


class LockLost(Refused):
    """The lock file this gate holds was removed or replaced: another gate may run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"the gate lock {path} was removed or replaced while this gate held it: another "
            "gate may be changing this HAProxy now, so this one changes nothing more"
        )


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


def _history_entry(data: object) -> HistoryEntry:
    if isinstance(data, dict):
        known = {field.name for field in dataclasses.fields(HistoryEntry)}
        unknown = sorted(set(data) - known)
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
    gate's own metrics (``gatemetrics``) count them here, in one place."""
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
        payload = {"version": FORMAT_VERSION, "history": [asdict(e) for e in history]}
        write_durably(path, json.dumps(payload, indent=2) + "\n")
    finally:
        os.close(fd)  # closing drops the lock
    listener = _listener.get()
    if listener is not None:
        listener(entry)


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
    for name in (path, *(_record_path(path, record) for record in (WARM, PENDING, RECONCILE))):
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
                _own_plain_file(fd, lock, fix_mode=False)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StateFileError(
            f"cannot open the history's lock file {lock}: {exc.strerror or exc} (set {setting}"
            " to a file in a folder this user can write)"
        ) from None
    read_history(path)  # the history append() will read and rewrite: one line if it cannot


def open_lock_file(path: Path) -> int:
    """Open (create, mode 0600) a lock file of this user's beside the file it guards, never
    through a symbolic link (a link planted at its predictable name is ELOOP) and never
    truncated; OSError when it is not a plain file of this user's (another user's file, which
    they could hold to block every writer)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    try:
        _own_plain_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own_plain_file(fd: int, path: Path, *, fix_mode: bool = True) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        raise PermissionError(
            errno.EPERM,
            f"{path} is not a plain file of this user's (owner {_owner(info.st_uid)}, "
            f"{info.st_nlink} link(s)): remove it",
        )
    if fix_mode and stat.S_IMODE(info.st_mode) != LOCK_FILE_MODE:
        os.fchmod(fd, LOCK_FILE_MODE)


LOCK_FILE_MODE = 0o600
LOCK_DIR_MODE = 0o700
PARENT_DIR_MODE = 0o755  # a folder above the lock folder that the gate makes
HOLDER_SIZE = 160  # the holder's line, padded: a shorter one overwrites a longer one whole
_ATTEMPTS = 5
LOCK_DIR_HINT = (
    "the default /run/bluegreen is made by the first gate run as root; for a gate run by "
    "another user, make it once as root (install -d -m 0700 -o USER /run/bluegreen; every "
    "gate of this HAProxy then runs as USER) or set lock_dir to a folder of that user's"
)


def _owner(uid: int) -> str:
    import pwd  # noqa: PLC0415 - only for a message

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _changeable_by_others(info: os.stat_result, me: int) -> bool:
    """Another user (not root, not ``me``) could create, rename or delete entries in it."""
    if info.st_uid not in (me, 0):
        return True
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return bool(writable) and not info.st_mode & stat.S_ISVTX


def _open_lock_dir(folder: Path) -> int:
    """The lock folder, made 0700 when missing, opened without following a symbolic link and
    checked: UnsafeLock when another user could change it or a folder above it."""
    try:
        _make_folders(folder)
    except OSError as exc:
        raise Refused(
            f"cannot create the lock folder {folder}: {exc.strerror or exc} ({LOCK_DIR_HINT})"
        ) from None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeLock(
                f"the lock folder {folder} is a symbolic link or not a folder: refused (set "
                "lock_dir to the folder itself)"
            ) from None
        raise Refused(
            f"cannot open the lock folder {folder}: {exc.strerror or exc} ({LOCK_DIR_HINT})"
        ) from None
    try:
        _check_lock_dir(folder, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_folders(folder: Path) -> None:
    """The lock folder (0700) and the folders above it that are missing (0755: never group-
    or world-writable, whatever the umask; with a umask of 0002, ``mkdir -p`` would make them
    0775, and the check below would then refuse the folders the gate made itself)."""
    missing = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    for path in reversed(missing):
        # made meanwhile (another gate): checked below as any existing folder
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, LOCK_DIR_MODE if path == folder else PARENT_DIR_MODE)


def _check_lock_dir(folder: Path, fd: int) -> None:
    me = os.geteuid()
    info = os.fstat(fd)
    if info.st_uid not in (me, 0):
        raise UnsafeLock(
            f"the lock folder {folder} belongs to {_owner(info.st_uid)}, not to this user or "
            "root: its owner could plant or delete the gate locks; remove it (a gate makes it "
            "again, mode 0700) or set lock_dir"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeLock(
            f"the lock folder {folder} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): any of them could plant or delete the gate "
            f"locks; chmod 0700 {folder} or set lock_dir"
        )
    for parent in _parents(folder, fd):
        try:
            above = os.stat(parent)
        except OSError:
            continue
        if _changeable_by_others(above, me):
            who = (
                f"which belongs to {_owner(above.st_uid)}"
                if above.st_uid not in (me, 0)
                else "which group or others may write"
            )
            raise UnsafeLock(
                f"the lock folder {folder} is inside {parent}, {who} (mode "
                f"{stat.S_IMODE(above.st_mode):04o}): they could replace the folder; set "
                "lock_dir to a folder only root or this user can change"
            )


def _parents(folder: Path, fd: int) -> list[Path]:
    """Every folder above the lock folder: as written (a symbolic link there is replaceable by
    whoever may write its folder) and as the kernel resolved it (``/proc/self/fd``)."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(folder)
    found = {*Path(real).parents, *Path(os.path.abspath(folder)).parents}
    return sorted(found, key=lambda p: (-len(p.parts), str(p)))


def _same_file(path: Path, fd: int) -> bool:
    """``path`` (not followed) still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


class GateLock:
    """An exclusive, non-blocking ``flock`` on a file of this user's in a folder only this user
    (or root) can change; the holder writes who it is into it.

    The kernel drops the lock when the process dies, so a crashed gate never leaves it stuck.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Raises LockHeld, UnsafeLock (another user could change the folder or planted the
        file), Refused (the folder or file cannot be made)."""
        for _ in range(_ATTEMPTS):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
                os.close(fd)
                raise LockHeld(self.path, holder) from None
            if _same_file(self.path, fd):
                break
            os.close(fd)  # removed or replaced between open and flock: that lock is no one's
        else:
            raise Refused(
                f"the gate lock {self.path} was replaced {_ATTEMPTS} times while it was taken: "
                "something keeps removing it"
            )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = f"pid {os.getpid()} on {socket.gethostname()} since {stamp}"
        os.pwrite(fd, _padded(line), 0)
        self._fd = fd

    def _open(self) -> int:
        folder = _open_lock_dir(self.path.parent)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path.name, flags, LOCK_FILE_MODE, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeLock(
                    f"the gate lock {self.path} is a symbolic link: refused (remove it)"
                ) from None
            raise Refused(
                f"cannot create the gate lock {self.path}: {exc.strerror or exc} ({LOCK_DIR_HINT})"
            ) from None
        finally:
            os.close(folder)
        try:
            _own_plain_file(fd, self.path)
        except OSError as exc:
            os.close(fd)
            raise UnsafeLock(f"the gate lock {exc.strerror}; refused") from None
        return fd

    def verify(self) -> None:
        """Raise LockLost when the lock's name no longer leads to the file this gate locked
        (someone removed it: a gate started since may hold a new one). Called before traffic
        changes; a lock not held has nothing to verify."""
        if self._fd is not None and not _same_file(self.path, self._fd):
            raise LockLost(self.path)

    def release(self) -> None:
        if self._fd is not None:
            os.pwrite(self._fd, _padded(""), 0)
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


def _padded(line: str) -> bytes:
    data = line.encode()[: HOLDER_SIZE - 1]
    return data.ljust(HOLDER_SIZE - 1) + b"\n"


def address_key(address: str) -> str:
    """The lock key of a Runtime API address however it is spelled: a socket path resolved
    (``unix:`` + its real path), a host name resolved to the address it connects to first
    (``localhost:P`` and ``127.0.0.1:P`` are one key)."""
    text = address.strip()
    if text.startswith("unix:"):
        return "unix:" + os.path.realpath(text[len("unix:") :])
    if text.startswith(("/", "./", "../")):
        return "unix:" + os.path.realpath(text)
    for prefix in ("tls://", "tcp:", "ipv4@"):
        text = text.removeprefix(prefix)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text
    host = host.strip("[]")
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        host = str(found[0][4][0])
    except (OSError, IndexError, UnicodeError):
        pass
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def lock_for(lock_dir: Path, key: str) -> GateLock:
    """The lock named by ``key`` (a Runtime API address, or another key of one HAProxy from
    ``instances.lock_keys``): one file per key in ``lock_dir``. An address is spelled as
    :func:`address_key` spells it."""
    if not key.startswith("haproxy "):
        key = address_key(key)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[-60:]
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]
    return GateLock(lock_dir / f"{slug}-{digest}.lock")


class GroupLock:
    """Several locks taken as one: in a fixed (sorted) order, so two gates on overlapping
    groups cannot deadlock, and all or none (a lock held elsewhere releases the ones already
    taken). A key named twice is one lock."""

    def __init__(self, locks: Sequence[GateLock]) -> None:
        unique = {str(lock.path): lock for lock in locks}
        self.locks = [unique[name] for name in sorted(unique)]
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

    def verify(self) -> None:
        for lock in self.locks:
            lock.verify()

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


def lock_for_group(lock_dir: Path, keys: Iterable[str]) -> GateLock | GroupLock:
    """One lock, or every key's as one :class:`GroupLock` (``instances.lock_keys`` gives the
    keys of every HAProxy of a group)."""
    locks = {str(lock.path): lock for lock in (lock_for(lock_dir, key) for key in keys)}
    found = list(locks.values())
    return found[0] if len(found) == 1 else GroupLock(found)


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


R = TypeVar("R", WarmWindow, PendingPromotion, Reconcile, HistoryEntry)  # read by _from_json

HISTORY_LIMIT = 256 * 1024 * 1024  # read at most (hundreds of thousands of entries)
RECORD_LIMIT = 1024 * 1024  # a record is a few hundred bytes
WARM = "warm-window.json"
PENDING = "pending-promotion.json"
RECONCILE = "reconcile.json"

# how to get past a record that cannot be read, named in its error
_CLEARED_BY = {
    WARM: "remove it to end the warm window (bluegreen rollback then runs the checks)",
    PENDING: "'bluegreen abort' discards it",
    RECONCILE: "remove it; then 'bluegreen status' shows whether the instances agree, and "
    "'bluegreen recover --to COLOR' brings them in line",
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
    state_file: Path, name: str, record: WarmWindow | PendingPromotion | Reconcile
) -> None:
    """Write the record durably (synced, renamed over, the folder synced)."""
    write_durably(_record_path(state_file, name), json.dumps(asdict(record), indent=2) + "\n")


def load_warm(state_file: Path) -> WarmWindow | None:
    return _load_record(state_file, WARM, WarmWindow)


def load_pending(state_file: Path) -> PendingPromotion | None:
    return _load_record(state_file, PENDING, PendingPromotion)


def load_reconcile(state_file: Path) -> Reconcile | None:
    return _load_record(state_file, RECONCILE, Reconcile)


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
    hints = typing.get_type_hints(kind)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        if field.name not in data:
            if field.default is dataclasses.MISSING:
                raise ValueError(f"it has no {field.name!r}")
            continue
        values[field.name] = _typed(field.name, hints[field.name], data[field.name])
    return kind(**values)


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
        if not math.isfinite(value):
            raise TypeError(f"{name!r} is not a finite number")
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise TypeError(f"{name!r} is {json.dumps(value)[:40]}, not {getattr(hint, '__name__', hint)}")
