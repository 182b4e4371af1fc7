"""The Jarvis app's routed-only fault (docker/jarvis/jarvis/faults.py), in process: the file is
loaded on its own (the API's database clients need not be installed). The build that carries it,
``v1.11.0-routedflaky`` behind a real HAProxy: tests/stack/test_docker_stack.py
``test_a_routed_only_fault_passes_every_direct_and_preview_request``."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.support.stack import ROOT

FAULTS = ROOT / "docker" / "jarvis" / "jarvis" / "faults.py"


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
