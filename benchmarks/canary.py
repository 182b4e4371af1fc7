"""Benchmark: canary steps under load (issue 24's bars).

Each run is a real gate (a pytest subprocess, as a user runs it) against a real HAProxy (the
shipped haproxy.cfg) in front of two real backends, under a bounded load from a process of its
own, through the routed API, with ``--env green --switch --canary 5,25,50``:

1. good: green is as good as blue: every step passes, the full switch follows; the load must
   see no failed request (``good failed=N``, goal 0);
2. bad: green answers 500 to every 20th request HAProxy routes to it (5% of its users' requests;
   its own port never fails, so the checks pass it): the canary must catch it, in which step
   and with what share of the routed requests reaching green (``caught_at_step=N
   user_share=X%``, goal: caught, share <= 5%);
3. back: rounds of the bad run; from the step's decision (its journaled ``-judged`` record) to
   the last request the load sent that reached green (after it, every request goes to blue):
   ``back p99=Y ms`` (goal <= 100 ms).

Prints ``canary: good failed=0; bad caught_at_step=N user_share=X%; back p99=Y ms``. Asserts
nothing. Run from the repository root:
    .venv/bin/python -m benchmarks.canary [--rounds 10] [--step-seconds 2]
    .venv/bin/python -m benchmarks.canary --demo [--rounds 3] [--step-seconds 30]

``--demo`` runs the same on the bundled demo stack (scripts/demo first: Docker Compose, the
Jarvis images, the seed's ports, both colors deployed and one live): the good build is
``v1.1.0`` deployed to the idle color, the bad one the drill's ``v1.11.0-routedflaky`` (every
check passes it), each
through ``pytest checks --deploy TAG -m quick --switch --canary 5,25,50`` under the harness
load on the routed API (``/api/items``), paced under the demo's rate limit (100 requests a
second a client): about 45 a second, so a 5% step needs its 30 seconds to see
``canary_min_requests``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_bluegreen.judge.load import LoadResult, percentile
from pytest_bluegreen.switch.journal import read_journal
from tests.support.gate import CHECKS
from tests.support.stack import Stack, StackFactory, backends, haproxy_binary, make_cert, wait_for
from tests.support.switching import LoadProcess

STEPS = "5,25,50"


def gate(stack: Stack, folder: Path, step_seconds: float) -> tuple[int, str]:
    folder.mkdir(parents=True)
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(
            canary_step_seconds=step_seconds,
            canary_min_requests=20,
            drain_timeout=10,
        )
    )
    (folder / "test_checks.py").write_text(CHECKS)
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "quick"),
            *("--env", "green", "--switch", "--canary", STEPS),
        ],
        check=False, cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return run.returncode, run.stdout + run.stderr


def load_on(stack: Stack, seconds: float) -> LoadProcess:
    load = LoadProcess(f"{stack.routed_url}/api/echo", 2_000_000, seconds, 4, pause=0.002)
    wait_for(lambda: load.answered_at_least(50), 30, "the load's first answers")
    return load


def decided(stack: Stack) -> float:
    """When the failed step was decided (monotonic), from its journaled record."""
    entry = read_journal(stack.journal_file)
    if entry is None:
        raise RuntimeError("no journal")
    judged = [s for s in entry.steps if str(s["step"]).endswith("-judged")]
    if not judged or judged[-1]["verdict"] != "failed":
        raise RuntimeError(f"no failed step in the journal: {entry.steps}")
    return float(judged[-1]["at"]) - (time.time() - time.monotonic())


def back_ms(load: LoadResult, decision: float) -> float:
    """From the decision to the last request sent that still reached green (0 when none)."""
    sent = [s.start for s in load.samples if s.color == "green" and s.start >= decision]
    return max((start - decision) * 1000 for start in sent) if sent else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--demo", action="store_true", help="on the bundled demo stack")
    args = parser.parse_args()
    if args.demo:
        return demo(args.rounds, args.step_seconds)
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-canary-"))
    try:
        cert = make_cert(workdir / "cert.pem")
        for blue, green in backends():
            factory = StackFactory(workdir / "stack", cert, blue, green)
            try:
                stack = factory()
                measure(stack, workdir, args.rounds, args.step_seconds)
            finally:
                factory.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure(stack: Stack, workdir: Path, rounds: int, step_seconds: float) -> None:
    seconds = step_seconds * 3 * 3 + 60
    load = load_on(stack, seconds)
    code, text = gate(stack, workdir / "good", step_seconds)
    good = load.finish(seconds + 30)
    if code != 0:
        raise RuntimeError(f"the good build's gate exited {code}:\n{text[-3000:]}")
    print(f"good: exit {code}, requests={good.count} failed={len(good.failed)}")
    stack.route_to("blue")
    stack.backend("green").control(routed_error_every=20)
    caught: list[int] = []
    shares: list[float] = []
    backs: list[float] = []
    for number in range(rounds):
        load = load_on(stack, seconds)
        code, text = gate(stack, workdir / f"bad-{number}", step_seconds)
        decision = decided(stack) if code == 11 else None
        bad = load.finish(seconds + 30)
        step = re.search(r"canary step (\d)/3 \(\d+%\) failed", text)
        share = re.search(r"green answered ([\d,]+) of ([\d,]+) routed request", text)
        if code != 11 or step is None or share is None or decision is None:
            print(f"bad round {number}: NOT CAUGHT (exit {code})\n{text[-2000:]}")
            stack.route_to("blue")
            continue
        caught.append(int(step.group(1)))
        new, routed = (int(g.replace(",", "")) for g in share.groups())
        shares.append(100 * new / routed)
        backs.append(back_ms(bad, decision))
    print(
        f"bad rounds={rounds} caught={len(caught)} steps={caught} "
        f"shares={[round(s, 2) for s in shares]} back ms={[round(b, 2) for b in backs]}"
    )
    print(
        f"canary: good failed={len(good.failed)}; bad caught_at_step="
        f"{max(caught, default=0)} user_share={max(shares, default=0.0):.1f}%; "
        f"back p99={percentile(backs, 99) if backs else float('nan'):.1f} ms "
        "(goals: failed=0, caught in a step with user_share <= 5%, back p99 <= 100 ms)"
    )


ROOT = Path(__file__).resolve().parents[1]


def demo(rounds: int, step_seconds: float) -> int:
    """The same figures on the demo stack (see the module docstring)."""
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415

    from pytest_bluegreen.contrib.services import ServiceSettings  # noqa: PLC0415
    from pytest_bluegreen.settings import resolve  # noqa: PLC0415

    python = str(ROOT / ".venv" / "bin" / "python")
    # the stack up and serving: scripts/demo deploys both colors and switches to one
    up = subprocess.run(["scripts/demo"], cwd=ROOT, check=False, capture_output=True, text=True)
    if up.returncode != 0:
        print(f"scripts/demo failed:\n{up.stdout[-2000:]}{up.stderr[-2000:]}", file=sys.stderr)
        return 2
    settings = resolve({}, {}, {}, ROOT, extra_groups=(ServiceSettings,))
    env = {**os.environ, "BLUEGREEN_CANARY_STEP_SECONDS": f"{step_seconds:g}"}

    def idle() -> str:
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "bluegreen"), "status", "--json"],
                              cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
        live = str(json.loads(done.stdout)["live"])
        return settings.topology.other(live)

    def cycle(tag: str) -> tuple[int, str, LoadResult, float | None]:
        seconds = step_seconds * 9 + 120
        # paced under the demo's rate limit (100 requests a second a client, which the gate's
        # own checks through :443 share): two users, 40 ms between requests
        load = LoadProcess(settings.switching.routed_api_url + "/api/items", 2_000_000,
                           seconds, 2, pause=0.04)  # fmt: skip
        wait_for(lambda: load.answered_at_least(50), 30, "the load's first answers")
        run = subprocess.run(
            [python, "-m", "pytest", "checks", "-p", "no:cacheprovider", "-q", "--env", idle(),
             "--deploy", tag, "-m", "quick", "--switch", "--canary", STEPS, "--skip-backup"],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False, env=env,
        )  # fmt: skip
        entry = read_journal(settings.state.journal_file)
        judged = [s for s in (entry.steps if entry else ()) if str(s["step"]).endswith("-judged")]
        decision = None
        if run.returncode == 11 and judged and judged[-1]["verdict"] == "failed":
            decision = float(judged[-1]["at"]) - (time.time() - time.monotonic())
        return run.returncode, run.stdout + run.stderr, load.finish(seconds + 30), decision

    code, text, good, _ = cycle("v1.1.0")
    print(f"good (v1.1.0): exit {code}, requests={good.count} failed={len(good.failed)}")
    caught, shares, backs = [], [], []
    for number in range(rounds):
        live_before = settings.topology.other(idle())
        code, text, bad, decision = cycle("v1.11.0-routedflaky")
        old = [s for s in bad.samples if s.color == live_before]
        step = re.search(r"canary step (\d)/3 \(\d+%\) failed", text)
        share = re.search(r"(\w+) answered ([\d,]+) of ([\d,]+) routed request", text)
        if code != 11 or step is None or share is None or decision is None or not old:
            print(f"bad round {number}: NOT CAUGHT (exit {code})\n{text[-2000:]}")
            continue
        caught.append(int(step.group(1)))
        new, routed = (int(g.replace(",", "")) for g in share.groups()[1:])
        shares.append(100 * new / routed)
        new_color = share.group(1)
        sent = [s.start for s in bad.samples if s.color == new_color and s.start >= decision]
        backs.append(max(((t - decision) * 1000 for t in sent), default=0.0))
    print(
        f"canary (demo stack): good failed={len(good.failed)}; bad caught_at_step="
        f"{max(caught, default=0)} user_share={max(shares, default=0.0):.1f}%; "
        f"back p99={percentile(backs, 99) if backs else float('nan'):.1f} ms "
        f"over {len(caught)}/{rounds} round(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
