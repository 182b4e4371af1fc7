"""The gate's lock files: an exclusive ``flock`` on a file of this user's (:class:`GateLock`),
several taken as one (:class:`GroupLock`), and the lock folder's safety.

**The lock cannot be taken over by another local user.** Its folder (``lock_dir``, default
``/run/bluegreen``) is made mode 0700 by the first gate and refused, with one line, when it
belongs to someone other than this user or root, when group or others may write to it, or
when a folder above it may be changed by another user (a sticky ``/tmp`` is fine): such a
user could plant a symbolic link at a lock's predictable name, or delete a held lock so that
two gates run at once. A lock file is opened without following a symbolic link, never
truncated, mode 0600 (no other user can open it to ``flock`` it and block every gate), and
after the ``flock`` the gate checks that the name still leads to the file it locked; a holder
checks it again before it changes traffic (:meth:`GateLock.verify`). The history's own lock
file (``record/history.py``) is opened the same way (:func:`open_lock_file`).

Which files lock which HAProxy: :mod:`.lock`. Only a gate loads this module.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pytest_bluegreen.errors import Refused

__all__ = [
    "HOLDER_SIZE",
    "LOCK_DIR_HINT",
    "LOCK_DIR_MODE",
    "LOCK_FILE_MODE",
    "PARENT_DIR_MODE",
    "GateLock",
    "GroupLock",
    "LockHeld",
    "LockLost",
    "UnsafeLock",
    "open_lock_file",
    "require_own_plain_file",
]


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


def open_lock_file(path: Path) -> int:
    """Open (create, mode 0600) a lock file of this user's beside the file it guards, never
    through a symbolic link (a link planted at its predictable name is ELOOP) and never
    truncated; OSError when it is not a plain file of this user's (another user's file, which
    they could hold to block every writer)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, LOCK_FILE_MODE)
    try:
        require_own_plain_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def require_own_plain_file(fd: int, path: Path, *, fix_mode: bool = True) -> None:
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
            require_own_plain_file(fd, self.path)
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
