"""A real HAProxy (the shipped ``haproxy/haproxy.cfg``) on loopback ports, in front of two real
HTTP backends, one per color. Started and stopped by the fixtures in ``tests/conftest.py``."""

from __future__ import annotations

import collections
import fcntl
import json
import multiprocessing.process
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import requests

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.lock import lock_for
from pytest_bluegreen.haproxy.lockfile import GateLock
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.local.haproxy import prepare_server_state_file

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "haproxy" / "haproxy.cfg"
BACKEND_APP = Path(__file__).with_name("backend_app.py")
# Stack.live_weights() of each color live (server -> weight, admin state)
BLUE_LIVE = {
    "blue-api": (100, "ready"),
    "blue-frontend": (100, "ready"),
    "green-api": (0, "ready"),
    "green-frontend": (0, "ready"),
}
GREEN_LIVE = {
    "blue-api": (0, "ready"),
    "blue-frontend": (0, "ready"),
    "green-api": (100, "ready"),
    "green-frontend": (100, "ready"),
}
T = TypeVar("T")
PORT_NAMES = (
    "api",
    "frontend",
    "blue_direct",
    "green_direct",
    "stats",
    "http",
    "https",
    "runtime",
    "runtime_operator",
)


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


# the seed's ports (haproxy/haproxy.cfg, the Compose file, the local stack's Prometheus,
# Pushgateway and dashboard, the swarm HAProxy's): a user's stack may be up there, a test never
# takes one
# the variables that move the compose file's published ports
PORT_VARIABLES = (
    "POSTGRES_HOST_PORT",
    "REDIS_HOST_PORT",
    "NEO4J_HOST_PORT",
    "OLLAMA_HOST_PORT",
    "BLUE_API_PORT",
    "GREEN_API_PORT",
    "BLUE_FRONTEND_PORT",
    "GREEN_FRONTEND_PORT",
)

SEED_PORTS = frozenset(
    {80, 443, 3010, 3011, 8010, 8011, 8080, 8404, 8443, 9091, 10000, 10001, 10002, 10104, 10200}
    | {10201}
    | {20010, 20011, 21010, 21011}
)
LOWEST_PORT = 10240  # below: the well-known and registered services of a machine
# Every test process on this machine (two xdist workers, two runs at once) leases the ports it
# chooses: a byte of this file per port, locked (POSIX record locks: the kernel drops them when
# the process ends). A process keeps its last LEASES_KEPT leases: by then their servers are
# bound (and a bound port is never chosen) or the test that wanted them is over.
PORT_LEASES = Path(tempfile.gettempdir()) / "bluegreen-test-ports.lock"
LEASES_KEPT = 2048
_leases: collections.deque[int] = collections.deque()
_lease_file: list[int] = []  # the one descriptor (closing any other would drop every lease)


def ephemeral_ports() -> range:
    """The ports the OS gives to outgoing connections (``ip_local_port_range``)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def _lease(port: int) -> bool:
    """Lease ``port`` for this process; False when another process holds it."""
    if not _lease_file:
        _lease_file.append(os.open(PORT_LEASES, os.O_RDWR | os.O_CREAT, 0o666))
    if port in _leases:
        return False
    try:
        fcntl.lockf(_lease_file[0], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:  # EAGAIN/EACCES: another process leased it
        return False
    _leases.append(port)
    while len(_leases) > LEASES_KEPT:
        fcntl.lockf(_lease_file[0], fcntl.LOCK_UN, 1, _leases.popleft())
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports on 127.0.0.1 for a test's servers: nothing listens there now,
    no other test process (xdist worker, another run) has them, none is the seed's, none is in
    the ephemeral range (binding port 0 gives one of those, and a load generator's outgoing
    connection can take it between the choice and the server's bind)."""
    ephemeral = ephemeral_ports()
    candidates = [
        p for p in range(LOWEST_PORT, 65536) if p not in ephemeral and p not in SEED_PORTS
    ]
    chosen: list[int] = []
    # not the random module's generator: pytest-randomly seeds it alike in every worker
    for port in random.SystemRandom().sample(candidates, len(candidates)):
        if len(chosen) == count:
            break
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # something listens there (or is still closing)
                continue
        if _lease(port):
            chosen.append(port)
    assert len(chosen) == count, f"no {count} free port(s) outside {ephemeral}"
    return chosen


class NotYet(Exception):
    """Raised by a :func:`wait_for` predicate: what it waits for does not hold yet, for a
    reason worth showing if the wait times out (retried, as a falsy answer is)."""


class Exited(AssertionError):
    """A process a :func:`wait_for` watches ended: what it waits for will never come."""


Watched = subprocess.Popen[Any] | multiprocessing.process.BaseProcess | threading.Thread


def _ended(watched: Watched) -> str | None:
    """How ``watched`` ended, or None while it runs."""
    if isinstance(watched, subprocess.Popen):
        code = watched.poll()
        if code is None:
            return None
        given = watched.args
        if isinstance(given, str | bytes | os.PathLike):
            args = os.fsdecode(given)
        else:
            args = shlex.join(os.fsdecode(arg) for arg in given)
        said = ""
        if watched.stdout is not None or watched.stderr is not None:
            try:  # what it said last (a child still holding the pipe: not waited for)
                text = "".join(
                    part.decode(errors="replace") if isinstance(part, bytes) else part
                    for part in watched.communicate(timeout=5)
                    if part
                )
                said = f", saying: {text[-3000:]}"
            except (subprocess.TimeoutExpired, ValueError, OSError):
                said = ""
        return f"{args[:200]} exited {code}{said}"
    if isinstance(watched, threading.Thread):
        return None if watched.is_alive() else f"thread {watched.name} ended"
    return None if watched.is_alive() else f"process {watched.name} exited {watched.exitcode}"


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.02,
    retry: tuple[type[BaseException], ...] = (),
    watch: Sequence[Watched] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Only "not yet" is retried: a falsy answer, :class:`NotYet`, or an exception of ``retry``
    (say, a connection refused while a server starts). Any other exception is a failure (or a
    bug in the predicate) and propagates at once. ``watch``: processes (or threads) the
    condition depends on; one that ended fails the wait at once (:class:`Exited`). After
    ``timeout`` seconds, a TimeoutError naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    not_yet: tuple[type[BaseException], ...] = (NotYet, *retry)
    last: object = None
    while True:
        try:
            answer = predicate()
        except not_yet as exc:
            last = exc
        else:
            if answer:
                return answer
            last = answer
        for watched in watch:
            ended = _ended(watched)
            if ended is not None:
                raise Exited(f"waiting for {what}: {ended} (last: {last!r})")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@dataclass
class Backend:
    """One color's stand-in API process."""

    color: str
    version: str
    proc: subprocess.Popen[str]
    port: int
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, color: str, version: str, port: int = 0, host: str = "127.0.0.1") -> Backend:
        """``host``: a loopback address (127.0.0.0/8), e.g. one per replica of a color."""
        proc = subprocess.Popen(
            [
                sys.executable,
                str(BACKEND_APP),
                "--color",
                color,
                "--version",
                version,
                "--port",
                str(port),
                "--host",
                host,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            proc.kill()
            raise RuntimeError(f"backend {color} did not start: {line!r}")
        return cls(color, version, proc, int(line.split()[1]), host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def control(self, **faults: Any) -> None:
        requests.post(f"{self.url}/_control", json=faults, timeout=5).raise_for_status()

    def reset(self) -> None:
        self.control(reset=True)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class HAProxy:
    """A real HAProxy process running the shipped configuration with test ports."""

    workdir: Path
    env: dict[str, str]
    extra_configs: Sequence[Path] = ()
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    starts: int = 0

    def start(self, runtime: str, *, finish: int | None = None) -> None:
        """Start HAProxy; with ``finish``, as a reload: the new process takes over the
        listeners and tells the old one (that pid) to finish its connections and exit."""
        binary = haproxy_binary()
        assert binary, "haproxy is not installed"
        self.starts += 1
        if "BG_SERVER_STATE_FILE" in self.env:  # as scripts/local_stack.py: a quiet first start
            prepare_server_state_file(self.env["BG_SERVER_STATE_FILE"])
        self.log = open(self.workdir / f"haproxy-{self.starts}.log", "wb")  # noqa: SIM115
        args = [binary, "-db", "-f", str(HAPROXY_CFG)]
        for extra in self.extra_configs:
            args += ["-f", str(extra)]
        if finish is not None:
            args += ["-sf", str(finish)]
        self.proc = subprocess.Popen(
            args, env={**os.environ, **self.env}, stdout=self.log, stderr=subprocess.STDOUT
        )
        api = RuntimeApi(runtime, timeout=1)
        pid = str(self.proc.pid)

        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise Exited(f"haproxy exited {proc.returncode}: {self.log_text()}")
            return api.show_info()["Pid"] == pid

        # not yet: nothing listens, or the old process closes a connection it took unanswered
        wait_for(answers, 10, "HAProxy's Runtime API (the new process)", retry=(RuntimeApiError,))

    def reload(self, runtime: str) -> None:
        """A soft reload, as ``systemctl reload haproxy`` does: a new process (server states
        from the server-state-file, else the configuration), the old one finishing."""
        old = self.proc
        assert old is not None
        self.start(runtime, finish=old.pid)
        try:
            old.wait(15)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait()

    def kill(self) -> None:
        """HAProxy dies (SIGKILL): nothing answers until it is started again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("haproxy-*.log"))
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
        self.proc = None


@dataclass
class Stack:
    """HAProxy + blue + green, all on 127.0.0.1."""

    workdir: Path
    ports: dict[str, int]
    blue: Backend
    green: Backend
    cert: Path
    # BG_*_ADDR overrides: HAProxy in front of something else than the two backends above
    addresses: dict[str, str] = field(default_factory=dict)
    haproxy: HAProxy = field(init=False)

    def __post_init__(self) -> None:
        self.socket_path = self.workdir / "admin.sock"
        self.server_state_file = self.workdir / "server-state"
        self.state_file = self.workdir / "history.json"
        self.journal_file = self.workdir / "journal.json"
        self.lock_dir = self.workdir / "locks"
        operator_cfg = self.workdir / "operator-socket.cfg"
        operator_cfg.write_text(
            "global\n"
            f"    stats socket ipv4@127.0.0.1:{self.ports['runtime_operator']} level operator\n"
        )
        env = {
            "BG_STATS_BIND": f"127.0.0.1:{self.ports['stats']}",
            "BG_HTTP_BIND": f"127.0.0.1:{self.ports['http']}",
            "BG_HTTPS_BIND": f"127.0.0.1:{self.ports['https']}",
            "BG_API_BIND": f"127.0.0.1:{self.ports['api']}",
            "BG_FRONTEND_BIND": f"127.0.0.1:{self.ports['frontend']}",
            "BG_BLUE_DIRECT_BIND": f"127.0.0.1:{self.ports['blue_direct']}",
            "BG_GREEN_DIRECT_BIND": f"127.0.0.1:{self.ports['green_direct']}",
            "BG_BLUE_API_ADDR": f"127.0.0.1:{self.blue.port}",
            "BG_GREEN_API_ADDR": f"127.0.0.1:{self.green.port}",
            "BG_BLUE_FRONTEND_ADDR": f"127.0.0.1:{self.blue.port}",
            "BG_GREEN_FRONTEND_ADDR": f"127.0.0.1:{self.green.port}",
            "BG_RUNTIME_SOCKET": str(self.socket_path),
            "BG_RUNTIME_TCP_PORT": str(self.ports["runtime"]),
            "BG_SERVER_STATE_FILE": str(self.server_state_file),
            "BG_TLS_CERT": str(self.cert),
            "BG_CHECK_INTER": "100ms",
            "BG_RATE_LIMIT": "100000000",
            **self.addresses,
        }
        self.haproxy = HAProxy(self.workdir, env, [operator_cfg])

    # -- addresses ---------------------------------------------------------------------------
    @property
    def runtime(self) -> str:
        return f"127.0.0.1:{self.ports['runtime']}"

    @property
    def operator_runtime(self) -> str:
        return f"127.0.0.1:{self.ports['runtime_operator']}"

    @property
    def routed_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def direct_url(self, color: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'{color}_direct']}"

    def api(self) -> RuntimeApi:
        return RuntimeApi(self.runtime)

    def haproxies(self) -> Haproxies:
        """This HAProxy as the group of one the gate, the switch, the lock and the bake take."""
        return Haproxies.single(self.api())

    def lock(self) -> GateLock:
        """The gate lock of this HAProxy, as every gate on it takes it."""
        return lock_for(self.lock_dir, str(RuntimeApiAddress.parse(self.runtime)))

    def backend(self, color: str) -> Backend:
        return self.blue if color == "blue" else self.green

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.haproxy.start(self.runtime)
        self.wait_up("blue", "green")

    def restart_haproxy(self, *, set_env: dict[str, str] | None = None) -> None:
        self.haproxy.stop()
        self.haproxy.env.update(set_env or {})
        self.start()

    def stop(self) -> None:
        self.haproxy.stop()

    def wait_up(self, *colors: str, timeout: float = 10) -> None:
        api = self.api()
        wanted = {f"{c}-api" for c in colors} | {f"{c}-frontend" for c in colors}

        def all_up() -> bool:
            rows = [r for r in api.show_stat() if r.server in wanted]
            return len(rows) == len(wanted) and all(r.status == "UP" for r in rows)

        wait_for(all_up, timeout, f"HAProxy to report {', '.join(colors)} UP")

    def wait_down(self, color: str, timeout: float = 10) -> None:
        api = self.api()

        def down() -> bool:
            return any(
                r.server == f"{color}-api" and r.status.startswith("DOWN") for r in api.show_stat()
            )

        wait_for(down, timeout, f"HAProxy to report {color} DOWN")

    def served_color(self) -> str:
        """The color that answers the routed API URL now."""
        response = requests.get(f"{self.routed_url}/health", timeout=5)
        return response.headers["X-Bluegreen-Color"]

    def route_to(self, color: str) -> None:
        """A test's starting point, not a switch (no drain, no history): ``color``'s servers
        at full weight, the other color's at 0, all ready, as with ``color`` live."""
        api = self.api()
        for c in ("blue", "green"):
            weight = 100 if c == color else 0
            for server in (f"api_backend/{c}-api", f"frontend_backend/{c}-frontend"):
                for command in (
                    f"set server {server} weight {weight}",
                    f"set server {server} state ready",
                ):
                    answer = api.execute(command)
                    assert not answer.strip(), f"{command}: {answer}"

    def live_weights(self) -> dict[str, tuple[int, str]]:
        """server -> (current weight, admin state), for every switched server."""
        try:
            states = self.api().servers_state()
        except RuntimeApiError:
            return {}
        return {
            s.server: (s.uweight, s.admin.value)
            for s in states
            if s.backend in {"api_backend", "frontend_backend"}
        }

    def settings_toml(
        self,
        *,
        color_extra: dict[str, dict[str, str]] | None = None,
        slots: int | None = None,
        **overrides: Any,
    ) -> str:
        """The settings file for this stack; ``slots``: each color is that many server-template
        slots of ``api_backend`` (``blue-api1`` ...), as with ``BG_REPLICAS``."""
        values: dict[str, Any] = {
            "runtime_api": self.runtime,
            "routed_api_url": self.routed_url,
            "routed_frontend_url": f"http://127.0.0.1:{self.ports['frontend']}",
            "state_file": str(self.state_file),
            "journal_file": str(self.journal_file),
            "lock_dir": str(self.lock_dir),
            "haproxy_state_file": str(self.server_state_file),
            "drain_timeout": 5,
            "verify_timeout": 5,
            "http_timeout": 5,
        }
        values.update(overrides)
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
        for color in ("blue", "green"):
            lines += [
                f"[colors.{color}]",
                f'api_url = "{self.direct_url(color)}"',
                "servers = "
                + json.dumps(
                    [f"api_backend/{color}-api{i}" for i in range(1, slots + 1)]
                    if slots
                    else [f"api_backend/{color}-api", f"frontend_backend/{color}-frontend"]
                ),
                *(f"{k} = {json.dumps(v)}" for k, v in (color_extra or {}).get(color, {}).items()),
            ]
        return "\n".join(lines) + "\n"


def make_cert(path: Path) -> Path:
    subprocess.run(
        [str(ROOT / "scripts" / "make-cert"), str(path)], check=True, capture_output=True
    )
    return path


@dataclass
class StackFactory:
    workdir: Path
    cert: Path
    blue: Backend
    green: Backend
    _exit: ExitStack = field(default_factory=ExitStack)

    def __call__(
        self,
        name: str = "stack",
        *,
        addresses: dict[str, str] | None = None,
        wait_up: bool = True,
        env: dict[str, str] | None = None,
    ) -> Stack:
        """``env``: HAProxy's environment overrides (``BG_CHECK_INTER``...)."""
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        stack = Stack(workdir, ports, self.blue, self.green, self.cert, dict(addresses or {}))
        stack.haproxy.env.update(env or {})
        self._exit.callback(stack.stop)
        if wait_up:
            stack.start()
        else:
            stack.haproxy.start(stack.runtime)
        return stack

    def close(self) -> None:
        self._exit.close()


def backends() -> Iterator[tuple[Backend, Backend]]:
    blue = Backend.start("blue", "v1.0.0")
    green = Backend.start("green", "v1.1.0")
    try:
        yield blue, green
    finally:
        blue.stop()
        green.stop()
