"""Benchmark: wall times of set-up, one deploy -> verify -> switch cycle, and the quick checks.

Uses the bundled local stack (scripts/local_stack.py, the seed's ports). Prints each figure and
its ratio to the goal; asserts nothing. Goals: cycle <= 15 s (kamal-style deploys take 20-30 s),
quick checks <= 2 s.

    .venv/bin/python -m benchmarks.cycle [--cycles N] [--fresh-setup] [--engine swarm]

--engine swarm adds the same cycle on Docker Swarm (a single-node swarm made for the run and
left as found, 2 replicas per color, HAProxy in a container: tests/support/swarm.py) beside
Compose in the same run, both with the same two checks (health, an API write), and prints
``swarm/compose=X`` (cycle p50 on Swarm over cycle p50 on Compose; goal <= 2).

--fresh-setup removes the images and the virtualenv first, so the first set-up run is measured
from scratch (takes minutes: it debootstraps the base image).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pytest_bluegreen.judge.load import percentile

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [str(ROOT / ".venv" / "bin" / "pytest"), "checks", "-p", "no:cacheprovider", "-q"]


def timed(cmd: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def live_color() -> str:
    done = subprocess.run(  # exit 1 means "inconsistent", which the JSON says too
        [str(ROOT / ".venv" / "bin" / "bluegreen"), "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return str(json.loads(done.stdout)["live"])
    except ValueError:
        sys.exit(f"bluegreen status failed ({done.returncode}): {done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--quick-runs", type=int, default=5)
    parser.add_argument("--fresh-setup", action="store_true")
    parser.add_argument("--engine", choices=("compose", "swarm"), default="compose")
    args = parser.parse_args()
    if args.fresh_setup:
        subprocess.run(
            ["docker", "image", "rm", "-f", *_our_images()], check=False, capture_output=True
        )
        shutil.rmtree(ROOT / ".venv", ignore_errors=True)
    setup_first = timed([str(ROOT / "scripts" / "setup")])
    setup_second = timed([str(ROOT / "scripts" / "setup")])
    timed([str(ROOT / ".venv" / "bin" / "python"), "scripts/local_stack.py", "up"])
    # each cycle deploys the idle color at a tag it does not run, so its containers are
    # re-created (deploying the running tag would be a no-op for Compose)
    tags_file = ROOT / ".bluegreen" / "compose-tags.env"
    cycles = []
    for _ in range(args.cycles):
        idle = "blue" if live_color() == "green" else "green"
        text = tags_file.read_text() if tags_file.exists() else ""
        running = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        tag = "v1.1.0" if running.get(f"{idle.upper()}_TAG") == "v1.0.0" else "v1.0.0"
        command = [*PYTEST, "--env", idle, "--deploy", tag, "-m", "quick", "--switch"]
        cycles.append(timed([*command, "--skip-backup"]))
    quick = [timed([*PYTEST, "--env", "green", "-m", "quick"]) for _ in range(args.quick_runs)]
    quick_n2 = [
        timed([*PYTEST, "--env", "green", "-m", "quick", "-n", "2"]) for _ in range(args.quick_runs)
    ]
    side_by_side = _swarm_beside_compose(args.cycles) if args.engine == "swarm" else None
    label = "first (fresh)" if args.fresh_setup else "first (already installed)"
    print(f"setup: {label}={setup_first:.1f} s second={setup_second:.1f} s")
    print(
        f"deploy->verify->switch cycle: p50={percentile(cycles, 50):.1f} s "
        f"max={max(cycles):.1f} s over {len(cycles)} cycles "
        f"(goal <= 15 s: ratio p50/goal={percentile(cycles, 50) / 15:.2f})"
    )
    print(
        f"pytest --env green -m quick: p50={percentile(quick, 50):.2f} s "
        f"max={max(quick):.2f} s over {len(quick)} runs "
        f"(goal <= 2 s: ratio p50/goal={percentile(quick, 50) / 2:.2f})"
    )
    print(
        f"pytest --env green -m quick -n 2: p50={percentile(quick_n2, 50):.2f} s "
        f"max={max(quick_n2):.2f} s over {len(quick_n2)} runs "
        f"(ratio to serial: {percentile(quick_n2, 50) / percentile(quick, 50):.2f})"
    )
    if side_by_side is not None:
        compose, swarm = side_by_side
        ratio = percentile(swarm, 50) / percentile(compose, 50)
        print(
            f"same two checks, {len(compose)} cycles each: compose p50="
            f"{percentile(compose, 50):.1f} s, swarm (2 replicas per color) p50="
            f"{percentile(swarm, 50):.1f} s max={max(swarm):.1f} s; "
            f"swarm/compose={ratio:.2f} (goal <= 2)"
        )
    return 0


def _swarm_beside_compose(cycles: int) -> tuple[list[float], list[float]]:
    """Cycles with the same two checks on the Compose stack, then on a fresh swarm."""
    import tempfile  # noqa: PLC0415

    from tests.engines.test_swarm import CHECKS  # noqa: PLC0415
    from tests.support.stack import make_cert  # noqa: PLC0415
    from tests.support.swarm import SwarmStack  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="bluegreen-cycle-"))
    # under the repository, so that its conftest.py (and the settings it adds) applies
    checks = ROOT / ".bluegreen" / "cycle" / "test_cycle_checks.py"
    checks.parent.mkdir(parents=True, exist_ok=True)
    checks.write_text(CHECKS)
    compose = []
    tags_file = ROOT / ".bluegreen" / "compose-tags.env"
    for _ in range(cycles):
        idle = "blue" if live_color() == "green" else "green"
        text = tags_file.read_text() if tags_file.exists() else ""
        running = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        tag = "v1.1.0" if running.get(f"{idle.upper()}_TAG") == "v1.0.0" else "v1.0.0"
        command = [*PYTEST[:1], str(checks), "--rootdir", str(ROOT), "-p", "no:cacheprovider"]
        compose.append(timed([*command, "-q", "--env", idle, "--deploy", tag, "--switch"]))
    stack = SwarmStack(work / "swarm", make_cert(work / "bluegreen.pem"))
    stack.workdir.mkdir()
    swarm = []
    try:
        stack.start()
        (stack.workdir / "bluegreen.toml").write_text(stack.settings_toml())
        (stack.workdir / "test_checks.py").write_text(CHECKS)
        live = "blue"
        for _ in range(cycles):
            idle = "green" if live == "blue" else "blue"
            now = stack.image_of(f"{idle}-api").rpartition(":")[2]
            tag = "v1.1.0" if now == "v1.0.0" else "v1.0.0"
            start = time.monotonic()
            done = subprocess.run(
                [*PYTEST[:1], "-q", "-p", "no:cacheprovider", "--env", idle, "--deploy", tag,
                 "--switch"],
                cwd=stack.workdir, env=stack.env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"swarm cycle failed ({done.returncode}):\n{done.stdout}{done.stderr}")
            swarm.append(time.monotonic() - start)
            live = idle
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(checks.parent, ignore_errors=True)
    return compose, swarm


def _our_images() -> list[str]:
    out = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [i for i in out if i.startswith(("bluegreen/", "bluegreen-base"))]


if __name__ == "__main__":
    raise SystemExit(main())
