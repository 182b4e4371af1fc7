"""Benchmark: what the Docker stack costs while it sits idle, and the deploy -> healthy wait.

The stack as after scripts/demo: the shared services and both colors (ten containers), no
traffic. For each health-check interval measured, it brings the stack up at that interval,
re-creates green ``--deploys`` times (alternating v1.0.0 and v1.1.0) timing compose up to every
container healthy, then samples the CPU for ``--seconds``:

    idle_cpu       the host as a whole (/proc/stat busy jiffies), in cores; goal <= 0.1
    stack_cpu      dockerd, containerd, every containerd-shim and what runs under them (the
                   containers, runc, the health checks), the docker-proxies, and HAProxy of
                   the local stack (scripts/local_stack.py's) when one runs: the stack's own part
                   of idle_cpu, apart from whatever else runs on a shared machine
    deploy_to_healthy  p50 and max over the re-creations

Intervals: the compose file's default (calm: ``compose up -d``, then each container's own
health check run until it passes, as ``bluegreen deploy`` does), and with ``--compare-fast``
also ``HEALTHCHECK_INTERVAL=1s`` with ``compose up -d --wait`` (the former default and wait).
``--baseline`` samples the host with the stack down first. Takes Docker for a few minutes;
the stack is left as found (up at the default interval if it was up, else stopped, data kept).

    .venv/bin/python -m benchmarks.idle [--seconds 60] [--deploys 5] [--compare-fast]
                                        [--baseline] [--detail]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from python_on_whales import DockerClient

import docker
from pytest_bluegreen.engines.compose import PROJECT_LABEL, compose_containers, wait_serving
from pytest_bluegreen.judge.load import percentile

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"
PROJECT = "sutazai"
SHARED = ["postgres", "redis", "neo4j", "ollama"]
COLORS = {c: [f"{c}-backend", f"{c}-frontend", f"{c}-agents"] for c in ("blue", "green")}
TAGS = {"blue": "v1.0.0", "green": "v1.1.0"}
GOAL_CORES = 0.1
TICKS = os.sysconf("SC_CLK_TCK")
# roots of the stack's process trees: everything under them counts (containers, runc, checks)
STACK_ROOTS = ("dockerd", "containerd", "containerd-shim")
# on the command line of the HAProxy scripts/local_stack.py starts (of any checkout)
LOCAL_HAPROXY = b"/.bluegreen/local/haproxy.pid"


def host_busy_ticks() -> int:
    """Busy jiffies of every CPU since boot (all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    ticks: int  # its own CPU and that of its children it has reaped


def processes() -> dict[int, Proc]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[1] is ppid; utime, stime, cutime, cstime are fields 14 to 17 of stat
        ticks = sum(int(v) for v in fields[11:15])
        if comm == "haproxy" and LOCAL_HAPROXY not in cmdline:
            comm = "haproxy (other)"  # a test's HAProxy, not the local stack's
        found[int(entry.name)] = Proc(int(fields[1]), comm, ticks)
    return found


def stack_groups(procs: dict[int, Proc]) -> dict[int, str]:
    """pid -> the part of the stack it belongs to (its root's name: dockerd, containerd,
    containerd-shim, haproxy), for every process of the stack."""
    groups = {
        pid: p.comm
        for pid, p in procs.items()
        if p.comm.startswith(STACK_ROOTS) or p.comm == "haproxy"
    }
    frontier = set(groups)
    while frontier:
        children = {pid for pid, p in procs.items() if p.ppid in frontier} - set(groups)
        for pid in children:
            groups[pid] = groups[procs[pid].ppid]
        frontier = children
    return groups


@dataclass(frozen=True)
class Sample:
    host: float  # cores busy, the host as a whole
    parts: dict[str, float]  # cores busy, per part of the stack
    commands: dict[str, float]  # cores busy, per process name (reaped children in their parent)

    @property
    def stack(self) -> float:
        return sum(self.parts.values())

    def top(self, count: int = 10) -> str:
        ranked = sorted(self.commands.items(), key=lambda item: -item[1])[:count]
        return ", ".join(f"{name} {cores:.3f}" for name, cores in ranked)

    def line(self) -> str:
        parts = ", ".join(f"{name} {cores:.3f}" for name, cores in sorted(self.parts.items()))
        return (
            f"idle_cpu={self.host:.3f} cores (goal <= {GOAL_CORES}: ratio "
            f"{self.host / GOAL_CORES:.2f}), stack_cpu={self.stack:.3f} cores ({parts})"
        )


def sample(seconds: float) -> Sample:
    """The host's and the stack's cores busy over ``seconds``. A process of the stack alive
    at the end counts from the start (or from 0 when it started meanwhile); one that ended
    meanwhile counts in its parent's reaped-children time."""
    before_host, before = host_busy_ticks(), processes()
    start = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    after_host, after = host_busy_ticks(), processes()
    elapsed = time.monotonic() - start
    ticks: dict[str, int] = {}
    commands: dict[str, int] = {}
    for pid, group in stack_groups(after).items():
        earlier = before.get(pid)
        same = earlier is not None and earlier.comm == after[pid].comm
        used = after[pid].ticks - (earlier.ticks if same and earlier else 0)
        name = "containers" if group.startswith("containerd-shim") else group
        ticks[name] = ticks.get(name, 0) + used
        commands[after[pid].comm] = commands.get(after[pid].comm, 0) + used

    def cores(of: dict[str, int]) -> dict[str, float]:
        return {name: t / TICKS / elapsed for name, t in of.items()}

    return Sample((after_host - before_host) / TICKS / elapsed, cores(ticks), cores(commands))


def compose() -> DockerClient:
    """The stack's compose client; the compose CLI reads the variables from os.environ."""
    return DockerClient(compose_files=[COMPOSE_FILE], compose_project_name=PROJECT)


@dataclass
class Mode:
    label: str
    interval: str | None  # HEALTHCHECK_INTERVAL; None: the compose file's default
    docker_wait: bool  # compose up --wait (the former way) rather than our own checks

    def up(self, sdk: docker.DockerClient, services: list[str], **env: str) -> float:
        """compose up the services and wait until healthy: seconds taken."""
        os.environ.update(env)
        if self.interval is None:
            os.environ.pop("HEALTHCHECK_INTERVAL", None)
        else:
            os.environ["HEALTHCHECK_INTERVAL"] = self.interval
        start = time.monotonic()
        dc = compose()
        if self.docker_wait:
            dc.compose.up(services, detach=True, wait=True, wait_timeout=120, quiet=True)
        else:
            dc.compose.up(services, detach=True, quiet=True)
        waited = wait_serving(sdk, PROJECT, services, timeout=120)  # at once after --wait
        if not waited.serving:
            raise SystemExit(f"not healthy within 120s: {', '.join(waited.brief())}")
        return time.monotonic() - start


def measure(
    mode: Mode, sdk: docker.DockerClient, seconds: float, deploys: int, detail: bool
) -> str:
    env = {f"{c.upper()}_TAG": tag for c, tag in TAGS.items()}
    compose().compose.down(quiet=True)  # each interval from the same start (data kept)
    shared_up = mode.up(sdk, SHARED, **env)
    for services in COLORS.values():
        mode.up(sdk, services, **env)
    times = []
    for n in range(deploys):
        tag = "v1.0.0" if n % 2 == 0 else "v1.1.0"
        times.append(mode.up(sdk, COLORS["green"], **{**env, "GREEN_TAG": tag}))
    if deploys % 2:  # green back at its usual tag
        mode.up(sdk, COLORS["green"], **env)
    idle = sample(seconds)
    interval = mode.interval or "default"
    deployed = (
        f"p50={percentile(times, 50):.2f}s max={max(times):.2f}s over {len(times)}"
        if times
        else "-"
    )
    print(
        f"[{mode.label}] HEALTHCHECK_INTERVAL={interval}: {idle.line()} over {seconds:g}s; "
        f"deploy_to_healthy {deployed}; shared services up from down {shared_up:.1f}s",
        flush=True,
    )
    if detail:
        print(f"[{mode.label}] the stack's processes, busiest first: {idle.top()}", flush=True)
    return f"{percentile(times, 50):.2f}" if times else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling window")
    parser.add_argument("--deploys", type=int, default=5, help="re-creations of green timed")
    parser.add_argument("--compare-fast", action="store_true", help="also the 1 s interval")
    parser.add_argument("--baseline", action="store_true", help="first the host, stack down")
    parser.add_argument("--detail", action="store_true", help="the busiest processes too")
    args = parser.parse_args()
    if not 5 <= args.seconds <= 600:
        parser.error("--seconds must be between 5 and 600")
    sdk = docker.from_env()
    was_up = any(c.status == "running" for c in compose_containers(sdk, PROJECT))
    haproxy = any(p.comm == "haproxy" for p in processes().values())
    others = [str(c.name) for c in sdk.containers.list() if c.labels.get(PROJECT_LABEL) != PROJECT]
    print(
        f"local stack HAProxy: {'running' if haproxy else 'not running (not counted)'}; "
        f"other containers running (counted in stack_cpu): {', '.join(others) or 'none'}"
    )
    try:
        if args.baseline:
            compose().compose.down(quiet=True)
            print(f"[baseline] stack down: {sample(args.seconds).line()}", flush=True)
        calm = os.environ.get("HEALTHCHECK_INTERVAL")  # None: the compose file's default
        modes = [Mode("calm", calm, docker_wait=False)]
        if args.compare_fast:
            modes.insert(0, Mode("former", "1s", docker_wait=True))
        p50 = {
            mode.label: measure(mode, sdk, args.seconds, args.deploys, args.detail)
            for mode in modes
        }
        if args.compare_fast and "-" not in p50.values():
            ratio = float(p50["calm"]) / float(p50["former"])
            print(f"deploy_to_healthy p50: calm/former={ratio:.2f} (goal <= 1)")
    finally:
        if not was_up:
            compose().compose.down(quiet=True)  # the data volume is kept
        sdk.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
