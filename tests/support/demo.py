"""The machine as a user has it, for the test that the suite leaves it alone
(tests/stack/test_untouched.py): the demo stack at the seed's defaults, as ``scripts/demo`` leaves
it (the Compose project ``sutazai``, HAProxy on the seed's ports and
``/var/run/haproxy/admin.sock``, blue deployed and live, data in its PostgreSQL), a Swarm stack with
the documented production name ``bluegreen`` and a container named ``bluegreen-swarm-haproxy`` (the
names the Swarm test used to take), and a dangling image of no one's build.

What is there already is only looked at: a demo stack up and serving at the defaults (the
user's, or one a test left), a ``bluegreen`` stack, such a container. What is not, this harness
starts (``scripts/local_stack.py up`` from a copy of this checkout, blue v1.0.0 deployed and made
live by the gate, a row of its own in PostgreSQL; a swarm when there is none; the Swarm stack
and the container as small stand-ins) and removes again. Defaults held by something that is
not a serving demo stack (a lone container, another program on a port) are ``Busy``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from pytest_bluegreen.haproxy.runtime import RuntimeApi

from .stack import PORT_VARIABLES, ROOT, SEED_PORTS
from .swarm import LEASE

PROJECT = "sutazai"
SOCKET = "/var/run/haproxy/admin.sock"
SWARM_STACK = "bluegreen"
SWARM_HAPROXY = "bluegreen-swarm-haproxy"
ROUTED = "http://127.0.0.1:20010"
# what moves a stack away from the defaults: none of it may reach the demo's own commands
MOVERS = ("BG_", "BLUEGREEN_", "COMPOSE_", "PYTEST_")
MOVER_NAMES = {"HEALTHCHECK_INTERVAL", "SWARM_NETWORK", *PORT_VARIABLES}
SWARM_STACK_FILE = """\
version: "3.8"
services:
  sentinel:
    image: bluegreen/redis:7
    deploy:
      replicas: 1
"""


def defaults_env() -> dict[str, str]:
    """This process's environment without anything that moves a stack off the defaults."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(MOVERS) and k not in MOVER_NAMES
    }


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip()


def copy_checkout(folder: Path) -> Path:
    """The working tree as it is (tracked and new files) in ``folder``, with this checkout's
    .venv: a checkout whose .bluegreen/ (pid files, state) is its own, but for what
    scripts/setup fetched once (the wheelhouse, the Allure command line, the dashboard's
    charting library): the suite runs with no package index, as a runner with a tool cache
    would."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in listed:
        source = ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    for fetched in ("wheelhouse", "allure-cli", "chartjs"):
        if (ROOT / ".bluegreen" / fetched).is_dir():
            (folder / ".bluegreen").mkdir(exist_ok=True)
            (folder / ".bluegreen" / fetched).symlink_to(ROOT / ".bluegreen" / fetched)
    return folder


def _port_held(port: int) -> bool:
    """Something listens on ``port`` (on 127.0.0.1 or every address). SO_REUSEADDR: the
    connections a stack just taken down answered linger in TIME_WAIT for a minute, and hold
    no port a listener could not take (without it, every port that took traffic looks held)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _answers(path: str) -> bool:
    """Something listens on the unix socket (a file left by a process gone does not)."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


class Busy(Exception):
    """The defaults are held, but not by a demo stack that serves: nothing to compare."""


def in_use() -> list[str]:
    """What holds the demo stack's names, ports and socket now."""
    held = []
    if docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"):
        held.append(f"containers of the Compose project {PROJECT}")
    if _answers(SOCKET):
        held.append(SOCKET)
    held += [f"127.0.0.1:{p}" for p in sorted(SEED_PORTS) if _port_held(p)]
    return held


def swarm_active() -> bool:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"


def _serves() -> bool:
    """A demo stack at the defaults answers: HAProxy's socket and its routed API."""
    try:
        RuntimeApi(SOCKET, timeout=2).show_info()
        return requests.get(f"{ROUTED}/health", timeout=5).status_code == 200
    except Exception:
        return False


def _read(what: Any) -> Any:
    """What ``what()`` returns, or what went wrong: a snapshot says, it does not fail."""
    try:
        return what()
    except Exception as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"


@dataclass
class Demo:
    """The machine's own stack: found, or started by this harness (see the module)."""

    folder: Path
    token: str = ""  # the row this harness wrote, when it started the stack
    item: int = 0
    made_stack: bool = False
    made_swarm: bool = False
    made_swarm_stack: bool = False
    made_container: bool = False
    image: str = ""
    socket_was_there: bool = True  # a file left by an HAProxy gone is not ours to remove

    @property
    def checkout(self) -> Path:
        return self.folder / "checkout"

    def _run(self, *command: str, timeout: float = 300) -> str:
        done = subprocess.run(
            list(command), cwd=self.checkout, env=defaults_env(), capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # -- up ------------------------------------------------------------------------------------
    def up(self) -> None:
        """Find or start each part; ``Busy`` when the defaults are held by something else."""
        held = in_use()
        if held and not _serves():
            raise Busy(f"the defaults are in use ({', '.join(held)}) and no demo stack serves")
        if not held:
            self._start_stack()
        names = docker("ps", "-aq", "--filter", f"name=^{SWARM_HAPROXY}$")
        if not swarm_active():
            LEASE.acquire()  # the session's: left when it ends (tests/support/swarm.py)
            self.made_swarm = True
        stacks = docker("stack", "ls", "--format", "{{.Name}}").split()
        if SWARM_STACK not in stacks:
            stack_file = self.folder / "stand-in-stack.yml"
            stack_file.write_text(SWARM_STACK_FILE)
            docker(
                "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), SWARM_STACK
            )
            self.made_swarm_stack = True
        if not names:
            docker("run", "-d", "--name", SWARM_HAPROXY, "bluegreen/redis:7")
            self.made_container = True
        self.image = self._dangling_image()

    def _start_stack(self) -> None:
        self.socket_was_there = Path(SOCKET).exists()
        self.made_stack = True
        copy_checkout(self.checkout)
        # what scripts/setup made in this checkout: its passwords and HAProxy's certificate
        for made in ("config/deploy/secrets.env", "haproxy/certs/bluegreen.pem"):
            if (ROOT / made).is_file():
                (self.checkout / made).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / made, self.checkout / made)
        venv = str(self.checkout / ".venv" / "bin")
        self._run(f"{venv}/python", "scripts/local_stack.py", "up")
        self._run(
            f"{venv}/pytest", "checks", "-p", "no:cacheprovider", "-q", "--env", "blue",
            "--deploy", "v1.0.0", "-m", "quick", "--switch",
        )  # fmt: skip
        self.token = f"untouched-{secrets.token_hex(4)}"
        answer = requests.post(f"{ROUTED}/api/items", json={"name": self.token}, timeout=10)
        assert answer.status_code == 201, answer.text
        self.item = int(answer.json()["id"])

    def _dangling_image(self) -> str:
        """An image of no one's build (no label of ours), left dangling by a newer one of its
        name, as a user's rebuilds leave them: a prune of every dangling image removes it."""
        name = f"untouched-{secrets.token_hex(4)}:dangling"
        ids = []
        for n in (1, 2):
            build = subprocess.run(
                ["docker", "build", "-q", "-t", name, "-"],
                input=f"FROM scratch\nLABEL untouched.build={n}\n",
                capture_output=True, text=True, check=True, timeout=120,
            )  # fmt: skip
            ids.append(build.stdout.strip())
        docker("image", "rm", name)
        return ids[0]

    # -- looking -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the suite must leave as it was, each read on its own."""

        def containers() -> list[tuple[str, str, str]]:
            ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}")
            found = json.loads(docker("inspect", *ids.split())) if ids else []
            return sorted((c["Name"], c["Id"][:12], c["State"]["Status"]) for c in found)

        def haproxy() -> tuple[str, list[tuple[str, int, str]]]:
            api = RuntimeApi(SOCKET, timeout=2)
            states = api.servers_state()
            weights = sorted((s.server, s.uweight, s.admin.value) for s in states)
            return api.show_info()["Pid"], weights

        def served() -> tuple[str, str]:
            answer = requests.get(f"{ROUTED}/health", timeout=5)
            return answer.headers["X-Bluegreen-Color"], answer.headers["X-Bluegreen-Version"]

        def psql(query: str) -> str:
            return docker(
                "exec", f"{PROJECT}-postgres",
                "psql", "-U", "sutazai", "-d", "sutazai", "-tAc", query,
            )  # fmt: skip

        def data() -> str:
            """Every item, as a digest: the same rows, or not."""
            return psql(
                "SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || name, ','"
                " ORDER BY id)), '') FROM items"
            )

        def row() -> str:
            return psql(f"SELECT name FROM items WHERE id = {self.item:d}")  # noqa: S608 - int

        def processes() -> dict[str, bool]:
            run = self.checkout / ".bluegreen" / "local"
            alive = {}
            for name in ("haproxy", "prometheus", "pushgateway"):
                pid = int((run / f"{name}.pid").read_text().split()[0])
                alive[name] = Path(f"/proc/{pid}").exists()
            return alive

        def swarm() -> tuple[str, list[str], str, str]:
            services = docker("stack", "services", "-q", SWARM_STACK).split()
            versions = [
                f"{svc['Spec']['Name']} {svc['ID'][:12]} version {svc['Version']['Index']}"
                for svc in json.loads(docker("service", "inspect", *services))
            ]
            container = json.loads(docker("inspect", SWARM_HAPROXY))[0]
            return (
                docker("info", "--format", "{{.Swarm.LocalNodeState}}"),
                sorted(versions),
                container["Id"][:12],
                container["State"]["Status"],
            )

        found = {
            "containers": _read(containers),
            "network": _read(
                lambda: docker("network", "inspect", "-f", "{{.Id}}", f"{PROJECT}-network")
            ),
            "volume": _read(
                lambda: docker("volume", "inspect", "-f", "{{.Name}}", f"{PROJECT}_postgres-data")
            ),
            "haproxy": _read(haproxy),
            "served": _read(served),
            "data": _read(data),
            "swarm": _read(swarm),
            "image": _read(lambda: docker("image", "inspect", "-f", "{{.Id}}", self.image)),
        }
        if self.made_stack:  # what only a stack of this harness has
            found["row"] = _read(row)
            found["processes"] = _read(processes)
        return found

    # -- down --------------------------------------------------------------------------------
    def down(self) -> None:
        """What this harness started goes; what it found stays."""
        if self.made_stack:
            venv = self.checkout / ".venv" / "bin" / "python"
            if venv.exists():
                subprocess.run(
                    [str(venv), "scripts/local_stack.py", "down"], cwd=self.checkout,
                    env=defaults_env(), capture_output=True, timeout=300, check=False,
                )  # fmt: skip
            subprocess.run(
                ["docker", "compose", "-f", str(ROOT / "docker" / "docker-compose.blue-green.yml"),
                 "-p", PROJECT, "down", "--volumes", "--remove-orphans"],
                env=defaults_env(), capture_output=True, timeout=300, check=False,
            )  # fmt: skip
            if not self.socket_was_there:
                Path(SOCKET).unlink(missing_ok=True)
        if self.made_container:
            docker("rm", "-f", SWARM_HAPROXY, check=False)
        if self.image:
            docker("image", "rm", self.image, check=False)
        if self.made_swarm_stack and swarm_active():
            docker("stack", "rm", SWARM_STACK, check=False)
        if self.made_swarm:
            self.made_swarm = False
            LEASE.release()  # and the names of the containers found running come back
