"""Switching a Stack back and forth under a bounded load (zero-downtime test and benchmark)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.judge.load import LoadResult, Sample, run_load
from pytest_bluegreen.settings import Settings, resolve
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal

from .stack import Stack, wait_for


def stack_settings(stack: Stack, **overrides: Any) -> Settings:
    folder = stack.workdir / "settings"
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**overrides))
    return resolve({}, {}, {}, Path(folder))


@dataclass(frozen=True)
class Switched:
    """One switch: which kind, to what, when it began (monotonic)."""

    kind: str  # "gate" (switch.apply, journaled when asked) or "raw" (two weight commands)
    target: str
    started: float
    result: switch.SwitchResult | None = None


@dataclass
class SwitchRun:
    load: LoadResult
    switches: list[switch.SwitchResult] = field(default_factory=list)
    done: list[Switched] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.load.failed)

    def latencies_ms(self, kind: str = "gate") -> list[float]:
        """Per switch: from its start to the first answer from the target seen by the load."""
        out = []
        for one in self.done:
            first = self.load.first_from(one.target, one.started)
            if one.kind == kind and first is not None:
                out.append((first.end - one.started) * 1000)
        return out


def switch_under_load(
    stack: Stack,
    *,
    switches: int,
    total: int,
    duration: float,
    concurrency: int = 6,
    min_between: int = 200,
    journal: Path | None = None,
    raw_every_other: bool = False,
) -> SwitchRun:
    """Switch blue<->green ``switches`` times while a bounded load runs on the routed URL.

    Between two switches at least ``min_between`` more requests are answered, so every switch
    happens under traffic. The load stops after the last switch (or its own bounds).
    ``journal``: the gate's switches are journaled there. ``raw_every_other``: every second
    switch is two bare ``set server ... weight`` commands instead, the floor to compare with.
    (Several instances: ``tests/support/tier.py`` and ``benchmarks/switch_under_load.py
    --instances``.)
    """
    settings = stack_settings(stack, verify_responses=1, drain_timeout=10)
    raw = stack.api()  # the floor's client
    haproxies = Haproxies.single(raw)
    loads = [LoadProcess(f"{stack.routed_url}/api/probe", total, duration, concurrency)]
    progress = _Progress(loads, total)
    journaled = Journal(journal) if journal is not None else None
    results: list[switch.SwitchResult] = []
    done: list[Switched] = []
    topology = settings.topology
    try:
        target = "green"
        for number in range(switches):
            progress.wait_for_more(min_between)
            if raw_every_other and number % 2:
                started = time.monotonic()
                for ref in topology.servers(target):
                    raw.set_weight(ref, settings.switching.full_weight)
                for ref in topology.servers(topology.other(target)):
                    raw.set_weight(ref, 0)
                done.append(Switched("raw", target, started))
            else:
                if journaled is not None:
                    journaled.prepare()  # as a gate does under its lock, before its switch
                plan = switch.plan(haproxies, topology, target, settings.switching.full_weight)
                result = switch.apply(
                    haproxies,
                    plan,
                    settings.switching,
                    topology,
                    journal=journaled,
                )
                results.append(result)
                done.append(Switched("gate", target, result.started, result))
            target = topology.other(target)
        progress.wait_for_more(min_between, load_may_end=True)
    finally:
        loaded = [load.finish(duration + 30) for load in loads]
    return SwitchRun(loaded[0], results, done)


class LoadProcess:
    """The bounded load in a process of its own, as real clients are: it does not share the
    switch's interpreter (threads in one would hold the switch up at every GIL switch)."""

    def __init__(
        self, url: str, total: int, duration: float, concurrency: int, pause: float = 0.0
    ) -> None:
        """``pause``: each connection waits that long after an answer (``run_load``'s)."""
        self.pause = pause
        self.result: LoadResult | None = None
        context = multiprocessing.get_context("fork")
        self.answered = context.Value("i", 0)
        self.stop = context.Event()
        self.results: multiprocessing.Queue[LoadResult] = context.Queue()
        self.process = context.Process(
            target=self._run, args=(url, total, duration, concurrency), daemon=True
        )
        self.process.start()

    def _run(self, url: str, total: int, duration: float, concurrency: int) -> None:
        stop = threading.Event()

        def watch() -> None:
            self.stop.wait(duration + 5)
            stop.set()

        def count(sample: Sample) -> None:
            with self.answered.get_lock():
                self.answered.value += 1

        threading.Thread(target=watch, daemon=True).start()
        result = run_load(
            url, total=total, duration=duration, concurrency=concurrency, stop=stop,
            on_sample=count, pause=self.pause,
        )  # fmt: skip
        self.results.put(result)

    def answered_at_least(self, count: int) -> bool:
        return int(self.answered.value) >= count

    def finish(self, timeout: float) -> LoadResult:
        """The load stopped and its result (the same result when asked again)."""
        if self.result is None:
            self.stop.set()
            self.result = self.results.get(timeout=timeout)
            self.process.join(timeout)
        return self.result


class _Progress:
    """Counts answered requests as the load process reports them."""

    def __init__(self, loads: list[LoadProcess], total: int) -> None:
        self.loads = loads
        self.total = total  # every load's requests
        self.last = 0

    @property
    def answered(self) -> int:
        return sum(int(load.answered.value) for load in self.loads)

    def wait_for_more(self, count: int, *, load_may_end: bool = False) -> None:
        target = self.last + count

        def enough() -> bool:
            # a finished load's process lives on until its result is read: count, not liveness
            finished = self.answered >= self.total or not all(
                load.process.is_alive() for load in self.loads
            )
            if finished and load_may_end:
                return True
            if finished:
                raise RuntimeError("the load stopped before the switches were done")
            return self.answered >= target

        wait_for(enough, 30, f"{count} more answered requests", interval=0.002)
        self.last = self.answered
