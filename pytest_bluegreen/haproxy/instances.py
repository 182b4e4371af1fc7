"""Several HAProxy instances (a keepalived pair, one per node, an edge tier) seen as one.

Each instance has its own Runtime API and its own routed URLs; a switch must move all of them
or none (``switch.py`` runs every step on every instance). This module reads them together:
what each one says, whether they agree, and the group's lock. One instance (the default, from
the top-level settings) is a group of one: nothing changes for single-instance users.

Reads run on every instance at once (threads, bounded); an instance that cannot be reached is
an error naming it, unless the run allows it to be missing (``--allow-missing-instance``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from pytest_bluegreen.errors import Refused, UsageError
from pytest_bluegreen.frozen import Frozen, frozen

from .runtime import (
    RuntimeApi,
    RuntimeApiAddress,
    RuntimeApiError,
    RuntimeApiUnreachable,
    ServerRef,
    ServerState,
    StatRow,
    TlsFiles,
)

if TYPE_CHECKING:  # every session builds its Instances; only a gate reads identities, locks
    from pytest_bluegreen.record.state import GateLock, GroupLock
    from pytest_bluegreen.switch.journal import InstanceIdentity

__all__ = [
    "DEFAULT_INSTANCE",
    "AnyHaproxy",
    "Haproxies",
    "HaproxyLock",
    "Instance",
    "InstanceFailed",
    "InstancesDisagree",
    "SameHaproxy",
    "lock_keys",
]

T = TypeVar("T")
DEFAULT_INSTANCE = "haproxy"  # the name of the one instance of the top-level settings
MAX_PARALLEL = 8


@frozen
class Instance(Frozen):
    """One HAProxy: its Runtime API, its routed URLs, its server-state file."""

    name: str
    runtime_api: RuntimeApiAddress
    routed_api_url: str
    routed_frontend_url: str | None = None
    state_file: Path | None = None
    tls: TlsFiles | None = None
    timeout: float = 2.0

    def client(self) -> RuntimeApi:
        return RuntimeApi(self.runtime_api, self.timeout, self.tls)


class InstancesDisagree(Refused):
    """The instances do not show the same live color (or one of them shows none)."""

    def __init__(self, lives: Mapping[str, str | None]) -> None:
        self.lives = dict(lives)
        shown = ", ".join(f"{name} {live or 'no single color'}" for name, live in lives.items())
        super().__init__(
            f"instances disagree: {shown}; bring them in line with 'bluegreen recover' "
            "(or 'bluegreen recover --to COLOR')"
        )


class InstanceFailed(RuntimeApiError):
    """A Runtime API error on one instance of several: the message names the instance."""

    def __init__(self, name: str, cause: RuntimeApiError) -> None:
        self.instance = name
        self.cause = cause
        super().__init__(cause.command, cause.answer, f"{name}: {cause}")


class Haproxies:
    """The instances of one deployment, each with its Runtime API client."""

    def __init__(
        self,
        instances: Sequence[Instance],
        clients: Mapping[str, RuntimeApi] | None = None,
        *,
        missing_ok: Iterable[str] = (),
    ) -> None:
        if not instances:
            raise ValueError("at least one HAProxy instance is needed")
        self.instances = tuple(instances)
        given = dict(clients or {})
        self.clients = {i.name: given.get(i.name) or i.client() for i in self.instances}
        self.missing_ok = frozenset(missing_ok)
        self.skipped: frozenset[str] = frozenset()

    @classmethod
    def single(cls, api: RuntimeApi, routed_api_url: str = "") -> Haproxies:
        """A group of one around an existing client (tests, benchmarks, old callers)."""
        instance = Instance(DEFAULT_INSTANCE, api.address, routed_api_url)
        return cls([instance], {DEFAULT_INSTANCE: api})

    # -- shape -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.instances)

    @property
    def several(self) -> bool:
        return len(self.instances) > 1

    @property
    def first(self) -> RuntimeApi:
        return self.clients[self.instances[0].name]

    def instance(self, name: str) -> Instance:
        for one in self.instances:
            if one.name == name:
                return one
        raise KeyError(name)

    def label(self, name: str, text: str) -> str:
        """``text`` prefixed with the instance's name when there are several."""
        return f"{name}: {text}" if self.several else text

    # -- running on every instance -----------------------------------------------------------
    def each(
        self, action: Callable[[str, RuntimeApi], T], *, names: Iterable[str] | None = None
    ) -> dict[str, T]:
        """``action(name, client)`` on every present instance (or ``names``) at once; the first
        Runtime API error, named after its instance, is raised once all have finished."""
        chosen = list(names) if names is not None else list(self.present)
        if len(chosen) == 1:  # no thread for the common case
            name = chosen[0]
            try:
                return {name: action(name, self.clients[name])}
            except InstanceFailed:
                raise
            except RuntimeApiError as exc:
                raise (InstanceFailed(name, exc) if self.several else exc) from exc
        results: dict[str, T] = {}
        errors: dict[str, BaseException] = {}
        workers = min(MAX_PARALLEL, len(chosen))
        import concurrent.futures  # noqa: PLC0415 - its logger costs every test a little

        with concurrent.futures.ThreadPoolExecutor(workers, "bluegreen-lb") as pool:
            futures = {pool.submit(action, n, self.clients[n]): n for n in chosen}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except BaseException as exc:  # re-raised below, named after its instance
                    errors[name] = exc
        for name in chosen:  # in the configured order
            if name in errors:
                error = errors[name]
                if isinstance(error, RuntimeApiError) and not isinstance(error, InstanceFailed):
                    raise InstanceFailed(name, error) from error
                raise error
        return {name: results[name] for name in chosen}

    def reachable(self) -> tuple[list[str], dict[str, str]]:
        """(the instances that answer, the ones that do not with why)."""

        def probe(name: str, api: RuntimeApi) -> str | None:
            try:
                api.show_info()
            except RuntimeApiUnreachable as exc:
                return str(exc)
            return None

        found = self.each(probe, names=self.names)
        up = [n for n, p in found.items() if p is None]
        return up, {n: p for n, p in found.items() if p is not None}

    # -- which instances take part ----------------------------------------------------------
    @property
    def present(self) -> tuple[str, ...]:
        """The instances this run reads and changes: all but those left out as missing."""
        return tuple(n for n in self.names if n not in self.skipped)

    def leave_out_missing(self) -> list[str]:
        """Leave out the allowed-missing instances that do not answer; the ones left out."""
        if not self.missing_ok:
            return []
        _, down = self.reachable()
        left_out = [n for n in self.names if n in self.missing_ok and n in down]
        if len(left_out) == len(self.names):
            raise Refused("every HAProxy instance is missing: there is nothing to switch")
        self.skipped = frozenset(left_out)
        return left_out

    # -- per instance ------------------------------------------------------------------------
    def states_by_instance(
        self, refs: Sequence[ServerRef], names: Iterable[str] | None = None
    ) -> dict[str, dict[ServerRef, ServerState]]:
        return self.each(lambda name, api: api.server_states(refs), names=names)

    def stat_by_instance(self, names: Iterable[str] | None = None) -> dict[str, list[StatRow]]:
        return self.each(lambda name, api: api.show_stat(), names=names)

    # -- read as one (what a single RuntimeApi answers, over every present instance) ----------
    def require_admin(self) -> None:
        self.each(lambda name, api: api.require_admin())

    def server_states(self, refs: Sequence[ServerRef]) -> dict[ServerRef, ServerState]:
        """Each server's state, as the group serves it: where any instance sends it traffic,
        that instance's state (a deploy guard must see it), else the first instance's."""
        every = self.states_by_instance(refs)
        merged: dict[ServerRef, ServerState] = {}
        for ref in refs:
            states = [by[ref] for by in every.values()]
            merged[ref] = next((s for s in states if s.takes_traffic), states[0])
        return merged

    def show_stat(self) -> list[StatRow]:
        """Every present instance's rows (sums over them count the group's traffic)."""
        return [row for rows in self.stat_by_instance().values() for row in rows]

    def execute(self, command: str) -> str:
        """A read command on every present instance, each answer under its name when several."""
        texts = self.each(lambda name, api: api.execute(command))
        if len(texts) == 1:
            return next(iter(texts.values()))
        return "\n".join(f"# {name}\n{text}" for name, text in texts.items())

    def version(self) -> str:
        """The first present instance's HAProxy version."""
        return self.clients[self.present[0]].version()

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every instance's Runtime API address, sorted: the order locks are taken in."""
        return tuple(sorted({str(i.runtime_api) for i in self.instances}))


AnyHaproxy: TypeAlias = RuntimeApi | Haproxies  # one Runtime API, or every instance as one


# --- the lock's keys ---------------------------------------------------------------------------


class SameHaproxy(UsageError):
    """Two instances of the group are one HAProxy process (reached at two addresses)."""


@frozen
class _Seen(Frozen):
    """What an instance says about itself: its process, its Runtime API sockets."""

    identity: InstanceIdentity | None  # None: it does not answer
    sockets: tuple[str, ...] = ()  # show cli sockets; () when it cannot be read
    why: str = ""  # why the identity or the sockets could not be read


def lock_keys(api: AnyHaproxy, *, strict: bool = False) -> tuple[str, ...]:
    """The keys of the gate lock of every HAProxy of ``api`` (``state.lock_for_group``); one
    HAProxy named twice in the group is refused (SameHaproxy, one line).

    One HAProxy can be reached at several addresses (``localhost:P`` and ``127.0.0.1:P``, its
    unix socket and its TCP socket), and a reload gives it a new process (a new Pid and
    Start_time_sec) while a gate runs. Two gates on it must still share a lock, so the keys
    are what stays when it reloads, the same whichever address asks:

    - the address this gate connects to, spelled one way (``state.address_key``: a socket's
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
    from pytest_bluegreen.record.state import address_key  # noqa: PLC0415 - a gate's, not every session's

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
    from pytest_bluegreen.switch.journal import InstanceIdentity  # noqa: PLC0415 - a gate's, not every session's

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
        from pytest_bluegreen.record.state import lock_for_group  # noqa: PLC0415 - a gate's, not every session's

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
        from pytest_bluegreen.record.state import lock_for  # noqa: PLC0415 - a gate's, not every session's

        held = {str(lock.path) for lock in (*self._parts(), *self._more)}
        for key in lock_keys(self.api, strict=strict):
            lock = lock_for(self.lock_dir, key)
            if str(lock.path) not in held:
                lock.acquire()  # LockHeld: another gate reached this HAProxy another way
                self._more.append(lock)
                held.add(str(lock.path))

    def _parts(self) -> tuple[GateLock, ...]:
        from pytest_bluegreen.record.state import GroupLock  # noqa: PLC0415 - a gate's, not every session's

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
