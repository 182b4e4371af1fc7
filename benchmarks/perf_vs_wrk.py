"""Benchmark: the perf checks' client-side numbers (run_load) next to wrk and hey, same endpoint.

Against one tests/support/backend_app.py backend (started here) at the same concurrency, each
tool runs for the same few seconds, one after the other, in rotating order, for a few rounds; the
median of each tool's p50/p95/p99 and requests per second is printed with its ratio to wrk and
hey. Goal: run_load agrees with them within 10 % or 1 ms, whichever is larger (rps: 10 %).
Every tool here runs a closed loop, so each measures latency at the load it manages to offer;
"hey@same-rps" is hey paced (``-q``) to the rate run_load reached in that round, which compares
the latency measurement itself at equal load.
A second target, a static answer from HAProxy (``http-request return``, if haproxy is installed),
shows where the Python client itself is the limit. Asserts nothing.

Concurrency means the same thing for every tool: C keep-alive connections, each with one request
in flight at a time (closed loop). run_load: C threads, one connection each; wrk: ``-c C`` on
``-t min(C, CPUs)`` event-loop threads (no pipelining without a script); hey: ``-c C`` workers.

Run from the repository root:  .venv/bin/python -m benchmarks.perf_vs_wrk [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_bluegreen.judge.load import run_load
from tests.support.stack import Backend, free_ports, haproxy_binary

PACED = "hey@same-rps"  # hey limited to the rate run_load reached in the same round
MAX_REQUESTS = 500_000  # run_load's count bound; the time bound (--seconds) ends it first

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""

HAPROXY_STATIC = """
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend static
    bind 127.0.0.1:{port}
    http-request return status 200 content-type application/json string "{{\\"status\\":\\"ok\\"}}"
"""


@dataclass(frozen=True)
class Figures:
    requests: int
    errors: int
    p50: float  # ms
    p95: float
    p99: float
    rps: float


def ours(url: str, concurrency: int, seconds: float) -> Figures:
    result = run_load(
        url, total=MAX_REQUESTS, duration=seconds, concurrency=concurrency, kinds=["keepalive-get"]
    )
    return Figures(
        result.count,
        len(result.failed),
        result.latency_ms(50),
        result.latency_ms(95),
        result.latency_ms(99),
        result.throughput,
    )


def wrk(url: str, concurrency: int, seconds: float, script: Path) -> Figures:
    threads = min(concurrency, os.cpu_count() or 1)
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(script)]
    out = subprocess.run(
        [*cmd, "--latency", url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    found = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, duration_us, errors, p50, p95, p99 = (int(g) for g in found.groups())
    return Figures(
        requests, errors, p50 / 1000, p95 / 1000, p99 / 1000, requests / duration_us * 1e6
    )


def hey(url: str, concurrency: int, seconds: float, rate: float | None = None) -> Figures:
    """``rate``: requests per second in all (hey's ``-q`` is per worker); None: unpaced."""
    cmd = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency)]
    if rate is not None:
        cmd += ["-q", f"{rate / concurrency:.1f}"]
    cmd.append(url)
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout

    def pct(p: int) -> float:
        found = re.search(rf"^\s*{p}% in ([\d.]+) secs", out, re.M)
        if found is None:
            raise RuntimeError(f"unexpected hey output:\n{out}")
        return float(found[1]) * 1000

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    ok = sum(int(n) for n in re.findall(r"\[2\d\d\]\s+(\d+) responses", out))
    bad = sum(int(n) for n in re.findall(r"\[[345]\d\d\]\s+(\d+) responses", out))
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s+Get ", out, re.M))
    if rps is None:
        raise RuntimeError(f"unexpected hey output:\n{out}")
    return Figures(ok + bad + errors, bad + errors, pct(50), pct(95), pct(99), float(rps[1]))


@contextmanager
def backend_target() -> Iterator[str]:
    backend = Backend.start("blue", "bench")
    try:
        yield f"{backend.url}/health"
    finally:
        backend.stop()


@contextmanager
def haproxy_target(workdir: Path) -> Iterator[str]:
    binary = haproxy_binary()
    assert binary is not None
    (port,) = free_ports(1)
    cfg = workdir / "static.cfg"
    cfg.write_text(HAPROXY_STATIC.format(port=port))
    log = (workdir / "haproxy.log").open("wb")
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not start") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/health"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def agreement(name: str, mine: float, ref: float, unit: str, floor: float) -> tuple[str, bool]:
    allowed = max(0.10 * ref, floor)
    ratio = mine / ref if ref else float("inf")
    holds = abs(mine - ref) <= allowed
    mark = "ok" if holds else "off"
    text = f"{name} {ratio:.2f}x ({mine - ref:+.2f}{unit}, allowed +-{allowed:.2f}{unit}) {mark}"
    return text, holds


def measure(
    title: str,
    url: str,
    tools: dict[str, Callable[[], Figures]],
    paced: Callable[[float], Figures] | None,
    rounds: int,
) -> dict[str, Figures]:
    """Each round: every tool once, in rotating order; then hey paced at run_load's rate."""
    runs: dict[str, list[Figures]] = {name: [] for name in tools}
    names = list(tools)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(tools[name]())
        if paced is not None:
            runs.setdefault(PACED, []).append(paced(runs["run_load"][-1].rps))
    med = {
        name: Figures(
            int(statistics.median(f.requests for f in figs)),
            int(statistics.median(f.errors for f in figs)),
            statistics.median(f.p50 for f in figs),
            statistics.median(f.p95 for f in figs),
            statistics.median(f.p99 for f in figs),
            statistics.median(f.rps for f in figs),
        )
        for name, figs in runs.items()
    }
    print(f"\n{title}\n  {url}, median of {rounds} round(s)")
    print(
        f"  {'tool':<12}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'req/s':>9}   p95 ms per round"
    )
    for name, f in med.items():
        per_round = " ".join(f"{x.p95:.2f}" for x in runs[name])
        print(
            f"  {name:<12}{f.requests:>10}{f.errors:>8}{f.p50:>9.2f}{f.p95:>9.2f}{f.p99:>9.2f}"
            f"{f.rps:>9.0f}   {per_round}"
        )
    mine = med["run_load"]
    for ref_name, ref in med.items():
        if ref_name == "run_load":
            continue
        checks = [
            agreement("p50", mine.p50, ref.p50, "ms", 1.0),
            agreement("p95", mine.p95, ref.p95, "ms", 1.0),
        ]
        if ref_name != PACED:  # paced: same rate by construction
            checks.append(agreement("rps", mine.rps, ref.rps, "", 0.0))
        verdict = "holds" if all(ok for _, ok in checks) else "does NOT hold"
        print(f"  run_load vs {ref_name}: " + "; ".join(t for t, _ in checks))
        print(f"    agreement within 10 % or 1 ms: {verdict}")
    if PACED in med:
        extra = mine.p95 - med[PACED].p95
        print(
            f"  run_load's own p95 overhead at equal load: {extra:+.2f} ms "
            f"= {extra / 300:.1%} of a p(95)<300 threshold"
        )
    return med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="as perf_concurrency (4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per tool and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    c, secs = args.concurrency, args.seconds
    cpus = os.cpu_count() or 1
    load1, load5, _ = os.getloadavg()
    print(
        f"concurrency {c}: run_load {c} threads x 1 keep-alive connection; "
        f"wrk -c{c} -t{min(c, cpus)} ({c} keep-alive connections, 1 request in flight each); "
        f"hey -c{c} (keep-alive)\n"
        f"each tool {secs:g} s per round, same endpoint, tools one after another; "
        f"client and server share this machine: {cpus} CPUs, load average {load1:.1f}/{load5:.1f}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-perf-vs-wrk-"))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)

    def tools(url: str) -> dict[str, Callable[[], Figures]]:
        found: dict[str, Callable[[], Figures]] = {
            "run_load": lambda: ours(url, c, secs),
            "wrk": lambda: wrk(url, c, secs, script),
        }
        if shutil.which("hey") is not None:
            found["hey"] = lambda: hey(url, c, secs)
        return found

    def paced(url: str) -> Callable[[float], Figures] | None:
        if shutil.which("hey") is None:
            return None
        return lambda rate: hey(url, c, secs, rate)

    try:
        with backend_target() as url:
            title = "backend_app.py /health (Python ThreadingHTTPServer)"
            measure(title, url, tools(url), paced(url), args.rounds)
        if haproxy_binary() is not None:
            with haproxy_target(workdir) as url:
                title = "HAProxy static answer (a fast server: shows the client's own limit)"
                measure(title, url, tools(url), paced(url), args.rounds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if shutil.which("hey") is None:
        print("\nhey is not installed (apt-get install -y hey): compared with wrk only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
