"""A multi-node Docker swarm on this machine: N nodes, each a Docker-in-Docker container of
``bluegreen/node:bookworm`` (docker/node: Debian's docker.io on the local base) with its own
data root (a volume, overlay2 inside), on a bridge network of its own (``bgnodes-<random>``);
one manager, the others workers, joined into one swarm. Nothing else on the machine is used:
the host engine never joins this swarm (its own swarm state is not touched).

- The nodes run without ``--privileged``: this machine's engine lacks CAP_SYS_RESOURCE, which
  ``--privileged`` asks for (runc: "unable to apply caps: operation not permitted"). Every
  other capability, no seccomp or AppArmor profile, unmasked /proc, and the node's own cgroups
  remounted read-write (docker/node/entrypoint.sh) are enough for dockerd inside.
- Images reach every node without a registry: ``docker save`` once, ``docker load`` on each
  node (:meth:`Cluster.load`).
- The manager's Docker API, and whatever the tests put there (HAProxy's Runtime API socket, its
  configuration), are in a folder shared with the host (``<workdir>/manager`` is the manager's
  ``/bluegreen``): ``DOCKER_HOST=unix://<workdir>/manager/docker.sock`` drives the swarm from
  the host. Ports published on a node are reached at the node's address on the bridge.

Everything made here carries the label ``bluegreen.cluster=<name>`` (containers, volumes, the
network) and :meth:`Cluster.down` removes exactly that, and the node image when this cluster
built it (the image's label says which). A run killed before its teardown (SIGTERM, SIGKILL)
leaves its cluster: each object also names its owner (``bluegreen.cluster.owner``: the test
process's pid, or ``scripts/cluster``), and :func:`reclaim` (run before every ``up``) removes
the clusters whose owning process is gone and reports the others. Run it by hand with
``scripts/cluster up|status|down``.

A node is root on this machine's kernel in all but name (every capability, no seccomp, the
host's cgroup hierarchies mountable): as ``--privileged`` would be. Run it on a machine you
can give that to.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from .stack import ROOT, NotYet, wait_for

NODE_IMAGE = "bluegreen/node:bookworm"
LABEL = "bluegreen.cluster"
OWNER = "bluegreen.cluster.owner"  # the pid of the process whose teardown removes it
BUILT = "bluegreen.cluster.built"  # on the node image: the cluster that built it
SCRIPT_OWNER = "scripts/cluster"  # a cluster of scripts/cluster: its down removes it
# every capability the engine has (not CAP_SYS_RESOURCE), nothing masked: see the docstring
NODE_RIGHTS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
)  # fmt: skip
SHARED = "/bluegreen"  # the manager's folder shared with the host
USER_STATE = ROOT / ".bluegreen" / "cluster.json"  # scripts/cluster's cluster


def host_docker(
    *args: str, check: bool = True, timeout: float = 300, stdin: str | None = None
) -> str:
    """The host's own engine (never DOCKER_HOST: that may point at a cluster's manager)."""
    done = subprocess.run(
        ["docker", "--host", "unix:///var/run/docker.sock", *args],
        capture_output=True, text=True, timeout=timeout, check=False, input=stdin,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


@dataclass
class Cluster:
    """A swarm of ``workers + 1`` Docker-in-Docker nodes (see the module's docstring)."""

    workdir: Path
    workers: int = 2
    name: str = field(default_factory=lambda: f"bgnodes-{secrets.token_hex(4)}")
    built_image: bool = False  # up built NODE_IMAGE: down removes it
    owner: str = field(default_factory=lambda: str(os.getpid()))

    @property
    def manager(self) -> str:
        return f"{self.name}-manager"

    @property
    def nodes(self) -> list[str]:
        """The node containers' names (also their hostnames, as Swarm reports them)."""
        return [self.manager, *(f"{self.name}-worker{i}" for i in range(1, self.workers + 1))]

    @property
    def shared(self) -> Path:
        return self.workdir / "manager"

    @property
    def docker_host(self) -> str:
        """DOCKER_HOST for the manager's engine, from the host."""
        return f"unix://{self.shared / 'docker.sock'}"

    def address(self, node: str) -> str:
        """The node's address on the cluster's bridge (reachable from the host)."""
        return host_docker(
            "inspect", "--format",
            f'{{{{(index .NetworkSettings.Networks "{self.name}").IPAddress}}}}', node,
        ).strip()  # fmt: skip

    def on(self, node: str, *args: str, check: bool = True, timeout: float = 300) -> str:
        """``docker ARGS`` run by the node's own engine."""
        return host_docker("exec", node, "docker", *args, check=check, timeout=timeout)

    # -- up and down -------------------------------------------------------------------------
    def up(self) -> None:
        """Build the node image if missing, start the nodes, join them into one swarm. Any
        failure takes down what was made."""
        try:
            self._up()
        except BaseException:
            self.down()
            raise

    def _up(self) -> None:
        if not host_docker("image", "ls", "-q", NODE_IMAGE).strip():
            self.built_image = True  # before: an up stopped mid-build still removes it
            host_docker(
                "build", "-q", "--label", f"{BUILT}={self.name}", "-t", NODE_IMAGE,
                str(ROOT / "docker" / "node"), timeout=900,
            )  # fmt: skip
        self.shared.mkdir(parents=True, exist_ok=True)
        labels = ["--label", f"{LABEL}={self.name}", "--label", f"{OWNER}={self.owner}"]
        host_docker("network", "create", *labels, self.name)
        for node in self.nodes:
            host_docker("volume", "create", *labels, f"{node}-data")
            mounts = ["-v", f"{node}-data:/var/lib/docker"]
            extra: list[str] = []
            if node == self.manager:
                mounts += ["-v", f"{self.shared}:{SHARED}"]
                extra = ["--host", f"unix://{SHARED}/docker.sock"]
            host_docker(
                "run", "-d", "--name", node, "--hostname", node, *labels,
                "--network", self.name, *NODE_RIGHTS, *mounts, NODE_IMAGE, *extra,
            )  # fmt: skip
        for node in self.nodes:
            wait_for(partial(self._answers, node), 60, f"dockerd on {node}", interval=0.5)
        manager = self.address(self.manager)
        self.on(self.manager, "swarm", "init", "--advertise-addr", manager)
        token = self.on(self.manager, "swarm", "join-token", "-q", "worker").strip()
        for node in self.nodes[1:]:
            self.on(node, "swarm", "join", "--token", token, f"{manager}:2377")
        wait_for(self._all_ready, 60, "every node Ready in the swarm", interval=0.5)

    def _answers(self, node: str) -> bool:
        state = host_docker("inspect", "--format", "{{.State.Status}}", node).strip()
        if state != "running":
            logs = subprocess.run(
                ["docker", "--host", "unix:///var/run/docker.sock", "logs", "--tail", "5", node],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            raise RuntimeError(f"node {node} is {state}: {logs.stderr.strip()}")
        return bool(self.on(node, "info", "--format", "{{.ID}}", check=False).strip())

    def node_states(self) -> dict[str, str]:
        """hostname -> Swarm's status of the node (ready, down, unknown), per the manager."""
        out = self.on(self.manager, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def _all_ready(self) -> bool:
        states = self.node_states()
        if sorted(states) != sorted(self.nodes) or set(states.values()) != {"Ready"}:
            raise NotYet(f"nodes: {states}")
        return True

    def down(self) -> None:
        """Remove what :meth:`up` made: the nodes (their swarm and everything in it goes with
        them), their volumes, the network, and the node image if this cluster built it."""
        remove(self.name)
        self.built_image = False
        shutil.rmtree(self.shared, ignore_errors=True)

    # -- images and faults -------------------------------------------------------------------
    def load(self, images: list[str], nodes: list[str] | None = None) -> None:
        """Put the host's ``images`` on every node (or on ``nodes``): one ``docker save``,
        one ``docker load`` per node."""
        with tempfile.NamedTemporaryFile(dir=self.workdir, suffix=".tar") as archive:
            host_docker("save", "-o", archive.name, *images, timeout=600)
            for node in nodes or self.nodes:
                with open(archive.name, "rb") as source:
                    subprocess.run(
                        ["docker", "--host", "unix:///var/run/docker.sock", "exec", "-i", node,
                         "docker", "load", "-q"],
                        stdin=source, capture_output=True, check=True, timeout=600,
                    )  # fmt: skip

    def pause(self, node: str) -> None:
        host_docker("pause", node)

    def unpause(self, node: str) -> None:
        host_docker("unpause", node, check=False)

    def kill(self, node: str) -> None:
        host_docker("kill", node)

    def restart(self, node: str) -> None:
        """A node killed or stopped started again: its dockerd comes back on its own data root
        and rejoins the swarm (its swarm state is there); returns once every node is Ready."""
        if host_docker("inspect", "--format", "{{.State.Status}}", node).strip() != "running":
            host_docker("start", node)
        wait_for(partial(self._answers, node), 60, f"dockerd on {node}", interval=0.5)
        wait_for(self._all_ready, 90, "every node Ready in the swarm", interval=0.5)

    def addresses_on(self, node: str, network: str) -> set[str]:
        """The addresses the node's running containers have on ``network`` (an overlay)."""
        ids = self.on(node, "ps", "-q").split()
        if not ids:
            return set()
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        out = self.on(node, "inspect", "--format", template, *ids, check=False)
        return {line.strip() for line in out.splitlines() if line.strip() not in {"", "<no value>"}}

    def status(self) -> dict[str, object]:
        nodes = {n: self.address(n) for n in self.nodes}
        return {**asdict(self), "workdir": str(self.workdir), "nodes": nodes,
                "swarm": self.node_states(), "DOCKER_HOST": self.docker_host}  # fmt: skip


def remove(name: str) -> None:
    """Remove the cluster ``name``'s containers, volumes and network, and the node image if
    that cluster built it (and no other node runs it: else it stays, and is said so)."""
    label = f"label={LABEL}={name}"
    containers = host_docker("ps", "-aq", "--filter", label).split()
    if containers:
        host_docker("rm", "-f", "-v", *containers)
    volumes = host_docker("volume", "ls", "-q", "--filter", label).split()
    if volumes:
        host_docker("volume", "rm", *volumes)
    for network in host_docker("network", "ls", "-q", "--filter", label).split():
        host_docker("network", "rm", network)
    if host_docker("image", "ls", "-q", "--filter", f"label={BUILT}={name}", NODE_IMAGE).strip():
        done = host_docker("image", "rm", NODE_IMAGE, check=False)
        if not done.strip():
            print(f"{NODE_IMAGE} left: another cluster's nodes run it", file=sys.stderr)


def clusters() -> dict[str, str]:
    """Every cluster on this machine's engine: name -> owner (a pid, ``scripts/cluster``, or
    ``?`` for one made before owners were labelled)."""
    found: dict[str, str] = {}
    template = f'{{{{.Label "{LABEL}"}}}} {{{{.Label "{OWNER}"}}}}'
    for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        out = host_docker(*kind, "--filter", f"label={LABEL}", "--format", template)
        for line in out.splitlines():
            name, _, owner = line.strip().partition(" ")
            if name:
                found.setdefault(name, owner.strip() or "?")
    return found


def _gone(owner: str) -> bool:
    """The owner is a pid no process has now (its run was killed before its teardown)."""
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def reclaim() -> tuple[list[str], dict[str, str]]:
    """Remove the clusters whose owning process is gone; returns their names and the other
    clusters on the machine (name -> owner), which are reported, never touched."""
    removed, others = [], {}
    for name, owner in clusters().items():
        if _gone(owner):
            remove(name)
            removed.append(name)
        else:
            others[name] = owner
    return removed, others


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # up's cleanup runs, as for Ctrl-C


def _down_named(name: str, known: dict[str, object] | None) -> int:
    if known and known["name"] == name:
        print(f"{name} is this checkout's cluster: scripts/cluster down")
        return 1
    remove(name)
    print(f"{name}: removed")
    return 0


def _reclaim_and_report(known: dict[str, object] | None) -> None:
    removed, others = reclaim()
    for name in removed:
        print(f"{name}: removed (left by a killed test run)")
    for name, owner in others.items():
        if not known or name != known["name"]:
            print(f"{name}: another cluster on this machine (owner {owner}; "
                  f"scripts/cluster down --name {name} removes it)")  # fmt: skip


def _up(workers: int, known: dict[str, object] | None) -> int:
    if known:
        print(f"a cluster is up already: {known['name']} (scripts/cluster down first)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bgnodes-"))
    cluster = Cluster(workdir, workers=workers, owner=SCRIPT_OWNER)
    try:
        cluster.up()
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: up removed what it made
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"{cluster.name}: interrupted, removed", file=sys.stderr)
        return 130
    USER_STATE.parent.mkdir(exist_ok=True)
    USER_STATE.write_text(json.dumps({**asdict(cluster), "workdir": str(workdir)}))
    print(json.dumps(cluster.status(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """scripts/cluster: up | status | down (the cluster in .bluegreen/cluster.json)."""
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "status", "down"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", help="down: a cluster left by a killed run (status lists them)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    known = json.loads(USER_STATE.read_text()) if USER_STATE.exists() else None
    if args.command == "down" and args.name:
        return _down_named(args.name, known)
    _reclaim_and_report(known)
    if args.command == "up":
        return _up(args.workers, known)
    if not known:
        print("no cluster is up (scripts/cluster up)")
        return 1 if args.command == "status" else 0
    cluster = Cluster(Path(known["workdir"]), known["workers"], known["name"])
    if args.command == "status":
        print(json.dumps(cluster.status(), indent=2))
        return 0
    cluster.down()
    shutil.rmtree(cluster.workdir, ignore_errors=True)
    USER_STATE.unlink()
    print(f"{cluster.name}: removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
