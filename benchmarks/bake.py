"""Benchmark: how fast a failed bake returns traffic to the old color.

Each round is a real gate (a pytest subprocess, as a user runs it) against a real HAProxy in
front of two real backends, under a bounded load from a process of its own: ``--env green
--switch --bake`` with a ``post`` check that fails, so the bake's first interval fails and the
gate switches back to blue. The latency of one round is from the end of the failing interval
(when the bake reached its verdict, read from the round's verdict.json) to the load's first
answer from blue after it. Prints ``switch-back p50=X ms p99=Y ms`` (goal p99 <= 100 ms) and
``failed=N`` (goal 0: the switch back, like the switch, drops no request).

Asserts nothing. Run from the repository root:
    .venv/bin/python -m benchmarks.bake [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_bluegreen.judge.load import LoadResult, percentile
from tests.support.stack import Stack, StackFactory, backends, haproxy_binary, make_cert, wait_for
from tests.support.switching import LoadProcess

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http):
    assert http.get("/health").status_code == 200


@pytest.mark.post
def test_the_release_misbehaves_after_the_switch(routed_http):
    assert routed_http.get("/health").status_code == 599, "the bake's failing post check"
"""


def round_(stack: Stack, folder: Path) -> float:
    """One gate whose bake fails; the end of its failing interval (monotonic seconds)."""
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(bake_interval=0.2, scale_down_delay=0, drain_timeout=10)
    )
    (folder / "test_checks.py").write_text(CHECKS)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    gate = subprocess.run(
        [*command, "--env", "green", "--switch", "--bake", "1"],
        check=False,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if gate.returncode != 11:
        raise RuntimeError(f"the gate exited {gate.returncode}, not 11:\n{gate.stdout}")
    failing = json.loads((folder / "reports" / "verdict.json").read_text())["bake"]["timeline"][-1]
    wall_minus_monotonic = time.time() - time.monotonic()
    return float(failing["started"]) + float(failing["seconds"]) - wall_minus_monotonic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-bake-"))
    try:
        cert = make_cert(workdir / "cert.pem")
        for blue, green in backends():
            factory = StackFactory(workdir / "stack", cert, blue, green)
            try:
                load, ends = measure(factory(), workdir, args.rounds)
            finally:
                factory.close()
            report(load, ends)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure(stack: Stack, workdir: Path, rounds: int) -> tuple[LoadResult, list[float]]:
    """The rounds under a bounded load; the load and each round's failing interval end."""
    duration = rounds * 10 + 30
    load = LoadProcess(f"{stack.routed_url}/api/probe", 2_000_000, duration, 4)
    wait_for(
        lambda: load.answered.value > 100,
        30,
        "the load's first answers",
        watch=[load.process],
    )
    ends = []
    try:
        for number in range(rounds):
            ends.append(round_(stack, workdir / f"round-{number}"))
    finally:
        result = load.finish(duration + 30)
    return result, ends


def report(load: LoadResult, ends: list[float]) -> None:
    latencies = []
    for end in ends:
        first = load.first_from("blue", end)
        if first is not None:
            latencies.append((first.end - end) * 1000)
    print(f"rounds={len(ends)} measured={len(latencies)} requests={load.count}")
    print(
        f"switch-back p50={percentile(latencies, 50):.2f} ms p99={percentile(latencies, 99):.2f} "
        f"ms max={max(latencies, default=0.0):.2f} ms (goal p99 <= 100 ms) "
        f"failed={len(load.failed)} (goal 0)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
