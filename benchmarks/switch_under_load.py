"""Benchmark: switch traffic blue<->green under load through a real HAProxy.

Prints requests sent, failed (must be 0), and the switch latency -- from the gate's decision
(the start of the switch) to the first response from the new color seen by the load -- p50 and
p99 over all switches. Goal: p99 <= 10 ms. Asserts nothing about time.

With ``--instances 1,2,5,10,20`` (or ``--instances N``: 1, 2, ... N): how a switch's cost
grows with the HAProxy tier. The largest N's real HAProxy processes run on 127.0.0.1 (each its
own Runtime API, ports asked of the OS, server-state file; ``tests/support/tier.py``) in front
of the same two colors; N is the first N of them, switched as one by the gate's own forced
path (``bluegreen switch-to --force``: the lock of every instance, its checks, the plan, the
journal written durably, every step on every instance at once, verified through every routed
URL). ``--switches`` rounds, to green then to blue and so on: each round switches every N once
in turn (every instance first shown the round's old color), so that every N meets the same
machine -- other processes' bursts come and go over minutes, and one N measured after another
would meet others. The colors are answered by one more HAProxy (``tests/support/fastcolors.py``):
the Python stand-ins cannot answer twenty instances' health checks on two cores. The load is
a watch (``tests/support/watch.py``): one keep-alive connection per instance, a trickle between
switches (``--rate`` requests a second over all instances) and, from right before the first
change until each switched instance has answered from the new color, a request on each about
every millisecond; at most ``--requests`` per N, all on loopback. Per N it prints::

    n=20 p50=16.1ms p90=22.4ms prepare=123ms failed=0

- ``p50``, ``p90``: the switch latency, from the start of the switch to the first answer from
  the new color through EVERY instance (the last of them), over the N's switches. ``p90`` is
  the statistic of the curve, not p99: p99 over 30 switches is the slowest one, and on two
  shared cores one switch in ten or so meets another process's burst; ``p90`` is the 27th
  fastest of 30 (the three slowest dropped), ``max`` is printed beside it.
- ``prepare``: p50 of the prepare phase, from before the lock to the first change: the lock of
  every instance, the gate's checks (admin level, every server known, one live color, the
  target UP), the plan read from every instance.
- ``failed``: requests that failed while the N's switches ran (goal 0).
- a second line: the switch's parts (``promote``: the journal's intent and the first change on
  every instance; ``verified``: every routed URL answered from the target; ``whole``: to the
  server-state files saved).

Then ``p90 20/1=X p50 20/1=Y`` (the last N over the first; goal: p90 20/1 <= 3), the requests
and failed requests of the whole run, and what the cores did (``SATURATED`` when 90% busy or
more: the figures then say as much about the machine as about the tier). The journal's
``fdatasync`` goes to the working folder's disk, as a gate's does: a fixed cost per switch
whose tail, on a disk shared with busy neighbours, is most of one instance's p90;
``TMPDIR=/dev/shm`` keeps it in memory, to see the tier's own growth. Asserts nothing about
time; Ctrl-C (or SIGTERM) stops it, every process torn down.

Run from the repository root:  .venv/bin/python -m benchmarks.switch_under_load [--switches N]
                               [--instances 1,2,5,10,20]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pytest_bluegreen.judge.load import LoadResult, percentile
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.outcome import SwitchPlan, SwitchResult
from tests.support.stack import StackFactory, backends, haproxy_binary, make_cert, wait_for
from tests.support.switching import switch_under_load
from tests.support.tier import CpuMeter, Tier, forced_switch
from tests.support.watch import Watch

ARMED_PAUSE = 0.001  # s: a connection's pause while its instance has not answered from the target
TIER_SWITCHES = 30
TIER_REQUESTS = 4000  # per N
TIER_RATE = 40.0  # requests a second between switches, over all instances
TIER_SECONDS = 300  # per N, at most
GOAL_RATIO = 3.0


def instance_counts(text: str) -> tuple[int, ...]:
    """``1,2,5,10,20`` as given; a lone ``N``: 1, 2, ... N (one instance alone: ``(1,)``)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or a list of counts: {text!r}") from None
    if any(count < 1 for count in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"counts must be distinct and at least 1: {text!r}")
    return counts if len(counts) > 1 else tuple(range(1, counts[0] + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, help=f"per N (default 20; a tier: {TIER_SWITCHES})")
    parser.add_argument(
        "--requests", type=int, help=f"at most (default 24000; a tier: {TIER_REQUESTS} per N)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="one instance's load")
    parser.add_argument(
        "--instances",
        type=instance_counts,
        default=(1,),
        help="HAProxy instances: a list (1,2,5,10,20) or N for 1..N",
    )
    parser.add_argument(
        "--rate", type=float, default=TIER_RATE, help="a tier's load between switches (req/s)"
    )
    args = parser.parse_args()
    if haproxy_binary() is None:
        print("haproxy is not installed", file=sys.stderr)
        return 2
    if args.instances != (1,):
        return tier(
            args.instances,
            args.switches or TIER_SWITCHES,
            args.requests or TIER_REQUESTS,
            args.rate,
        )
    args.switches = args.switches or 20
    args.requests = args.requests or 24_000
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


# --- a tier of N instances -------------------------------------------------------------------


@dataclass
class Point:
    """One N of the curve: each switch's latency, its parts and its prepare phase (ms)."""

    count: int
    latencies: list[float] = field(default_factory=list)
    prepare: list[float] = field(default_factory=list)
    results: list[SwitchResult] = field(default_factory=list)
    requests: int = 0  # sent to its instances while it switched
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)

    def lines(self) -> list[str]:
        def part(end: str) -> float:
            return percentile([(getattr(r, end) - r.started) * 1000 for r in self.results], 50)

        first = (
            f"n={self.count} p50={self.p(50):.1f}ms p90={self.p(90):.1f}ms "
            f"prepare={percentile(self.prepare, 50):.0f}ms failed={self.failed}"
        )
        second = (
            f"      max={max(self.latencies, default=0):.1f}ms over {len(self.latencies)} "
            f"switches, {self.requests} requests while they ran; p50 of the parts: promote="
            f"{part('promoted'):.1f}ms verified={part('first_target_response'):.1f}ms "
            f"whole={part('finished'):.0f}ms"
        )
        return [first, second, *(f"      {note}" for note in self.notes)]


@dataclass
class Curve:
    """Every N's point, measured in turns (one switch of each N per round), and the cores."""

    points: dict[int, Point]
    cpu: str = "cpu: not measured"
    saturated: bool = False
    requests: int = 0
    failed: int = 0
    stopped: str = ""

    def lines(self) -> list[str]:
        found = [p for p in self.points.values() if p.latencies]
        lines = [line for point in self.points.values() for line in point.lines()]
        if len(found) > 1:
            first, last = found[0], found[-1]
            which = f"{last.count}/{first.count}"
            lines.append(
                f"p90 {which}={last.p(90) / first.p(90):.2f} "
                f"p50 {which}={last.p(50) / first.p(50):.2f} (goal: p90 {which} <= {GOAL_RATIO:g})"
            )
        lines.append(f"requests={self.requests} failed={self.failed}")
        lines.append(self.cpu)
        if self.saturated:
            lines.append(
                "the cores were saturated: the figures say as much of the machine as of the tier"
            )
        return lines + ([self.stopped] if self.stopped else [])


def tier(counts: tuple[int, ...], switches: int, requests: int, rate: float) -> int:
    """The curve, then the ratios of the last N to the first."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)  # torn down as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-tier-"))
    curve = Curve({count: Point(count) for count in counts})
    try:
        for blue, green in backends():  # stopped when the loop ends, or an error leaves it
            with ExitStack() as exit:
                measure(Tier.start(workdir, blue, green, exit), curve, switches, requests, rate)
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'}): every process torn down", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(curve.lines()))
    return 0


def measure(grown: Tier, curve: Curve, switches: int, requests: int, rate: float) -> None:
    """``switches`` rounds (to green, to blue, ...), each switching every N once in turn, so
    that every N meets the same machine (other processes' bursts come and go in minutes): all
    the instances start, and before each switch every one shows the round's source color."""
    counts = list(curve.points)
    most = max(counts)
    everyone = grown.group(most)
    settings = {
        count: grown.group(count).settings(verify_responses=1, drain_timeout=10) for count in counts
    }
    urls = [f"{stack.routed_url}/api/probe" for stack in everyone.stacks.values()]
    seconds = TIER_SECONDS * len(counts)
    budget = requests * len(counts)
    watch = Watch(urls, total=budget, duration=seconds, pause=most / rate, armed_pause=ARMED_PAUSE)
    meter = CpuMeter(lambda: [*grown.pids(), *([watch.process.pid or 0] if watch.alive else [])])
    try:
        wait_for(lambda: int(watch.answered.value) >= most, 30, "the watch's first answers")
        meter.start()
        deadline = time.monotonic() + seconds - 30
        for number in range(switches):
            target = "green" if number % 2 == 0 else "blue"
            for count in counts:
                if budget - int(watch.answered.value) < 20 * most or time.monotonic() > deadline:
                    curve.stopped = f"stopped in round {number + 1}: the request or time bound"
                    break
                grown.show(settings[count].topology.other(target))
                note = watched_switch(watch, settings[count], target, curve.points[count])
                if note:
                    curve.stopped = f"n={count}, switch to {target} in round {number + 1}: {note}"
                    break
            if curve.stopped:
                break
        curve.cpu, curve.saturated = meter.line()
    finally:
        loads = watch.finish() if watch.alive else []
        watch.kill()
    _judge(curve, loads)


def watched_switch(watch: Watch, settings: Settings, target: str, point: Point) -> str:
    """One switch of ``point``'s instances, the watch armed on them at its first change; then
    each one's answer from the target awaited, and a trickle. What went wrong, or ""."""
    armed: list[int] = []

    def on_promote(plan: SwitchPlan) -> None:
        armed.append(watch.arm(plan.target, point.count))

    forced = forced_switch(settings, target, on_promote)
    result = forced.report.result
    if forced.report.exit_code != 0 or result is None or not armed:
        return " / ".join(forced.report.lines) or f"exit {forced.report.exit_code}"
    point.prepare.append(forced.prepare * 1000)
    point.results.append(result)
    wait_for(lambda: watch.seen(armed[0]), 15, f"every instance answering from {target}")
    answered = int(watch.answered.value)  # a trickle: about one more answer from each
    wait_for(lambda: int(watch.answered.value) >= answered + point.count, 30, "the trickle")
    return ""


def _judge(curve: Curve, loads: list[LoadResult]) -> None:
    """Each switch's latency (the first answer from its target through the last of its
    instances), and the requests and failures while each N switched."""
    curve.requests = sum(load.count for load in loads)
    curve.failed = sum(len(load.failed) for load in loads)
    for point in curve.points.values():
        mine = loads[: point.count]
        for result in point.results:
            firsts = [load.first_from(result.plan.target, result.started) for load in mine]
            ends = [first.end for first in firsts if first is not None]
            if len(ends) == len(mine) and ends:
                point.latencies.append((max(ends) - result.started) * 1000)
            else:
                point.notes.append(f"a switch to {result.plan.target} not seen on every instance")
            during = [
                sample
                for load in mine
                for sample in load.samples
                if result.started <= sample.start <= result.finished
            ]
            point.requests += len(during)
            point.failed += sum(sample.failed for sample in during)
            point.notes += [f"failed: {s.kind} {s.error or s.status}" for s in during if s.failed][
                :3
            ]


if __name__ == "__main__":
    raise SystemExit(main())
