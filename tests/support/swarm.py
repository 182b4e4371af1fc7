"""A single-node Docker swarm on the local engine running the bundled swarm stack
(docker/swarm-stack.yml), with HAProxy in a container on the stack's overlay network: the shape
``deploy_engine = "swarm"`` is made for (see docker/README.md). The swarm is left as found: when
this harness made it, it leaves it (and removes the bridge Swarm added); else only the stack and
the HAProxy container it started go. The stack, its network and the HAProxy container have
names of their own (``bgtest-<random>``): a swarm's ``bluegreen`` stack (the documented name)
and everything else on it are never touched.

Leaving a swarm drops the embedded DNS's records of the containers that were already running on
user-defined bridge networks (Docker 20.10, moby/moby#45144): a Compose stack that was up keeps
running, but its containers no longer resolve each other's names (``postgres``: "Name or
service not known"). So the harness notes those containers before it makes the swarm and, after
leaving it, restarts each whose name its neighbours no longer resolve (a restart registers it
again), waits until it is as healthy as it was before (a container that failed its health
check then only has to run), and fails loudly if a name still does not resolve.

Making and leaving a swarm is machine-wide, and the suite runs its Compose tests on one xdist
worker while its swarm tests run on another (tests/conftest.py: the ``docker`` and ``machine``
groups). So a swarm is made and left only under :func:`names_lock` held exclusively, which every
test of the ``docker`` group holds shared while it runs: a leave waits for the Compose test
running now, and the next waits for the names to come back. And a swarm is made once per test
session, not per module: :data:`LEASE` makes it for the first test that needs one and leaves it
when the session ends (or a test that needs no swarm asks), so it is left two or three times
a run instead of at every module's end.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bluegreen.engines.serving import health_command
from pytest_bluegreen.haproxy.answers import RuntimeApiUnreachable
from pytest_bluegreen.haproxy.runtime import RuntimeApi

from .stack import ROOT, NotYet, free_ports, wait_for

HAPROXY_IMAGE = "bluegreen/haproxy:2.6"
# one for the machine, as a swarm is: every test run on it, and the runs the tests start
NAMES_LOCK = Path(tempfile.gettempdir()) / "bluegreen-tests-swarm.lock"
# HAProxy's listeners inside its container (the bundled stack's ports): published elsewhere
INSIDE = {"api": 20010, "blue_direct": 21010, "green_direct": 21011, "stats": 8404}
SLOTS = 4  # per color: 2 replicas, and room for 2 more while an update starts them first


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()


def new_stack_name() -> str:
    return f"bgtest-{secrets.token_hex(4)}"


def running_replicas(stack: str, service: str) -> int:
    out = docker(
        "service", "ps", f"{stack}_{service}", "--filter", "desired-state=running",
        "--format", "{{.CurrentState}}", check=False,
    )  # fmt: skip
    return sum(1 for line in out.splitlines() if line.startswith("Running"))


@dataclass(frozen=True)
class Named:
    """A running container on a user-defined bridge network and the names it has there."""

    container: str  # its id
    network: str
    names: tuple[str, ...]  # its aliases (Compose's service name first), then its own name
    healthy: bool = True  # by Docker's word (or without a health check) when it was noted


def named_containers() -> list[Named]:
    ids = docker("ps", "-q").split()
    if not ids:
        return []
    found = []
    for info in json.loads(docker("inspect", *ids)):
        for network, endpoint in (info["NetworkSettings"]["Networks"] or {}).items():
            if network in {"bridge", "host", "none"}:
                continue
            names = (*(endpoint.get("Aliases") or ()), info["Name"].lstrip("/"))
            health = (info["State"].get("Health") or {}).get("Status", "healthy")
            found.append(Named(info["Id"], network, tuple(names), health == "healthy"))
    return found


def unresolved(named: list[Named]) -> list[Named]:
    """Those whose first name a neighbour on the same network does not resolve (neighbours
    without ``getent`` are not asked)."""
    members: dict[str, list[Named]] = defaultdict(list)
    for one in named:
        members[one.network].append(one)
    lost = []
    for network in members.values():
        for one in network:
            for asker in (m for m in network if m.container != one.container):
                done = subprocess.run(
                    ["docker", "exec", asker.container, "getent", "hosts", one.names[0]],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                if done.returncode in {126, 127}:  # no getent there: ask another neighbour
                    continue
                if done.returncode != 0:
                    lost.append(one)
                break
    return lost


def _lock_file(path: Path) -> int:
    """A descriptor on one of the machine's lock files, made if missing and readable by every
    user (``flock`` needs no more): a file another user made is opened, never re-created."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except PermissionError:  # made meanwhile by another user (fs.protected_regular)
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with suppress(PermissionError):
        os.fchmod(fd, 0o644)  # whatever this process's umask
    return fd


class _NamesLock:
    """:data:`names_lock`: one pair of descriptors per process, so that a process holding it
    shared (a Compose test running) may take it exclusively (its session's swarm left as its
    last test ends) and holds it shared again afterwards."""

    def __init__(self) -> None:
        self.fds: tuple[int, int] | None = None  # the turnstile's, the lock's
        self.shared = 0  # this process's shared holds
        self.exclusive = 0  # and exclusive ones

    def _open(self) -> tuple[int, int]:
        if self.fds is None:
            turn = _lock_file(NAMES_LOCK.with_suffix(".turn"))
            self.fds = (turn, _lock_file(NAMES_LOCK))
        return self.fds

    def close(self) -> None:
        """Let go of the descriptors (and so of any hold)."""
        for fd in self.fds or ():
            os.close(fd)
        self.fds = None
        self.shared = self.exclusive = 0

    def forget(self) -> None:
        """In a forked child: its copies closed, the parent's holds untouched (an unlock here
        would be the parent's: the descriptors share one lock)."""
        self.close()

    @contextmanager
    def __call__(self, *, exclusive: bool) -> Iterator[None]:
        turn, lock = self._open()
        if self.exclusive or (self.shared and not exclusive):  # held already as needed
            yield
            return
        counted = False
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)  # or converts
            counted = True
            if exclusive:
                self.exclusive += 1
            else:
                self.shared += 1
                fcntl.flock(turn, fcntl.LOCK_UN)
            yield
        finally:  # unlocking what is not held is a no-op: an interruption anywhere lets go
            if counted and exclusive:
                self.exclusive -= 1
            elif counted:
                self.shared -= 1
            fcntl.flock(lock, fcntl.LOCK_SH if self.shared else fcntl.LOCK_UN)
            fcntl.flock(turn, fcntl.LOCK_UN)


# Held shared by a Compose test while it runs, exclusively to make or leave a swarm. A
# turnstile (``<lock>.turn``) keeps a waiting leave from starving behind Compose tests that
# hold the lock shared one after the other: each passes it first, and a leave keeps it.
names_lock = _NamesLock()


def _forget_in_child() -> None:
    names_lock.forget()  # whichever is this module's now


os.register_at_fork(after_in_child=_forget_in_child)


def make_swarm() -> None:
    """A single-node swarm on this engine (under ``names_lock``, held by the caller)."""
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")


def leave_swarm(before: Sequence[Named] = ()) -> None:
    """Leave the swarm this harness made, then give back their names to the containers that
    were running (moby/moby#45144): those of ``before`` and those running now."""
    with names_lock(exclusive=True):
        _leave_swarm([*named_containers(), *before])  # as they are now first


def _leave_swarm(noted: list[Named]) -> None:
    seen: set[tuple[str, str]] = set()
    before = []
    for one in noted:
        if (one.container, one.network) not in seen:
            seen.add((one.container, one.network))
            before.append(one)
    docker("swarm", "leave", "--force", check=False)
    docker("network", "rm", "docker_gwbridge", check=False)
    running = set(docker("ps", "-q", "--no-trunc").split())
    lost = unresolved([n for n in before if n.container in running])
    if not lost:
        return
    ids = []
    for container in sorted({one.container for one in lost}):
        # one at a time: a container removed meanwhile (another stack going down) is no loss
        done = subprocess.run(
            ["docker", "restart", container], capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        if done.returncode == 0:
            ids.append(container)
        elif "No such container" not in done.stderr:
            raise RuntimeError(f"docker restart {container}: {done.stderr.strip()}")
    if not ids:
        return

    # as healthy as it was: one that failed its health check before (a test's broken build)
    # fails it after the restart too, and only has to run
    was_healthy = {one.container for one in before if one.healthy}

    def healthy() -> bool:
        # those removed meanwhile by their owner (a stack going down) are no loss: not found
        found = json.loads(docker("inspect", *ids, check=False) or "[]")
        waiting = [
            f"{attrs['Name'].lstrip('/')}: {why}"
            for attrs in found
            if (why := not_ready(attrs, health=attrs["Id"] in was_healthy))
        ]
        if waiting:
            raise NotYet("; ".join(waiting))
        return True

    wait_for(healthy, 180, "the restarted containers to be healthy", interval=1)
    running = set(docker("ps", "-q", "--no-trunc").split())
    asked = [n for n in before if n.container in ids] + lost_neighbours(before, ids)
    still = unresolved([n for n in asked if n.container in running])
    if still:
        names = ", ".join(f"{one.names[0]} ({one.network})" for one in still)
        raise RuntimeError(f"after leaving the swarm these names no longer resolve: {names}")


def not_ready(attrs: dict[str, Any], *, health: bool = True) -> str:
    """Why this container is not running (and, with ``health``, healthy) yet ("" when it is).
    Healthy by Docker's word, or by a run of its health check now: after a restart Docker says
    "starting" until it runs the check again (once an hour in the tests' Compose project), and
    "unhealthy" if a run came while a neighbour it checks was still restarting."""
    state = attrs["State"]
    if not state["Running"]:
        return f"not running ({state.get('Status')}, exit code {state.get('ExitCode')})"
    if not health:
        return ""
    status = (state.get("Health") or {}).get("Status", "healthy")
    if status == "healthy":
        return ""
    command = health_command(attrs)
    if command is None:
        return ""
    done = subprocess.run(
        ["docker", "exec", attrs["Id"], *command], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    if done.returncode == 0:
        return ""
    output = (done.stdout + done.stderr).strip()[-200:]
    return f"Docker says {status}; its health check exits {done.returncode}: {output}"


def lost_neighbours(before: list[Named], ids: list[str]) -> list[Named]:
    """The other members of the networks the restarted containers are on (to ask from)."""
    networks = {one.network for one in before if one.container in ids}
    return [one for one in before if one.network in networks and one.container not in ids]


@dataclass
class SwarmStack:
    workdir: Path
    cert: Path
    made_swarm: bool = False
    name: str = field(default_factory=new_stack_name)  # the swarm stack's
    ports: dict[str, int] = field(default_factory=dict)
    slots: int = SLOTS  # server-template slots per color of the HAProxy running now
    deployed: dict[str, str] = field(default_factory=dict)  # the stack file's variables
    leased: bool = False  # this stack holds LEASE (from make_swarm until close)

    @property
    def network(self) -> str:
        """The stack's overlay network (docker/swarm-stack.yml: SWARM_NETWORK)."""
        return f"{self.name}-network"

    @property
    def haproxy_name(self) -> str:
        return f"{self.name}-haproxy"

    @property
    def env(self) -> dict[str, str]:
        """What a ``docker stack deploy`` of this stack needs (the gate's too, should it deploy
        the stack file again): its network's name."""
        return {**os.environ, "SWARM_NETWORK": self.network}

    @property
    def run_dir(self) -> Path:
        return self.workdir / "haproxy-run"

    @property
    def socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def routed_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def direct_url(self, color: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'{color}_direct']}"

    # -- up and down -------------------------------------------------------------------------
    def make_swarm(self) -> None:
        """A single-node swarm (:data:`LEASE`'s), unless one is active already that the
        harness did not make (then it is left alone)."""
        if not self.leased:
            self.made_swarm = LEASE.acquire()
            self.leased = True

    def leave_swarm(self) -> None:
        """Leave the swarm now, if the harness made it (else it stays, as found): only when
        no other stack is on it."""
        if self.leased:
            self.leased = False
            LEASE.users = max(0, LEASE.users - 1)
        if LEASE.users:
            raise RuntimeError(f"{LEASE.users} other stack(s) on the swarm: not left")
        LEASE.leave()
        self.made_swarm = False

    def start(
        self,
        blue: str = "v1.0.0",
        green: str = "v1.0.0",
        replicas: int = 2,
        *,
        image: str | None = None,
        haproxy: bool = True,
    ) -> None:
        """The swarm, the stack (its colors at ``blue`` and ``green``, ``replicas`` each, of
        ``image``: the stack file's JARVIS_IMAGE, bluegreen/jarvis unless said) and, unless
        ``haproxy`` is false, HAProxy in front of it."""
        self.make_swarm()
        self.deployed = {
            "BLUE_TAG": blue,
            "GREEN_TAG": green,
            "BLUE_REPLICAS": str(replicas),
            "GREEN_REPLICAS": str(replicas),
            **({"JARVIS_IMAGE": image} if image else {}),
        }
        self.deploy_stack()
        if haproxy:
            self.start_haproxy()

    def deploy_stack(self) -> None:
        """``docker stack deploy`` of the stack as :meth:`start` deployed it (a service
        removed meanwhile made again, the others set back to the file's spec), waited for
        until every replica runs."""
        subprocess.run(
            ["docker", "stack", "deploy", "--resolve-image", "never", "-c",
             str(ROOT / "docker" / "swarm-stack.yml"), self.name],
            env={**self.env, **self.deployed}, capture_output=True, text=True, check=True,
            timeout=120,
        )  # fmt: skip
        replicas = {c: int(self.deployed[f"{c.upper()}_REPLICAS"]) for c in ("blue", "green")}
        wanted = {"postgres": 1, "redis": 1, **{f"{c}-api": n for c, n in replicas.items()}}
        wait_for(
            lambda: all(running_replicas(self.name, s) == n for s, n in wanted.items()),
            180,
            "the swarm stack's services to run every replica",
            interval=0.5,
        )

    def start_haproxy(self, **overrides: str) -> None:
        """HAProxy in a container on the stack's network (again, when it runs: new ports);
        ``overrides``: its BG_* environment (BG_REPLICAS, BG_DNS_HOLD, ...)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "server-state").touch()
        names = ("api", "blue_direct", "green_direct", "stats")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        env = {
            "BG_REPLICAS": str(SLOTS),
            "BG_RUNTIME_SOCKET": "/run/bluegreen/admin.sock",
            "BG_SERVER_STATE_FILE": "/run/bluegreen/server-state",
            "BG_TLS_CERT": "/etc/bluegreen-cert/bluegreen.pem",
            "BG_API_BIND": "0.0.0.0:20010",
            "BG_BLUE_DIRECT_BIND": "0.0.0.0:21010",
            "BG_GREEN_DIRECT_BIND": "0.0.0.0:21011",
            "BG_STATS_BIND": "0.0.0.0:8404",
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
        args += ["-v", f"{ROOT / 'haproxy'}:/etc/haproxy:ro"]
        args += ["-v", f"{self.cert.parent}:/etc/bluegreen-cert:ro"]
        args += ["-v", f"{self.run_dir}:/run/bluegreen"]
        for name, port in self.ports.items():
            args += ["-p", f"127.0.0.1:{port}:{INSIDE[name]}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        docker("rm", "-f", self.haproxy_name, check=False)  # ours, when it runs
        self.socket.unlink(missing_ok=True)  # the one it left: refused until the new one binds
        docker(*args, HAPROXY_IMAGE)
        wait_for(
            lambda: RuntimeApi(f"unix:{self.socket}", timeout=2).show_info(),
            30,
            "HAProxy's Runtime API to answer",
            interval=0.1,
            retry=(RuntimeApiUnreachable,),
        )

    def close(self) -> None:
        docker("rm", "-f", self.haproxy_name, check=False)
        docker("stack", "rm", self.name, check=False)

        def gone() -> bool:
            namespace = f"label=com.docker.stack.namespace={self.name}"
            left = docker("ps", "-aq", "--filter", namespace)
            networks = docker("network", "ls", "-q", "--filter", f"name=^{self.network}$")
            return not left.strip() and not networks.strip()

        try:
            wait_for(gone, 90, "the swarm stack's containers and network to go", interval=0.5)
        finally:
            if self.leased:
                self.leased = False
                LEASE.release()

    # -- looking -----------------------------------------------------------------------------
    def settings_toml(self, **overrides: Any) -> str:
        values: dict[str, Any] = {
            "deploy_engine": "swarm",
            "stack_name": self.name,
            "stack_file": str(ROOT / "docker" / "swarm-stack.yml"),
            "replicas": 2,
            "image_repository": "bluegreen/jarvis",
            "pull": "never",
            "deploy_timeout": 90,
            "up_wait": 30,
            "runtime_api": str(self.socket),
            "routed_api_url": self.routed_url,
            "state_file": str(self.workdir / "history.json"),
            "journal_file": str(self.workdir / "journal.json"),
            "lock_dir": str(self.workdir / "locks"),
            "haproxy_state_file": str(self.run_dir / "server-state"),
            "drain_timeout": 5,
            "verify_timeout": 10,
            "http_timeout": 10,
        }
        values.update(overrides)
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
        for color in ("blue", "green"):
            servers = [f"api_backend/{color}-api{i}" for i in range(1, self.slots + 1)]
            lines += [
                f"[colors.{color}]",
                f'api_url = "{self.direct_url(color)}"',
                f"servers = {json.dumps(servers)}",
                f'services = ["{color}-api"]',
            ]
        return "\n".join(lines) + "\n"

    def containers(self, service: str) -> list[str]:
        """The running containers of one of the stack's services (ids)."""
        out = docker(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.name}_{service}"
        )
        return out.split()

    def stop_old_tasks_slowly(self, service: str, grace: float, order: str = "") -> None:
        """Fault: the service's replicas go on answering for ``grace`` seconds after Swarm
        stops them (their stop signal ignored, then SIGKILL), as a replica finishing its
        requests does; a rolling update of the service, waited for. ``order``: the service's
        update and rollback order from then on (``start-first``), set by the same update."""
        ordered = ("--update-order", order, "--rollback-order", order) if order else ()
        self._update(
            service, "--stop-signal", "SIGWINCH", "--stop-grace-period", f"{grace:g}s", *ordered
        )

    def stop_old_tasks_promptly(self, service: str) -> None:
        """Undo :meth:`stop_old_tasks_slowly` (the stack file's order again, stop-first); the
        replicas still shutting down are killed."""
        self._update(
            service, "--stop-signal", "SIGTERM", "--stop-grace-period", "5s",
            "--update-order", "stop-first", "--rollback-order", "stop-first",
        )  # fmt: skip
        tasks = docker(
            "service", "ps", f"{self.name}_{service}", "-q", "--filter", "desired-state=shutdown",
            check=False,
        ).split()  # fmt: skip
        for task in tasks:
            container = docker(
                "inspect", "--format", "{{.Status.ContainerStatus.ContainerID}}", task,
                check=False,
            ).strip()  # fmt: skip
            if container:
                docker("kill", container, check=False)

    def _update(self, service: str, *args: str) -> None:
        docker("service", "update", "--detach", *args, f"{self.name}_{service}")

        def rolled_out() -> bool:
            state = docker(
                "service", "inspect", f"{self.name}_{service}",
                "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
            ).strip()  # fmt: skip
            return state in ("", "completed") and running_replicas(self.name, service) == 2

        wait_for(rolled_out, 120, f"{service}'s update to complete", interval=0.5)

    def image_of(self, service: str) -> str:
        spec = docker(
            "service", "inspect", f"{self.name}_{service}",
            "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        )  # fmt: skip
        return spec.strip().split("@", 1)[0]


def swarm_node() -> str:
    return docker("info", "--format", "{{.Swarm.NodeID}}").strip()


def _owner_file() -> Path:
    """Who made the active swarm: the node's id and the pid of the test process."""
    return NAMES_LOCK.with_suffix(".owner")


def _orphaned() -> bool:
    """The active swarm was made by a test process that is gone (a worker killed before its
    session ended): the next lease takes it over, and leaves it."""
    try:
        owner = json.loads(_owner_file().read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if owner.get("node") != swarm_node():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass
class SwarmLease:
    """The swarm of this process's tests: made by the first that needs one (unless one is
    active: the machine's own, never left; or an orphan of a killed test process, taken over),
    left when the last lets go, unless :meth:`hold` keeps it until the test session ends
    (tests/conftest.py's ``docker_swarm`` fixture). Made and left under ``names_lock``."""

    made: bool = False  # the swarm active now is this lease's to leave
    users: int = 0
    held: bool = False
    before: list[Named] = field(default_factory=list)  # running when it was made

    def acquire(self) -> bool:
        """A swarm is active; True when it is this lease's (left by it)."""
        if not self.made:
            with names_lock(exclusive=True):
                if swarm_state() != "active":
                    before = named_containers()
                    make_swarm()
                    self.before, self.made = before, True
                    self._own()
                elif _orphaned():
                    self.before, self.made = [], True
                    self._own()
        self.users += 1
        return self.made

    def _own(self) -> None:
        with suppress(OSError):  # best effort: without it a killed run's swarm stays
            _owner_file().write_text(json.dumps({"node": swarm_node(), "pid": os.getpid()}))

    def release(self) -> None:
        self.users = max(0, self.users - 1)
        if not self.users and not self.held:
            self.leave()

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.held = True
        try:
            yield
        finally:
            self.held = False
            self.leave()

    def vacate(self) -> None:
        """For a test that needs no swarm: leave this lease's, unless a stack is on it now."""
        if not self.users:
            self.leave()

    def leave(self) -> None:
        """Leave the swarm now if it is this lease's (still its own if the leave fails)."""
        if not self.made:
            return
        if swarm_state() == "active":
            leave_swarm(self.before)
        self.made = False
        with suppress(OSError):
            _owner_file().unlink(missing_ok=True)


LEASE = SwarmLease()
