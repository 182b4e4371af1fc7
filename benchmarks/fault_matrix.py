"""Benchmark: the fault matrix, and what the journaled switch costs against a raw one.

1. Every step of the switch x every fault (SIGINT, SIGTERM, SIGKILL then recover, an HAProxy
   reload, HAProxy killed, a Runtime API error answer, a step hook that raises, an answer lost
   after HAProxy applied the command), each on a fresh real HAProxy under a bounded load probe
   and ending with a soft reload that must keep the color (tests/support/faults.py). Prints
   ``faults=N survived=M`` (goal M = N >= 72: the switch's seven steps and a canary's second
   step, --canary 10,50) and the cells that did not survive.
2. Switch latency under load, in the same run against the same HAProxy: the gate's journaled
   switch and a raw switch (two bare ``set server ... weight`` commands) alternate; latency is
   from the start of a switch to the load's first answer from the new color. Prints
   ``switch p99=X ms raw p99=Y ms ratio=X/Y`` (goal ratio <= 2, failed=0).

Asserts nothing. Run from the repository root:
    .venv/bin/python -m benchmarks.fault_matrix [--switches 100] [--skip-matrix]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_bluegreen.judge.load import percentile
from tests.support.faults import CANARY_STEP, FAULTS, STEPS, run_cell, summary
from tests.support.stack import Backend, StackFactory, backends, haproxy_binary, make_cert
from tests.support.switching import switch_under_load


def matrix(workdir: Path, cert: Path, blue: Backend, green: Backend) -> None:
    cells = []
    for step in (*STEPS, CANARY_STEP):
        for fault in FAULTS:
            factory = StackFactory(workdir / f"{step}-{fault}", cert, blue, green)
            try:
                blue.reset()
                green.reset()
                cells.append(run_cell(factory(), workdir / f"{step}-{fault}" / "gate", step, fault))
            finally:
                factory.close()
    figures = summary(cells)
    print(
        f"faults={figures['faults']} survived={figures['survived']} "
        f"probe requests={figures['requests']} failed={figures['failed']} "
        f"failed while HAProxy was dead={figures['failed_while_haproxy_down']} "
        f"while it reloaded={figures['failed_while_haproxy_reloaded']} (keep-alive "
        "connections the old process closed)"
    )
    for cell in cells:
        if not cell.survived:
            print(f"  NOT SURVIVED {cell.step} x {cell.fault}: {'; '.join(cell.mismatches())}")


def latency(workdir: Path, cert: Path, blue: Backend, green: Backend, switches: int) -> None:
    factory = StackFactory(workdir / "latency", cert, blue, green)
    try:
        stack = factory()
        run = switch_under_load(
            stack,
            switches=switches,
            total=switches * 400 + 800,
            duration=180,
            concurrency=4,
            min_between=400,
            journal=workdir / "latency" / "journal.json",
            raw_every_other=True,
        )
    finally:
        factory.close()
    gate, raw = run.latencies_ms("gate"), run.latencies_ms("raw")
    p50, p99 = percentile(gate, 50), percentile(gate, 99)
    r50, r99 = percentile(raw, 50), percentile(raw, 99)
    print(
        f"requests={run.load.count} failed={len(run.load.failed)} "
        f"switches: journaled={len(gate)} raw={len(raw)}"
    )
    print(
        f"switch p50={p50:.2f} ms p99={p99:.2f} ms raw p50={r50:.2f} ms p99={r99:.2f} ms "
        f"ratio p50={p50 / r50:.2f} p99={p99 / r99:.2f} (goal p99 ratio <= 2)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=100, help="half journaled, half raw")
    parser.add_argument("--skip-matrix", action="store_true", help="only the latency part")
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-faults-"))
    try:
        cert = make_cert(workdir / "cert.pem")
        for blue, green in backends():
            if not args.skip_matrix:
                matrix(workdir, cert, blue, green)
            latency(workdir, cert, blue, green, args.switches)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
