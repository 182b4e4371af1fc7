"""Benchmark: what pytest-bluegreen adds to a session of 1,000 trivial checks.

Three sessions in a temporary directory, each run several times, interleaved; the median wall
time (process start to exit), CPU time and pytest's own "in N s" are printed with ratios, then
each session's instruction count under valgrind's callgrind (``--no-instructions`` leaves it
out; about a minute per session): the same number for the same code and inputs whatever else
the machine does, where wall and CPU time on a shared 2-core machine vary by +-30% from run to
run. Goal: the plugin session at most 1.05x the plain one in instructions. Asserts nothing.

- plain:        1,000 tests parametrized over color and i by ``@pytest.mark.parametrize``,
                with the plugin disabled (``-p no:pytest_bluegreen.plugin``);
- plugin:       the same 1,000 tests, the plugin parametrizing ``color`` (500 x blue, green),
                with its settings, report header, color tagging and fixtures;
- plugin+plain: the plain file with the plugin loaded (its hooks, not its color fixture).

Run from the repository root:
    .venv/bin/python -m benchmarks.plugin_overhead [--runs 7] [--no-instructions]
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
GOAL = 1.05

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


# the suite's own dev plugins (pytest-randomly, pytest-timeout) are left out of every session:
# a user's checks run without them, and they would add the same cost to both sides
BASE = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:timeout"]


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workdir: Path, folder: str, extra: list[str], env: dict[str, str]) -> Timing:
    """One session (the only child running); exits if it did not pass 1,000 checks."""
    cmd = [sys.executable, "-m", "pytest", folder, *BASE, *extra]
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


def instructions(workdir: Path, folder: str, extra: list[str], env: dict[str, str]) -> int:
    """The session's instruction count under callgrind (deterministic)."""
    cmd = [sys.executable, "-m", "pytest", folder, *BASE, *extra]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"callgrind of {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found[1])


def print_instructions(counted: dict[str, int]) -> None:
    for name in ("plugin", "plugin+plain"):
        extra_per_check = (counted[name] - counted["plain"]) / CHECKS
        print(
            f"  instructions {name} / plain: {counted[name] / counted['plain']:.4f}x "
            f"({counted[name]:,} vs {counted['plain']:,}; {extra_per_check:+,.0f} per check)"
        )
    ratio = counted["plugin"] / counted["plain"]
    verdict = "holds" if ratio <= GOAL else "does NOT hold"
    print(f"  goal plugin <= {GOAL:.2f}x plain (instructions): {ratio:.4f}x, {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each session")
    parser.add_argument(
        "--instructions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count each session's instructions with valgrind's callgrind (the default; "
        "about a minute each)",
    )
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind), or pass --no-instructions")
    counted: dict[str, int] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "BG_"))}
    env["PYTHONHASHSEED"] = "0"  # the same dict and set orders: the same instruction count
    # as installed from a wheel (pip compiles bytecode): modules and pytest's rewritten plugin
    # modules are compiled once, in the warm-up run, and read from __pycache__ after
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
        if args.instructions:
            for name, (folder, extra) in SESSIONS.items():
                counted[name] = instructions(workdir, folder, extra, env)
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
        print(f"  goal plugin <= {GOAL:.2f}x plain ({what}, noisy): {ratio:.3f}x, {verdict}")
    if counted:
        print_instructions(counted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
