"""Several HAProxy instances (a keepalived pair, one per node, an edge tier) seen as one.

Each instance has its own Runtime API and its own routed URLs; a switch must move all of them
or none (``switch/transaction.py`` runs every step on every instance). This module reads them
together: what each one says, whether they agree (the group's lock is ``lock.py``'s). One
instance (the default, from the top-level settings) is a group of one: nothing changes for
single-instance users.

Reads and changes run on every instance at once (the group's threads, bounded); an instance
that cannot be reached is an error naming it, unless the run allows it to be missing
(``--allow-missing-instance``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pytest_bluegreen.errors import Refused
from pytest_bluegreen.frozen import Frozen, frozen

from .address import RuntimeApiAddress, TlsFiles
from .answers import RuntimeApiError, RuntimeApiUnreachable, ServerRef, ServerState, StatRow
from .runtime import RuntimeApi

if TYPE_CHECKING:
    import concurrent.futures

__all__ = [
    "DEFAULT_INSTANCE",
    "HAPROXY_UNREADABLE",
    "Haproxies",
    "Instance",
    "InstanceFailed",
    "InstancesDisagree",
]

T = TypeVar("T")
DEFAULT_INSTANCE = "haproxy"  # the name of the one instance of the top-level settings
# instances a step runs on at once: each waits on its HAProxy's answer, not on a core, so
# twenty instances take one round, a hundred four (docs/gate.md: the cost of a switch)
MAX_PARALLEL = 32
_WORKER = threading.local()  # ``group``: the group whose thread this is


def _in_worker(group: Haproxies, call: Callable[[], T]) -> T:
    """``call`` on one of ``group``'s threads, marked so that a call it makes to the group runs
    there (a nested call queued behind its own caller would wait forever). The mark goes with
    the call: a thread holding its group would keep the group's pool, hence itself, for good."""
    _WORKER.group = group
    try:
        return call()
    finally:
        _WORKER.group = None


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


# What reading HAProxy's live color or a switch's plan from the group can raise: an instance
# does not answer as it must (a RuntimeApiError, InstanceFailed among them), or the instances do
# not show one live color. ``except HAPROXY_UNREADABLE`` where either means "HAProxy cannot tell".
HAPROXY_UNREADABLE: tuple[type[RuntimeApiError], type[InstancesDisagree]] = (
    RuntimeApiError,
    InstancesDisagree,
)


class Haproxies:
    """The instances of one deployment, each with its Runtime API client: the one HAProxy
    type the gate, the switch, the lock, the bake and the metrics take. One HAProxy is a group
    of one (:meth:`single`); :class:`RuntimeApi` is the client of each member."""

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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @classmethod
    def single(cls, api: RuntimeApi, routed_api_url: str = "") -> Haproxies:
        """A group of one around an existing client (a test's, a fault-injecting proxy's)."""
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
        return self.run({name: partial(action, name, self.clients[name]) for name in chosen})

    def run(self, calls: Mapping[str, Callable[[], T]]) -> dict[str, T]:
        """Each instance's call (by name) at once, at most :data:`MAX_PARALLEL` at a time, on
        the group's own threads (made once, kept for the group's life: a switch's steps do not
        wait for new threads each time); results in the given order. Every call ends before
        this returns or raises: the first error in that order, a Runtime API error named
        after its instance. One call, or a call from one of the group's threads, runs here."""
        names = list(calls)
        if len(names) <= 1 or getattr(_WORKER, "group", None) is self:
            results, errors = _here(calls)
        else:
            results, errors = self._on_threads(calls)
        for name in names:  # in the given order
            if name in errors:
                error = errors[name]
                if not isinstance(error, RuntimeApiError) or isinstance(error, InstanceFailed):
                    raise error
                if self.several:
                    raise InstanceFailed(name, error) from error
                raise error
        return {name: results[name] for name in names}

    def _on_threads(
        self, calls: Mapping[str, Callable[[], T]]
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        import concurrent.futures  # noqa: PLC0415 - its logger costs every test a little

        results: dict[str, T] = {}
        errors: dict[str, BaseException] = {}
        pool = self._threads()
        futures = {pool.submit(_in_worker, self, call): name for name, call in calls.items()}
        try:
            for future in concurrent.futures.as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except BaseException as exc:  # re-raised by run(), named after its instance
                    errors[futures[future]] = exc
        except BaseException:
            # this thread interrupted (a Ctrl-C): every call ends before anything else (a
            # revert) talks to these instances
            concurrent.futures.wait(futures)
            raise
        return results, errors

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        import concurrent.futures  # noqa: PLC0415 - as in _on_threads()

        with self._lock:
            if self._pool is None:
                workers = min(MAX_PARALLEL, len(self.instances))
                self._pool = concurrent.futures.ThreadPoolExecutor(workers, "bluegreen-lb")
            return self._pool

    def close(self) -> None:
        """The group's threads end (they also do when the group is dropped)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

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


def _here(calls: Mapping[str, Callable[[], T]]) -> tuple[dict[str, T], dict[str, BaseException]]:
    """Each call in turn, in this thread."""
    results: dict[str, T] = {}
    errors: dict[str, BaseException] = {}
    for name, call in calls.items():
        try:
            results[name] = call()
        except BaseException as exc:  # re-raised by run(), named after its instance
            errors[name] = exc
    return results, errors
