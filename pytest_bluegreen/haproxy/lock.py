"""The gate's lock: one per HAProxy, so that two gates never change one HAProxy at once.

The lock belongs to the HAProxy, not to a settings file: every gate and every ``bluegreen``
command on this host that changes that HAProxy takes the same lock, a file per key in
``lock_dir`` (:func:`lock_keys` says which keys name one HAProxy, however its address is
spelled; :class:`HaproxyLock` takes those of every HAProxy of a group, all or none). The lock
files themselves, and why another local user cannot take them over: :mod:`.lockfile` (its
names are handed on here).

Only a gate loads this module (``haproxy/instances.py``, which every session loads, does not).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pytest_bluegreen.errors import Refused, UsageError
from pytest_bluegreen.frozen import Frozen, frozen

from .answers import RuntimeApiError
from .identity import InstanceIdentity
from .instances import Haproxies
from .lockfile import (
    HOLDER_SIZE,
    LOCK_DIR_HINT,
    LOCK_DIR_MODE,
    LOCK_FILE_MODE,
    PARENT_DIR_MODE,
    GateLock,
    GroupLock,
    LockHeld,
    LockLost,
    UnsafeLock,
    open_lock_file,
    require_own_plain_file,
)
from .runtime import RuntimeApi

__all__ = [
    "HOLDER_SIZE",
    "LOCK_DIR_HINT",
    "LOCK_DIR_MODE",
    "LOCK_FILE_MODE",
    "PARENT_DIR_MODE",
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
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5:
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


def lock_keys(group: Haproxies, *, strict: bool = False) -> tuple[str, ...]:
    """The keys of the gate lock of every HAProxy of ``group`` (:func:`lock_for_group`); one
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
    """The gate lock of every HAProxy of ``group``: the locks of :func:`lock_keys`, taken as
    one, and those of the keys read again once they are held.

    A gate whose HAProxy did not answer when it read the keys (a Runtime API timeout, a
    restart) holds only its address's key, which a gate at another address of the same
    HAProxy does not share: both would run. So the keys are read again right after the
    lock is taken, and strictly in :meth:`verify` (before traffic changes): a key not held
    yet is taken then, without waiting (LockHeld when another gate holds it), and a present
    instance that cannot say its sockets then is refused."""

    def __init__(self, lock_dir: Path, group: Haproxies) -> None:
        self.lock_dir = lock_dir
        self.group = group
        self._lock: GateLock | GroupLock = lock_for_group(lock_dir, lock_keys(group))
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
        for key in lock_keys(self.group, strict=strict):
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
