"""The Swarm engine on a real multi-node swarm (issue 26): three Docker-in-Docker nodes on this
machine (tests/support/cluster.py: one manager, two workers, on a bridge network of their own),
the bundled swarm stack on it with 2 replicas per color spread over the nodes, HAProxy in a
container on the manager on the stack's overlay network (reaching replicas on every node), and
the gate run from the host as a user runs it, with ``DOCKER_HOST`` at the manager.

- a gated cycle under bounded load (to the manager's bridge address only): 0 failed requests,
  each color's replicas on two different nodes, as ``bluegreen status`` shows;
- a worker paused while the new color's checks run: the gate either switches on a healthy set
  (every HAProxy slot of the color UP, as many as asked) or refuses, and says which;
- the manager's API unreachable when ``--deploy`` starts: one clear line, exit 9, nothing
  switched.

Run it alone with ``-m cluster`` (its nodes take a few hundred MB and a minute to come up);
under the shared lock (``flock /tmp/bluegreen-docker.lock``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.answers import RuntimeApiError, RuntimeApiUnreachable, StatRow
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.settings import resolve
from pytest_bluegreen.switch.consistency import inconsistencies
from tests.support.cli import BLUEGREEN
from tests.support.cluster import SHARED, Cluster, host_docker
from tests.support.faults import PROBE_PAUSE
from tests.support.stack import ROOT, wait_for
from tests.support.swarm import HAPROXY_IMAGE, INSIDE, SLOTS, SwarmStack, docker
from tests.support.switching import LoadProcess

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http):
    response = http.get("/health")
    assert response.status_code == 200, response.text


@pytest.mark.quick
def test_items(http):
    response = http.post("/api/items", json={"name": "nodes"})
    assert response.status_code == 201, response.text
"""

# before the first check: pause the node PAUSE_NODE names (a container of the host's engine);
# before the switch's step KILL_STEP: kill the node KILL_NODE names
PAUSE_HOOK = """
import os
import subprocess

_paused = []


def pytest_runtest_setup(item):
    node = os.environ.get("PAUSE_NODE")
    if node and not _paused:
        _paused.append(node)
        subprocess.run(
            ["docker", "--host", "unix:///var/run/docker.sock", "pause", node],
            check=True, capture_output=True,
        )


def pytest_bluegreen_switch_step(config, step, plan):
    node = os.environ.get("KILL_NODE")
    if node and step == os.environ.get("KILL_STEP"):
        subprocess.run(
            ["docker", "--host", "unix:///var/run/docker.sock", "kill", node],
            check=True, capture_output=True,
        )
"""


@dataclass
class ClusterStack(SwarmStack):
    """The swarm stack on the cluster's manager, HAProxy in a container there; the ports it
    publishes are the manager's, at the manager's bridge address."""

    cluster: Cluster | None = None

    @property
    def nodes(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    @property
    def run_dir(self) -> Path:
        return self.nodes.shared / "run"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "DOCKER_HOST": self.nodes.docker_host}

    @property
    def routed_url(self) -> str:
        return f"http://{self.nodes.address(self.nodes.manager)}:{INSIDE['api']}"

    def direct_url(self, color: str) -> str:
        return f"http://{self.nodes.address(self.nodes.manager)}:{INSIDE[f'{color}_direct']}"

    def make_swarm(self) -> None:  # the cluster's swarm is there already
        pass

    def start_haproxy(self, **overrides: str) -> None:
        shared = self.nodes.shared
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "server-state").touch()
        shutil_copy(ROOT / "haproxy", shared / "haproxy")
        shutil_copy(self.cert.parent, shared / "cert")
        env = {
            "BG_REPLICAS": str(SLOTS),
            "BG_RUNTIME_SOCKET": "/run/bluegreen/admin.sock",
            "BG_SERVER_STATE_FILE": "/run/bluegreen/server-state",
            "BG_TLS_CERT": f"/etc/bluegreen-cert/{self.cert.name}",
            "BG_API_BIND": f"0.0.0.0:{INSIDE['api']}",
            "BG_BLUE_DIRECT_BIND": f"0.0.0.0:{INSIDE['blue_direct']}",
            "BG_GREEN_DIRECT_BIND": f"0.0.0.0:{INSIDE['green_direct']}",
            "BG_STATS_BIND": f"0.0.0.0:{INSIDE['stats']}",
            "BG_HTTP_BIND": "127.0.0.1:8080",
            "BG_HTTPS_BIND": "127.0.0.1:8443",
            "BG_FRONTEND_BIND": "127.0.0.1:20011",
            "BG_BLUE_API_TASKS": f"tasks.{self.name}_blue-api:8000",
            "BG_GREEN_API_TASKS": f"tasks.{self.name}_green-api:8000",
            "BG_CHECK_INTER": "500ms",
            "BG_RATE_LIMIT": "100000000",
            **overrides,
        }
        self.slots = int(env["BG_REPLICAS"])
        args = ["run", "-d", "--name", self.haproxy_name, "--network", self.network]
        args += ["-v", f"{SHARED}/haproxy:/etc/haproxy:ro"]
        args += ["-v", f"{SHARED}/cert:/etc/bluegreen-cert:ro"]
        args += ["-v", f"{SHARED}/run:/run/bluegreen"]
        for name in ("api", "blue_direct", "green_direct", "stats"):
            args += ["-p", f"{INSIDE[name]}:{INSIDE[name]}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        self.nodes.on(self.nodes.manager, "rm", "-f", self.haproxy_name, check=False)
        self.socket.unlink(missing_ok=True)
        self.nodes.on(self.nodes.manager, *args, HAPROXY_IMAGE)
        wait_for(
            lambda: RuntimeApi(f"unix:{self.socket}", timeout=2).show_info(),
            30,
            "HAProxy's Runtime API to answer",
            interval=0.1,
            retry=(RuntimeApiUnreachable,),
        )

    def close(self) -> None:
        self.nodes.on(self.nodes.manager, "rm", "-f", self.haproxy_name, check=False)
        docker("stack", "rm", self.name, check=False)


def shutil_copy(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


@pytest.fixture(scope="module")
def stack(
    docker_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, tls_cert: Path
) -> Iterator[ClusterStack]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DOCKER_HOST", docker_cluster.docker_host)  # swarm.py's docker(): the manager's
        stack = ClusterStack(tmp_path_factory.mktemp("multinode"), tls_cert, cluster=docker_cluster)
        try:
            stack.start()
            yield stack
        finally:
            stack.close()


def _write(stack: ClusterStack, **overrides: object) -> None:
    (stack.workdir / "bluegreen.toml").write_text(stack.settings_toml(**overrides))
    (stack.workdir / "test_checks.py").write_text(CHECKS)
    (stack.workdir / "conftest.py").write_text(PAUSE_HOOK)


def _run(stack: ClusterStack, command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=stack.workdir, env={**stack.env, **env}, capture_output=True, text=True,
        timeout=400, check=False,
    )  # fmt: skip


def _gate(stack: ClusterStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    return _run(stack, [*pytest_cmd, *args], **env)


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _served(stack: ClusterStack) -> tuple[str, str]:
    answer = requests.get(f"{stack.routed_url}/version", timeout=5).json()
    return str(answer["color"]), str(answer["version"])


def _up(stack: ClusterStack, color: str) -> int:
    rows = RuntimeApi(str(stack.socket), timeout=2).show_stat()
    return sum(
        1
        for r in rows
        if r.backend == "api_backend" and r.server.startswith(f"{color}-") and r.is_up
    )


def _replicas(stack: ClusterStack, color: str) -> list[dict[str, str]]:
    shown = json.loads(_run(stack, [*BLUEGREEN, "status", "--json"]).stdout)
    return [r for r in shown["colors"][color]["replicas"] if r["state"] == "running"]


def test_a_gated_cycle_across_nodes_under_load(stack: ClusterStack) -> None:
    _write(stack)
    wait_for(lambda: _up(stack, "blue") == 2 and _up(stack, "green") == 2, 90, "4 replicas UP")
    for color in ("blue", "green"):
        nodes = {r["node"] for r in _replicas(stack, color)}
        assert len(nodes) == 2, (color, nodes)  # spread: two replicas, two nodes
        assert nodes <= set(stack.nodes.nodes)
    live, _ = _served(stack)
    idle = "green" if live == "blue" else "blue"
    load = LoadProcess(f"{stack.routed_url}/version", 200_000, 300, 1, pause=PROBE_PAUSE)
    wait_for(lambda: load.answered.value >= 20, 30, "the load to answer")
    try:
        result = _gate(stack, "--env", idle, "--deploy", "v1.1.0", "--switch")
        print(_out(result))
        assert result.returncode == 0, _out(result)
        assert f"{idle}: 2/2 replicas healthy" in result.stdout
        assert _served(stack) == (idle, "v1.1.0")
        replicas = _replicas(stack, idle)
        assert [r["tag"] for r in replicas] == ["v1.1.0"] * 2
        assert len({r["node"] for r in replicas}) == 2, replicas
    finally:
        measured = load.finish(60)
    failed = [f"{s.kind}: {s.error or s.status}" for s in measured.failed]
    print(f"load: {measured.count} requests, {len(failed)} failed")
    assert failed == [], failed[:10]
    assert measured.count > 100


def test_a_worker_paused_during_verification(stack: ClusterStack) -> None:
    _write(stack, up_wait=30)
    live, version = _served(stack)
    idle = "green" if live == "blue" else "blue"
    wait_for(lambda: _up(stack, idle) == 2, 90, f"{idle}'s 2 replicas UP")
    workers = [r["node"] for r in _replicas(stack, idle) if r["node"] != stack.nodes.manager]
    assert workers, "no replica of the idle color on a worker"
    victim = workers[0]
    try:
        result = _gate(stack, "--env", idle, "--switch", PAUSE_NODE=victim)
        out = _out(result)
        print(out)
        # the fault happened (a pause that failed would error the checks: a refusal too)
        paused = host_docker("inspect", "--format", "{{.State.Paused}}", victim).strip()
        assert paused == "true", out
        if result.returncode == 0:  # switched: on a full healthy set, never on fewer
            assert "SWITCH: switched" in out, out
            assert _served(stack)[0] == idle
            assert _up(stack, idle) >= 2, out
            assert victim not in {r["node"] for r in _replicas(stack, idle)}
        else:  # refused by the checks (exit 1): the live color still serves, and it says so
            assert result.returncode == 1, out
            assert _served(stack) == (live, version)
            assert f"traffic stays on {live}" in out, out
    finally:
        stack.nodes.unpause(victim)
    wait_for(lambda: set(stack.nodes.node_states().values()) == {"Ready"}, 90, "nodes Ready")


def test_the_manager_unreachable_at_deploy_is_one_line_and_exit_9(stack: ClusterStack) -> None:
    _write(stack)
    live, version = _served(stack)
    idle = "green" if live == "blue" else "blue"
    before = RuntimeApi(str(stack.socket), timeout=2).servers_state("api_backend")
    socket = stack.nodes.shared / "docker.sock"
    aside = socket.with_name("docker.sock.aside")
    socket.rename(aside)  # the manager's API: nothing answers at DOCKER_HOST
    try:
        result = _gate(stack, "--env", idle, "--deploy", "v1.0.0", "--switch")
    finally:
        aside.rename(socket)
    out = _out(result)
    print(out)
    assert result.returncode == 9, out
    # the gate's line, once on the terminal (pytest echoes a pytest.exit's reason on stderr)
    said = [line for line in result.stdout.splitlines() if "Docker engine not reachable" in line]
    assert len(said) == 1, out
    assert f"deploy failed: Docker engine not reachable at {stack.env['DOCKER_HOST']}" in said[0]
    assert _served(stack) == (live, version)
    after = RuntimeApi(str(stack.socket), timeout=2).servers_state("api_backend")
    # nothing switched: the states a switch sets (a slot DNS filled or emptied meanwhile, as
    # Swarm moves a replica, is no switch)
    assert [(s.server, s.admin, s.uweight) for s in after] == [
        (s.server, s.admin, s.uweight) for s in before
    ]
    state = stack.nodes.on(stack.nodes.manager, "info", "--format", "{{.Swarm.LocalNodeState}}")
    assert state.strip() == "active"


@dataclass
class DeadSlots:
    """Watches HAProxy while a node is lost: for each api_backend slot at one of the node's
    addresses, when its health checks first marked it DOWN (or DNS emptied it) and its
    sessions (``stot``) then."""

    stack: ClusterStack
    addresses: set[str]
    marked: dict[str, tuple[float, str, int]] = field(default_factory=dict)  # slot: t, addr, stot
    stop: threading.Event = field(default_factory=threading.Event)

    def look(self) -> list[StatRow]:
        rows = RuntimeApi(str(self.stack.socket), timeout=2).show_stat()
        return [r for r in rows if r.backend == "api_backend" and r.server[-1].isdigit()]

    def watch(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            with contextlib.suppress(RuntimeApiError):
                for row in self.look():
                    address = row.raw.get("addr", "").rsplit(":", 1)[0]
                    gone = row.status.startswith("DOWN") or row.empty
                    if address in self.addresses and gone and row.server not in self.marked:
                        self.marked[row.server] = (now, address, row.stot)
            self.stop.wait(0.1)

    def all_marked(self, slots: set[str]) -> bool:
        return slots <= set(self.marked)

    def sessions_since_marked(self) -> dict[str, int]:
        """Sessions HAProxy gave each marked slot after marking it (a slot DNS has since
        filled with another replica's address is not that dead replica any more)."""
        now = {r.server: r for r in self.look()}
        return {
            slot: now[slot].stot - stot
            for slot, (_, address, stot) in self.marked.items()
            if now[slot].raw.get("addr", "").rsplit(":", 1)[0] == address
        }


def test_a_worker_lost_during_the_drain(stack: ClusterStack) -> None:
    """A worker with replicas of both colors killed as the switch begins to drain the live
    color: the switch completes or reverts, one color takes traffic, nothing is left
    draining, and once HAProxy's checks mark the dead node's slots DOWN no request goes there
    (the requests in flight on it when it died are counted, not hidden)."""
    _write(stack)
    live, version = _served(stack)
    idle = "green" if live == "blue" else "blue"
    wait_for(lambda: _up(stack, idle) == 2 and _up(stack, live) == 2, 90, "4 replicas UP")
    on_worker = {
        color: {r["node"] for r in _replicas(stack, color)} - {stack.nodes.manager}
        for color in (live, idle)
    }
    victims = sorted(on_worker[live] & on_worker[idle]) or sorted(on_worker[live])
    assert victims, f"no replica of {live} on a worker: {on_worker}"
    victim = victims[0]
    addresses = stack.nodes.addresses_on(victim, stack.network)
    slots = {r.server for r in DeadSlots(stack, addresses).look()
             if r.raw.get("addr", "").rsplit(":", 1)[0] in addresses}  # fmt: skip
    assert slots, (victim, addresses)
    dead = DeadSlots(stack, addresses)
    watcher = threading.Thread(target=dead.watch, daemon=True)
    load = LoadProcess(f"{stack.routed_url}/version", 200_000, 300, 2, pause=PROBE_PAUSE)
    watcher.start()
    try:
        wait_for(lambda: load.answered.value >= 20, 30, "the load to answer")
        result = _gate(stack, "--env", idle, "--switch", KILL_NODE=victim, KILL_STEP="drain")
        out = _out(result)
        print(out)
        wait_for(lambda: dead.all_marked(slots), 60, f"{victim}'s slots {slots} marked DOWN")
        after = load.answered.value
        wait_for(lambda: load.answered.value >= after + 200, 60, "200 answers after the marks")
    finally:
        measured = load.finish(60)
        dead.stop.set()
        watcher.join(10)
    try:
        assert result.returncode in {0, 8}, out  # switched, or the switch failed and reverted
        api = RuntimeApi(str(stack.socket), timeout=2)
        states = {s.ref: s for s in api.servers_state("api_backend")}
        topology = resolve({}, {}, {}, stack.workdir).topology
        assert inconsistencies(states, topology) == [], out
        now = topology.live_color(states)
        if result.returncode == 0:
            assert "SWITCH: switched" in out, out
            assert now == idle
        else:
            assert "revert" in out.lower(), out
            assert now == live
            assert _served(stack) == (live, version)
        assert _served(stack)[0] == now
        marked_at = max(t for t, _, _ in dead.marked.values())
        late = [s for s in measured.failed if s.start > marked_at]
        early = [s for s in measured.failed if s.start <= marked_at]
        print(
            f"load: {measured.count} requests, {len(early)} failed before {victim}'s slots "
            f"were marked DOWN ({marked_at - measured.started:.1f}s into the load), "
            f"{len(late)} after; sessions to marked slots since: {dead.sessions_since_marked()}"
        )
        assert late == [], [f"{s.kind}: {s.error or s.status}" for s in late[:10]]
        assert set(dead.sessions_since_marked().values()) <= {0}
    finally:
        stack.nodes.restart(victim)
