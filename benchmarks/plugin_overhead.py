"""Benchmark: what pytest-bluegreen adds to a session of 1,000 trivial checks.

Three sessions in a temporary directory, each run several times, interleaved; the median wall
time (process start to exit) and pytest's own "in N s" are printed with ratios. Goal: the plugin
session at most 1.15x the plain one. Asserts nothing.

- plain:        1,000 tests parametrized over color and i by ``@pytest.mark.parametrize``,
                with the plugin disabled (``-p no:pytest_bluegreen.plugin``);
- plugin:       the same 1,000 tests, the plugin parametrizing ``color`` (500 x blue, green),
                with its settings, report header, color tagging and fixtures;
- plugin+plain: the plain file with the plugin loaded (its hooks, not its color fixture).

Run from the repository root:  .venv/bin/python -m benchmarks.plugin_overhead [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHECKS = 1000
GOAL = 1.15

PLUGIN_CHECKS = f"""
import pytest


@pytest.mark.parametrize("i", range({CHECKS // 2}))
def test_check(color, i):
    assert color in ("blue", "green")
"""

PLAIN_CHECKS = f"""
import pytest


@pytest.mark.parametrize("i", range({CHECKS // 2}))
@pytest.mark.parametrize("color", ["blue", "green"])
def test_check(color, i):
    assert color in ("blue", "green")
"""

SESSIONS = {
    "plain": ("plain", ["-p", "no:pytest_bluegreen.plugin"]),
    "plugin": ("plugin", []),
    "plugin+plain": ("plain", []),
}


@dataclass(frozen=True)
class Timing:
    wall: float  # process start to exit
    cpu: float  # user + system CPU of the process: less disturbed by other load on the machine
    own: float  # pytest's "in N s"


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workdir: Path, folder: str, extra: list[str], env: dict[str, str]) -> Timing:
    """One session (the only child running); exits if it did not pass 1,000 checks."""
    cmd = [sys.executable, "-m", "pytest", folder, "-q", "-p", "no:cacheprovider", *extra]
    cpu = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    wall = time.perf_counter() - start
    summary = re.search(rf"\b{CHECKS} passed in ([\d.]+)s", done.stdout)
    if done.returncode != 0 or summary is None:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return Timing(wall, cpu_of_children() - cpu, float(summary[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each session")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "BG_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-overhead-"))
    try:
        # the settings the plugin reads; the Runtime API is never contacted (no --switch)
        (workdir / "bluegreen.toml").write_text(f'runtime_api = "{workdir / "none.sock"}"\n')
        for folder, text in (("plugin", PLUGIN_CHECKS), ("plain", PLAIN_CHECKS)):
            (workdir / folder).mkdir()
            (workdir / folder / "test_checks.py").write_text(text)
        for folder, extra in SESSIONS.values():  # warm-up: imports, file caches
            run(workdir, folder, extra, env)
        timings: dict[str, list[Timing]] = {name: [] for name in SESSIONS}
        names = list(SESSIONS)
        for r in range(args.runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                folder, extra = SESSIONS[name]
                timings[name].append(run(workdir, folder, extra, env))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load1, load5, _ = os.getloadavg()
    print(
        f"{CHECKS} trivial checks per session, {args.runs} runs each (interleaved), median; "
        f"{os.cpu_count()} CPUs, load average {load1:.1f}/{load5:.1f} at the end"
    )
    med = {
        name: Timing(
            *(statistics.median(getattr(t, f) for t in runs) for f in ("wall", "cpu", "own"))
        )
        for name, runs in timings.items()
    }
    print(f"  {'session':<14}{'wall s':>8}{'CPU s':>8}{'pytest s':>10}   wall s per run")
    for name, m in med.items():
        per_run = " ".join(f"{t.wall:.2f}" for t in timings[name])
        print(f"  {name:<14}{m.wall:>8.2f}{m.cpu:>8.2f}{m.own:>10.2f}   {per_run}")
    base = med["plain"]
    for name in ("plugin", "plugin+plain"):
        m = med[name]
        print(
            f"  {name} / plain: wall {m.wall / base.wall:.3f}x "
            f"({(m.wall - base.wall) * 1000:+.0f} ms)"
            f", CPU {m.cpu / base.cpu:.3f}x ({(m.cpu - base.cpu) * 1000:+.0f} ms, "
            f"{(m.cpu - base.cpu) / CHECKS * 1e6:+.0f} us per check)"
            f", in-session {m.own / base.own:.3f}x"
        )
    for what in ("wall", "cpu"):
        ratio = getattr(med["plugin"], what) / getattr(base, what)
        verdict = "holds" if ratio <= GOAL else "does NOT hold"
        print(f"  goal plugin <= {GOAL:.2f}x plain ({what}): {ratio:.3f}x, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
