"""Benchmark: switch traffic blue<->green under load through a real HAProxy.

Prints requests sent, failed (must be 0), and the switch latency -- from the gate's decision
(the start of the switch) to the first response from the new color seen by the load -- p50 and
p99 over all switches. Goal: p99 <= 10 ms. Asserts nothing about time.

Run from the repository root:  .venv/bin/python -m benchmarks.switch_under_load [--switches N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_bluegreen.load import percentile
from tests.support.stack import StackFactory, backends, haproxy_binary, make_cert
from tests.support.switching import switch_under_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--requests", type=int, default=24_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    raise SystemExit(main())
