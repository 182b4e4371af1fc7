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
    args = parser.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
