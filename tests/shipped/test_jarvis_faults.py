"""The Jarvis app's faults (docker/jarvis/jarvis/faults.py), in process: the file is loaded on
its own (the API's database clients need not be installed). The routed-only fault's build,
``v1.11.0-routedflaky`` behind a real HAProxy: tests/stack/test_docker_stack.py
``test_a_routed_only_fault_passes_every_direct_and_preview_request``; the faults injected from
the environment, deployed by ``bluegreen drill --power``: tests/stack/test_docker_stack.py
``test_the_power_drill_finds_the_smallest_fault_the_gate_catches``."""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import threading
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.stack import ROOT

FAULTS = ROOT / "docker" / "jarvis" / "jarvis" / "faults.py"
COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"


@pytest.fixture(scope="module")
def faults() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jarvis_faults_under_test", FAULTS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exactly_every_20th_routed_request_fails_and_nothing_else(faults: ModuleType) -> None:
    """Routed requests interleaved with direct ones (no header), preview ones and a value
    nobody sends: only routed ones count, so the 20th, 40th, ... routed request fails."""
    fault = faults.RoutedFlaky()
    failed: dict[str | None, list[int]] = {"routed": [], "preview": [], None: [], "Routed": []}
    for n in range(1, 201):
        for route in ("preview", None, "routed", "Routed"):
            if fault.fails(route):
                failed[route].append(n)
    assert failed == {"routed": [20, 40, 60, 80, 100, 120, 140, 160, 180, 200],
                      "preview": [], None: [], "Routed": []}  # fmt: skip
    assert faults.ROUTED_FLAKY_EVERY == 20


@pytest.mark.parametrize("route", ["preview", None])
def test_direct_and_preview_requests_never_fail(faults: ModuleType, route: str | None) -> None:
    fault = faults.RoutedFlaky()
    assert not any(fault.fails(route) for _ in range(1000))
    assert [fault.fails("routed") for _ in range(20)] == [False] * 19 + [True]  # none counted


# --- the faults injected from the environment -------------------------------------------------


def picks(share: Any, n: int) -> list[int]:
    """The 1-based numbers of the events ``share`` (an EvenShare) picks among the first n."""
    return [i for i in range(1, n + 1) if share.pick()]


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1 / 3, 0.5, 0.75])
def test_a_share_picks_exactly_its_rounded_count_at_every_point(
    faults: ModuleType, rate: float
) -> None:
    """Of the first n events, round(n * rate) with halves up -- at every n, not on average --
    so a check of a few hundred requests sees its share, and the picks are evenly apart."""
    share = faults.EvenShare(rate)
    picked = 0
    for n in range(1, 2001):
        picked += share.pick()
        assert picked == math.floor(n * rate + 0.5 + 1e-9), (n, picked)
    gaps = {b - a for a, b in itertools.pairwise(picks(faults.EvenShare(rate), 2000))}
    assert gaps <= {math.floor(1 / rate), math.ceil(1 / rate)}, gaps


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 500)])
def test_none_and_all(faults: ModuleType, rate: float, expected: int) -> None:
    assert len(picks(faults.EvenShare(rate), 500)) == expected


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("nan")])
def test_a_share_outside_zero_to_one_is_refused(faults: ModuleType, rate: float) -> None:
    with pytest.raises(ValueError, match=r"a share is in 0\.\.1"):
        faults.EvenShare(rate)


def test_threads_together_get_exactly_the_share(faults: ModuleType) -> None:
    """The API serves each request on its own thread: 8 threads picking 2,500 times each
    share one count, never one pick lost or doubled."""
    share = faults.EvenShare(0.01)
    counts = [0] * 8
    start = threading.Barrier(8)

    def run(index: int) -> None:
        start.wait()
        counts[index] = sum(share.pick() for _ in range(2500))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(counts) == 200  # 1% of 20,000


def test_faults_from_the_environment(faults: ModuleType) -> None:
    injected = faults.InjectedFaults.from_environ(
        {
            faults.LATENCY_MS: "12.5",
            faults.LATENCY_SHARE: "0.1",
            faults.ERROR_RATE: "0.02",
        }
    )
    delays = [injected.delay() for _ in range(100)]
    assert sorted(set(delays)) == [0.0, 0.0125]
    assert delays.count(0.0125) == 10  # a tail: every 10th request
    assert [i for i, d in enumerate(delays, 1) if d] == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert sum(injected.fails() for _ in range(100)) == 2
    assert injected.any
    assert injected.describe() == (
        "+12.5 ms on 10% of the /api/* request(s); HTTP 500 on 2.00% of /api/* requests"
    )


def test_no_variable_no_fault(faults: ModuleType) -> None:
    """Nothing set, or the compose file's defaults: no request delayed, none failed."""
    for environ in (
        {},
        {faults.LATENCY_MS: "0", faults.LATENCY_SHARE: "1", faults.ERROR_RATE: "0"},
    ):
        injected = faults.InjectedFaults.from_environ(environ)
        assert not injected.any
        assert injected.describe() == "none"
        assert not any(injected.delay() or injected.fails() for _ in range(1000))


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JARVIS_FAULT_LATENCY_MS", "slow", "JARVIS_FAULT_LATENCY_MS='slow' is not a number"),
        ("JARVIS_FAULT_LATENCY_MS", "-5", "JARVIS_FAULT_LATENCY_MS='-5' is not in 0..60000"),
        ("JARVIS_FAULT_LATENCY_SHARE", "1.5", "JARVIS_FAULT_LATENCY_SHARE='1.5' is not in 0..1"),
        ("JARVIS_FAULT_ERROR_RATE", "nan", "JARVIS_FAULT_ERROR_RATE='nan' is not in 0..1"),
        ("JARVIS_FAULT_ERROR_RATE", "5%", "JARVIS_FAULT_ERROR_RATE='5%' is not a number"),
    ],
)
def test_a_value_that_is_none_names_its_variable(
    faults: ModuleType, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        faults.InjectedFaults.from_environ({variable: value})


@pytest.mark.parametrize("color", ["blue", "green"])
def test_the_compose_file_passes_each_colors_own_faults_to_its_backend(
    faults: ModuleType, color: str
) -> None:
    """``<COLOR>_FAULT_...`` in the deploy's environment reach that color's backend only (the
    frontend proxies /api/* to it), with defaults that inject nothing."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    prefix = color.upper()
    assert {
        k: v for k, v in services[f"{color}-backend"]["environment"].items() if "FAULT" in k
    } == {
        faults.LATENCY_MS: f"${{{prefix}_FAULT_LATENCY_MS:-0}}",
        faults.LATENCY_SHARE: f"${{{prefix}_FAULT_LATENCY_SHARE:-1}}",
        faults.ERROR_RATE: f"${{{prefix}_FAULT_ERROR_RATE:-0}}",
    }
    others = [
        name
        for name, service in services.items()
        if name != f"{color}-backend"
        and any(prefix + "_FAULT" in str(v) for v in (service.get("environment") or {}).values())
    ]
    assert others == []
