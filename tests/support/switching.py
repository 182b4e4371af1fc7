"""Switching a Stack back and forth under a bounded load (zero-downtime test and benchmark)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bluegreen import switch
from pytest_bluegreen.load import LoadResult, Sample, run_load
from pytest_bluegreen.settings import Settings, resolve

from .stack import Stack, wait_for


def stack_settings(stack: Stack, **overrides: Any) -> Settings:
    folder = stack.workdir / "settings"
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**overrides))
    return resolve({}, {}, {}, Path(folder))


@dataclass
class SwitchRun:
    load: LoadResult
    switches: list[switch.SwitchResult] = field(default_factory=list)

    def latencies_ms(self) -> list[float]:
        """Per switch: from the start of the switch to the load's first answer from the target."""
        out = []
        for result in self.switches:
            first = self.load.first_from(result.plan.target, result.started)
            if first is not None:
                out.append((first.end - result.started) * 1000)
        return out


def switch_under_load(
    stack: Stack,
    *,
    switches: int,
    total: int,
    duration: float,
    concurrency: int = 6,
    min_between: int = 200,
) -> SwitchRun:
    """Switch blue<->green ``switches`` times while a bounded load runs on the routed URL.

    Between two switches at least ``min_between`` more requests are answered, so every switch
    happens under traffic. The load stops after the last switch (or its own bounds).
    """
    settings = stack_settings(stack, verify_responses=1, drain_timeout=10)
    api = stack.api()
    stop = threading.Event()
    holder: dict[str, LoadResult] = {}

    def load() -> None:
        holder["result"] = run_load(
            f"{stack.routed_url}/api/probe",
            total=total,
            duration=duration,
            concurrency=concurrency,
            stop=stop,
            on_sample=progress.count,
        )

    progress = _Progress()
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    results: list[switch.SwitchResult] = []
    try:
        target = "green"
        for _ in range(switches):
            progress.wait_for_more(min_between, thread)
            plan = switch.plan(api, settings.topology, target, settings.switching.full_weight)
            results.append(switch.apply(api, plan, settings.switching, settings.topology))
            target = settings.topology.other(target)
        progress.wait_for_more(min_between, thread, load_may_end=True)
    finally:
        stop.set()
        thread.join(duration + 30)
    return SwitchRun(holder["result"], results)


class _Progress:
    """Counts answered requests as the load reports them."""

    def __init__(self) -> None:
        self.answered = 0
        self.last = 0
        self._lock = threading.Lock()

    def count(self, sample: Sample) -> None:
        with self._lock:
            self.answered += 1

    def wait_for_more(
        self, count: int, thread: threading.Thread, *, load_may_end: bool = False
    ) -> None:
        target = self.last + count

        def enough() -> bool:
            if not thread.is_alive():
                if load_may_end:
                    return True
                raise RuntimeError("the load stopped before the switches were done")
            return self.answered >= target

        wait_for(enough, 30, f"{count} more answered requests", interval=0.002)
        self.last = self.answered
