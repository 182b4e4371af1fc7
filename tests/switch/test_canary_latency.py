"""A canary step compares the two colors' latency on the same traffic, read from their own
histograms in a real Prometheus (``canary_latency``, ``canary_latency_rule``): a new color
60 ms slower on every routed request fails the first step and every weight goes back; one as
fast passes. The histograms' arithmetic without Prometheus: test_canary_plan.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.local.prometheus import LocalPrometheus
from tests.support.cli import clean_environ
from tests.support.gate import CHECKS, WatchedGate
from tests.support.infra import require_infra
from tests.support.prometheus import Job, config, local, prometheus_binary, wait_scraped
from tests.support.stack import Backend, Stack, wait_for
from tests.support.switching import LoadProcess

LATENCY = 'backend_request_duration_seconds_bucket{color="{color}",route="routed"}'


@pytest.fixture(scope="module")
def prometheus(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    color_backends: tuple[Backend, Backend],
) -> Iterator[LocalPrometheus]:
    """A real Prometheus scraping both colors' backends every second."""
    require_infra(
        pytestconfig,
        prometheus_binary() is not None,
        "prometheus is not installed (apt-get install prometheus)",
    )
    blue, green = color_backends
    jobs = [Job("backend", {f"127.0.0.1:{blue.port}": {}, f"127.0.0.1:{green.port}": {}})]
    running = local(tmp_path_factory.mktemp("prometheus"), config(jobs))
    running.start()
    try:
        wait_scraped(running, jobs=1)
        yield running
    finally:
        running.stop()


def canary_gate(stack: Stack, prometheus: LocalPrometheus, folder: Path) -> WatchedGate:
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(
            prometheus_url=prometheus.url,
            canary_latency=LATENCY,
            canary_latency_rule="p(95) <= live * 1.25 + 10",
            canary_step_seconds=4,
            canary_min_requests=20,
            canary_sticky=False,
        )
    )
    (folder / "test_checks.py").write_text(CHECKS)
    return WatchedGate(
        folder, "--env", "green", "--switch", "-m", "quick", "--canary", "25",
        env=clean_environ(),
    )  # fmt: skip


@pytest.mark.parametrize("slower_ms", [60, 0], ids=["slower", "as-fast"])
def test_a_slower_color_is_caught_by_its_histogram(
    stack: Stack, prometheus: LocalPrometheus, slower_ms: int
) -> None:
    if slower_ms:
        stack.backend("green").control(delay_ms=slower_ms)
    users = LoadProcess(f"{stack.routed_url}/api/echo", 8000, 60, 4, pause=0.002)
    wait_for(lambda: users.answered_at_least(20), 10, "the load to begin")
    try:
        gate = canary_gate(stack, prometheus, stack.workdir / "gate")
        code = gate.finish(120)
    finally:
        users.finish(30)
    if slower_ms:
        assert code == 11, gate.text
        assert re.search(r"latency misses 'p\(95\) <= live \* 1\.25 \+ 10': \d+ ms", gate.text)
        assert stack.served_color() == "blue"
    else:
        assert code == 0, gate.text
        assert stack.served_color() == "green"
