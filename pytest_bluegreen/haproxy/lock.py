"""The gate's lock: one per HAProxy, so that two gates never change one HAProxy at once.

The lock belongs to the HAProxy, not to a settings file: every gate and every ``bluegreen``
command on this host that changes that HAProxy takes the same lock, a file per key in
``lock_dir`` (:func:`lock_keys` says which keys name one HAProxy, however its address is
spelled; :class:`HaproxyLock` takes those of every HAProxy of a group, all or none).

**The lock cannot be taken over by another local user.** Its folder (``lock_dir``, default
``/run/bluegreen``) is made mode 0700 by the first gate and refused, with one line, when it
belongs to someone other than this user or root, when group or others may write to it, or
when a folder above it may be changed by another user (a sticky ``/tmp`` is fine): such a
user could plant a symbolic link at a lock's predictable name, or delete a held lock so that
two gates run at once. A lock file is opened without following a symbolic link, never
truncated, mode 0600 (no other user can open it to ``flock`` it and block every gate), and
after the ``flock`` the gate checks that the name still leads to the file it locked; a holder
checks it again before it changes traffic (:meth:`GateLock.verify`). The history's own lock
file (``record/state.py``) is opened the same way (:func:`open_lock_file`).

Only a gate loads this module (``haproxy/instances.py``, which every session loads, does not).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import socket
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from pytest_bluegreen.errors import Refused, UsageError
from pytest_bluegreen.frozen import Frozen, frozen

from .identity import InstanceIdentity
from .instances import AnyHaproxy, Haproxies
from .runtime import RuntimeApi, RuntimeApiError

__all__ = [
    "GateLock",
    "GroupLock",
    "HaproxyLock",
    "LockHeld",
    "LockLost",
    "SameHaproxy",
    "UnsafeLock",
    "address_key",
    "lock_for",
    "lock_for_group",
    "lock_keys",
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
    :func:`lock_keys`): one file per key in ``lock_dir``. An address is spelled as
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
    """One lock, or every key's as one :class:`GroupLock` (:func:`lock_keys` gives the
    keys of every HAProxy of a group)."""
    locks = {str(lock.path): lock for lock in (lock_for(lock_dir, key) for key in keys)}
    found = list(locks.values())
    return found[0] if len(found) == 1 else GroupLock(found)


# --- the keys of an HAProxy, and the lock of every HAProxy of a group ------------------------


class SameHaproxy(UsageError):
    """Two instances of the group are one HAProxy process (reached at two addresses)."""


@frozen
class _Seen(Frozen):
    """What an instance says about itself: its process, its Runtime API sockets."""

    identity: InstanceIdentity | None  # None: it does not answer
    sockets: tuple[str, ...] = ()  # show cli sockets; () when it cannot be read
    why: str = ""  # why the identity or the sockets could not be read


def lock_keys(api: AnyHaproxy, *, strict: bool = False) -> tuple[str, ...]:
    """The keys of the gate lock of every HAProxy of ``api`` (:func:`lock_for_group`); one
    HAProxy named twice in the group is refused (SameHaproxy, one line).

    One HAProxy can be reached at several addresses (``localhost:P`` and ``127.0.0.1:P``, its
    unix socket and its TCP socket), and a reload gives it a new process (a new Pid and
    Start_time_sec) while a gate runs. Two gates on it must still share a lock, so the keys
    are what stays when it reloads, the same whichever address asks:

    - the address this gate connects to, spelled one way (:func:`address_key`: a socket's
      real path, a host name resolved) -- two gates at one address always share it, even
      when HAProxy does not answer;
    - every Runtime API socket the process lists (``show cli sockets``), with its node name:
      the same list through the unix socket and through the TCP one, before and after a
      reload that keeps its sockets (two processes of one host cannot listen on one socket,
      and the node name keeps HAProxies of other hosts or containers apart).

    An instance that does not answer has only its address's key, which another gate at
    another address of it does not share: :class:`HaproxyLock` reads the keys again once it
    holds them, and ``strict`` (before traffic changes) refuses (Refused, one line) when a
    present instance cannot say its sockets.

    The process's own identity (node, Pid, Start_time_sec) is not a key: it changes with a
    reload, so a gate before and a gate after would not meet on it, and a file per process
    would pile up. It serves to refuse two instances that are the same process."""
    group = api if isinstance(api, Haproxies) else Haproxies.single(api)
    seen = group.each(_seen, names=group.names)
    addresses = {i.name: address_key(str(i.runtime_api)) for i in group.instances}
    _refuse_duplicates(group, seen, addresses)
    if strict:
        for name in group.present:
            found = seen[name]
            if found.identity is None or not found.sockets:
                where = group.instance(name).runtime_api
                which = f"{name} at {where}" if len(group.names) > 1 else f"at {where}"
                raise Refused(
                    f"cannot tell which gate lock is that of the HAProxy {which} ({found.why}):"
                    " no other gate's lock can be ruled out, so nothing changes; run again"
                )
    keys = set(addresses.values())
    for found in seen.values():
        if found.identity is not None:
            keys |= {f"haproxy {found.identity.node} {s}" for s in found.sockets}
    return tuple(sorted(keys))


def _seen(name: str, api: RuntimeApi) -> _Seen:
    try:
        identity = InstanceIdentity.from_info(str(api.address), api.show_info())
    except (RuntimeApiError, ValueError) as exc:
        return _Seen(None, why=f"show info: {exc}")
    try:
        sockets = api.cli_sockets()
    except RuntimeApiError as exc:
        return _Seen(identity, why=f"show cli sockets: {exc}")
    return _Seen(identity, sockets)


class HaproxyLock:
    """The gate lock of every HAProxy of ``api``: the locks of :func:`lock_keys`, taken as
    one, and those of the keys read again once they are held.

    A gate whose HAProxy did not answer when it read the keys (a Runtime API timeout, a
    restart) holds only its address's key, which a gate at another address of the same
    HAProxy does not share: both would run. So the keys are read again right after the
    lock is taken, and strictly in :meth:`verify` (before traffic changes): a key not held
    yet is taken then, without waiting (LockHeld when another gate holds it), and a present
    instance that cannot say its sockets then is refused."""

    def __init__(self, lock_dir: Path, api: AnyHaproxy) -> None:
        self.lock_dir = lock_dir
        self.api = api
        self._lock: GateLock | GroupLock = lock_for_group(lock_dir, lock_keys(api))
        self._more: list[GateLock] = []

    @property
    def path(self) -> Path:
        return self._lock.path

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self) -> None:
        self._lock.acquire()
        try:
            self._take_more(strict=False)
        except BaseException:
            self.release()
            raise

    def verify(self) -> None:
        """LockLost when a held lock file was removed or replaced; the keys read again
        (strictly) and any not held yet taken. A lock not held has nothing to verify."""
        if not self.held:
            return
        self._lock.verify()
        for lock in self._more:
            lock.verify()
        self._take_more(strict=True)

    def release(self) -> None:
        for lock in reversed(self._more):
            lock.release()
        self._more = []
        self._lock.release()

    @contextmanager
    def hold(self) -> Iterator[HaproxyLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def _take_more(self, *, strict: bool) -> None:
        held = {str(lock.path) for lock in (*self._parts(), *self._more)}
        for key in lock_keys(self.api, strict=strict):
            lock = lock_for(self.lock_dir, key)
            if str(lock.path) not in held:
                lock.acquire()  # LockHeld: another gate reached this HAProxy another way
                self._more.append(lock)
                held.add(str(lock.path))

    def _parts(self) -> tuple[GateLock, ...]:
        return tuple(self._lock.locks) if isinstance(self._lock, GroupLock) else (self._lock,)


def _refuse_duplicates(
    group: Haproxies, seen: Mapping[str, _Seen], addresses: Mapping[str, str]
) -> None:
    names = list(group.names)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = group.instance(first), group.instance(second)
            same_address = addresses[first] == addresses[second]
            one, two = seen[first].identity, seen[second].identity
            same_process = (
                one is not None
                and two is not None
                and one.node == two.node
                and one.same_process(two)
                and seen[first].sockets == seen[second].sockets
            )
            if same_address or same_process:
                what = f" ({one.node or 'no node name'}, {one})" if same_process and one else ""
                raise SameHaproxy(
                    f"instances {first} ({a.runtime_api}) and {second} ({b.runtime_api}) are "
                    f"one HAProxy{what}: name it once in [instances]"
                )
