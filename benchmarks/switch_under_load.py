"""Benchmark: switch traffic blue<->green under load through a real HAProxy.

Prints requests sent, failed (must be 0), and the switch latency -- from the gate's decision
(the start of the switch) to the first response from the new color seen by the load -- p50 and
p99 over all switches. Goal: p99 <= 10 ms. Asserts nothing about time.

With ``--instances N`` (N > 1): N HAProxy processes in front of the same colors, switched as one
(every step on every instance, verified through every routed URL), the load spread over all of
them; the switch latency is to the first response from the new color on *every* instance. It
runs N = 1, 2, ... N in turn and the raw floor (two bare weight commands on one instance) in the
same run, and prints ``failed=`` over all and ``p99 ratio N/1=X`` (goal X <= 1.5).

Run from the repository root:  .venv/bin/python -m benchmarks.switch_under_load [--switches N]
                               [--instances N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_bluegreen.judge.load import percentile
from tests.support.instances import NAMES, Group
from tests.support.stack import StackFactory, backends, haproxy_binary, make_cert
from tests.support.switching import switch_under_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--requests", type=int, default=24_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--instances", type=int, default=1, help="HAProxy instances (1-3)")
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
    if args.instances > 1:
        return several(args.instances, args.switches, args.requests, args.concurrency)
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-bench-"))
    try:
        cert = make_cert(workdir / "cert.pem")
        for blue, green in backends():
            factory = StackFactory(workdir, cert, blue, green)
            try:
                stack = factory()
                between = args.requests // (args.switches + 1)
                run = switch_under_load(
                    stack,
                    switches=args.switches,
                    total=args.requests,
                    duration=120,
                    concurrency=args.concurrency,
                    min_between=between,
                )
            finally:
                factory.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = run.load
    latencies = run.latencies_ms()
    colors = load.colors()
    print(f"requests={load.count} failed={len(load.failed)} switches={len(run.switches)}")
    print("kinds: " + " ".join(f"{k}={v}" for k, v in sorted(load.by_kind().items())))
    print(f"answered by: blue={colors['blue']} green={colors['green']}")
    print(
        f"throughput={load.throughput:.0f} req/s over {load.wall:.1f} s, "
        f"request latency p50={load.latency_ms(50):.2f} ms p99={load.latency_ms(99):.2f} ms"
    )
    print(
        f"switch latency (decision -> first response from new color): "
        f"p50={percentile(latencies, 50):.2f} ms p99={percentile(latencies, 99):.2f} ms "
        f"max={max(latencies, default=0):.2f} ms over {len(latencies)} switches "
        f"(goal p99 <= 10 ms: ratio p99/goal={percentile(latencies, 99) / 10:.2f})"
    )
    drain = [r.drain_seconds * 1000 for r in run.switches]
    print(f"drain wait: p50={percentile(drain, 50):.1f} ms max={max(drain, default=0):.1f} ms")
    return 0


def several(count: int, switches: int, requests: int, concurrency: int) -> int:
    """N = 1 .. count instances switched as one, and the raw floor, in one run."""
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-bench-"))
    p50: dict[int, float] = {}
    p99: dict[int, float] = {}
    failed = 0
    total = 0
    try:
        cert = make_cert(workdir / "cert.pem")
        for blue, green in backends():
            factory = StackFactory(workdir, cert, blue, green)
            try:
                stacks = {name: factory(name) for name in NAMES[:count]}
                for n in range(1, count + 1):
                    rounds = switches * (2 if n == 1 else 1)  # N=1 interleaves the raw floor
                    between = requests // (rounds + 2)  # room for the waits' overshoot
                    chosen = dict(list(stacks.items())[:n])
                    first = next(iter(chosen.values()))
                    group = Group(chosen, workdir / f"group-{n}")
                    group.workdir.mkdir()
                    settings = group.settings(verify_responses=1, drain_timeout=10)
                    run = switch_under_load(
                        first,
                        switches=rounds,
                        total=requests,
                        duration=120,
                        concurrency=concurrency,
                        min_between=between,
                        raw_every_other=n == 1,
                        group=None if n == 1 else (list(chosen.values()), settings),
                    )
                    gate = run.latencies_ms()
                    p50[n], p99[n] = percentile(gate, 50), percentile(gate, 99)
                    failed += run.failed
                    total += sum(load.count for load in run.loads)
                    print(
                        f"instances={n}: switch latency p50={p50[n]:.2f} ms "
                        f"p99={p99[n]:.2f} ms over {len(gate)} switches, failed={run.failed}"
                    )
                    if n == 1:
                        raw = run.latencies_ms("raw")
                        print(
                            f"raw floor (two weight commands, one instance): "
                            f"p50={percentile(raw, 50):.2f} ms p99={percentile(raw, 99):.2f} ms "
                            f"over {len(raw)} switches"
                        )
            finally:
                factory.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"requests={total} failed={failed}")
    ratio = p99[count] / p99[1] if p99[1] else float("inf")
    print(f"p99 ratio {count}/1={ratio:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
