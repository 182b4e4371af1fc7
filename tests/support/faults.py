"""The fault matrix: a real gate (``pytest --switch`` in a subprocess) against a real HAProxy,
stopped at one step of the switch by the ``pytest_bluegreen_switch_step`` hook while a fault is
injected, under a bounded load probe. Used by ``tests/switch/test_faults.py`` and
``benchmarks/fault_matrix.py``.

The faults: SIGINT, SIGTERM, SIGKILL (then ``bluegreen recover``), an HAProxy reload, HAProxy
killed (started again after the gate, then ``bluegreen recover``), a Runtime API error answer
(a proxy in front of the Runtime API answers the next command with an error, nothing applied),
a step hook that raises (an Exception, or ``pytest.fail``'s BaseException), and an answer lost
(the proxy forwards the step's own command, HAProxy applies it, and the connection drops before
the answer; then once more for the command that follows: a revert's or a retry's). After
each: exactly one color takes traffic, nothing left in drain or maint, the journal closed, the
history honest, the exit code the documented one, the probe saw no failed request (but while
HAProxy was down, counted apart), and HAProxy's server-state file holds the same: a soft reload
afterwards keeps the color.
"""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.judge.load import LoadResult, run_load
from pytest_bluegreen.settings import resolve
from pytest_bluegreen.switch.consistency import inconsistencies
from pytest_bluegreen.switch.journal import read_journal

from .cli import BLUEGREEN, clean_environ
from .gate import CHECKS
from .stack import Stack, wait_for

STEPS = ("promote", "drain", "verify", "wait-drained", "idle", "confirm", "save-state")
FAULTS = (
    "sigint",
    "sigterm",
    "sigkill",
    "reload",
    "haproxy-killed",
    "api-error",
    "hook-raises",
    "hook-fails",
    "answer-lost",
)
# a canary's second step (--canary 10,50): its first step's split weights are in HAProxy
CANARY_STEP = "canary-50"
CANARY_ARGS = ("--canary", "10,50")
BEFORE_POINT_OF_NO_RETURN = (CANARY_STEP, "promote", "drain", "verify")
# answer-lost: the commands whose answers are lost, in order: the step's own first command
# (at 'verify', the identity check before it: verifying itself asks HAProxy nothing), then
# the one after (the revert's first before the point of no return, the retry's after it)
LOST_ANSWERS = {
    CANARY_STEP: ("set server", "set server"),
    "promote": ("set server", "set server"),
    "drain": ("set server", "set server"),
    "verify": ("show info", "set server"),
    "wait-drained": ("show stat", "show stat"),
    "idle": ("set server", "set server"),
    "confirm": ("show servers state", "show servers state"),
    "save-state": ("show servers state", "show servers state"),
}


STEP_HOOK = """
import os, pathlib, time


def pytest_bluegreen_switch_step(config, step, plan):
    if step != os.environ.get("FAULT_STEP"):
        return
    here = pathlib.Path(os.environ["FAULT_DIR"])
    if os.environ.get("FAULT_NOTE_SIGNALS"):  # "signalled" once the gate's handler has run
        import signal

        for signum in (signal.SIGINT, signal.SIGTERM):
            gates = signal.getsignal(signum)

            def noted(num, frame, gates=gates):
                if callable(gates):
                    gates(num, frame)
                (here / "signalled").write_text(str(num))

            signal.signal(signum, noted)
    (here / "at-step").write_text(step)
    deadline = time.monotonic() + 60
    while not (here / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the fault harness never said go")
        time.sleep(0.005)
    if os.environ.get("FAULT") == "hook-raises":
        raise ConnectionError("the notification service does not answer")
    if os.environ.get("FAULT") == "hook-fails":  # pytest.fail: a BaseException, not an Exception
        import pytest

        pytest.fail("the change window is closed")
"""


@dataclass(frozen=True)
class Expected:
    exit_code: int
    history: tuple[str, ...]
    live: str
    recovery: str | None = None  # what `bluegreen recover` says it did


COMPLETED = "completed the switch blue -> green"
RESTORED = "every server's state before it restored"


def expected(step: str, fault: str) -> Expected:
    """What the documentation promises for each cell: before the point of no return a fault
    undoes the switch, after it the switch is completed (HAProxy's own errors tried again)."""
    before = step in BEFORE_POINT_OF_NO_RETURN
    if fault == "sigkill":  # then bluegreen recover
        if before:
            return Expected(-signal.SIGKILL, ("recovered",), "blue", RESTORED)
        return Expected(-signal.SIGKILL, ("recovered",), "green", COMPLETED)
    if fault == "haproxy-killed":  # the gate's own exit, then HAProxy back, bluegreen recover
        if before:
            return Expected(10, ("revert-failed", "recovered"), "blue", RESTORED)
        return Expected(10, ("incomplete", "recovered"), "green", COMPLETED)
    # sigint, sigterm, reload, api-error, hook-raises, hook-fails, answer-lost
    if before:
        return Expected(8, ("reverted",), "blue")
    return Expected(0, ("switched",), "green")


class RuntimeApiProxy(socketserver.ThreadingTCPServer):
    """In front of HAProxy's Runtime API (TCP): forwards each one-command connection, or

    - once ``fail_next`` is set, answers the next command (that starts with ``fail_prefix``)
      with HAProxy's error text, forwarding nothing (refused cleanly: nothing applied);
    - for each prefix given to :meth:`lose_answers`, in turn, forwards the next command that
      starts with it, lets HAProxy answer (the command applied), and closes the client's
      connection without a byte of the answer (an answer lost);
    - calls ``before_forward(command)`` (when set) before it forwards a command: a test kills
      the HAProxy behind it there, at an exact command.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.fail_next = threading.Event()
        self.fail_prefix = b""
        self.failed: list[str] = []
        self.lost: list[str] = []  # the commands HAProxy applied whose answers were lost
        self._losing: list[bytes] = []
        self._lock = threading.Lock()
        self.before_forward: Callable[[bytes], None] | None = None
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def address(self) -> str:
        port = self.server_address[1]
        return f"127.0.0.1:{port}"

    def lose_answers(self, *prefixes: str) -> None:
        with self._lock:
            self._losing = [p.encode() for p in prefixes]

    def loses(self, command: bytes) -> bool:
        """Whether this command's answer is to be lost (taking its turn)."""
        with self._lock:
            if self._losing and command.startswith(self._losing[0]):
                self._losing.pop(0)
                self.lost.append(command.decode().strip())
                return True
            return False

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: RuntimeApiProxy

    def handle(self) -> None:
        command = self.rfile.readline()
        if self.server.fail_next.is_set() and command.startswith(self.server.fail_prefix):
            self.server.fail_next.clear()
            self.server.failed.append(command.decode().strip())
            self.wfile.write(b"No such server.\n\n")
            return
        lose = self.server.loses(command)
        if self.server.before_forward is not None:
            self.server.before_forward(command)
        try:
            with socket.create_connection(self.server.upstream, timeout=5) as upstream:
                upstream.sendall(command)
                while chunk := upstream.recv(65536):
                    if not lose:
                        self.wfile.write(chunk)
        except OSError:
            return  # HAProxy is gone: the client sees the connection close, as it would


@dataclass
class Cell:
    step: str
    fault: str
    exit_code: int | None = None
    history: tuple[str, ...] = ()
    live: str | None = None
    problems: list[str] = field(default_factory=list)
    journal_open: bool = False
    failed_requests: int = 0
    failed_while_down: int = 0  # while HAProxy was killed or reloading: its own doing
    haproxy_failures: list[str] = field(default_factory=list)  # kind: error, of those
    requests: int = 0
    output: str = ""
    injected: bool = True  # the fault happened (an error answered, an answer lost)
    recovery: str = ""  # what `bluegreen recover` printed
    live_after_reload: str | None = None  # the live color once HAProxy reloaded its state file

    @property
    def expected(self) -> Expected:
        return expected(self.step, self.fault)

    def mismatches(self) -> list[str]:
        want = self.expected
        found = []
        if self.exit_code != want.exit_code:
            found.append(f"exit {self.exit_code}, documented {want.exit_code}")
        if self.history != want.history:
            found.append(f"history {list(self.history)}, expected {list(want.history)}")
        if self.live != want.live:
            found.append(f"{self.live} live, expected {want.live}")
        if self.problems:
            found.append(f"HAProxy inconsistent: {'; '.join(self.problems)}")
        if self.journal_open:
            found.append("the journal is still open")
        if self.failed_requests:
            found.append(f"{self.failed_requests} probe request(s) failed")
        if not self.injected:
            found.append("the fault was never injected")
        if want.recovery is not None and want.recovery not in self.recovery:
            found.append(f"bluegreen recover did not say {want.recovery!r}")
        if self.live_after_reload != want.live:
            found.append(
                f"{self.live_after_reload} live after a reload (the server-state file is stale)"
            )
        return found

    @property
    def survived(self) -> bool:
        return not self.mismatches()


# seconds each of the probe's two connections waits after an answer: a request every few
# milliseconds sees every step of the switch (each takes a Runtime API round trip or more)
# without a closed loop that keeps both cores busy serving it (it was most of the matrix's CPU)
PROBE_PAUSE = 0.005


class Probe:
    """A bounded load on the routed URL for the whole cell; stops by itself or when told."""

    def __init__(self, url: str) -> None:
        self.stop = threading.Event()
        self.result: LoadResult | None = None

        def run() -> None:
            self.result = run_load(
                url, total=100_000, duration=120, concurrency=2, stop=self.stop, pause=PROBE_PAUSE
            )

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> LoadResult:
        self.stop.set()
        self.thread.join(30)
        assert self.result is not None
        return self.result


def _history(stack: Stack) -> tuple[str, ...]:
    if not stack.state_file.exists():
        return ()
    return tuple(e["outcome"] for e in json.loads(stack.state_file.read_text())["history"])


def run_cell(stack: Stack, workdir: Path, step: str, fault: str) -> Cell:
    """One cell of the matrix on a fresh stack (blue live, green idle)."""
    workdir.mkdir(parents=True, exist_ok=True)
    host, port = stack.runtime.rsplit(":", 1)
    proxy = RuntimeApiProxy((host, int(port)))
    try:
        return _run_cell(stack, workdir, proxy, step, fault)
    finally:
        proxy.close()


def _run_cell(stack: Stack, workdir: Path, proxy: RuntimeApiProxy, step: str, fault: str) -> Cell:
    canary = step == CANARY_STEP
    # a canary's steps are short and judged on the probe's requests (never too few: judged
    # again rather than aborted, so that the cell's fault is what ends it)
    judged: dict[str, Any] = {
        "canary_step_seconds": 0.5,
        "canary_min_requests": 1,
        "canary_on_inconclusive": "extend",
        "canary_extensions": 20,
    }
    (workdir / "bluegreen.toml").write_text(
        stack.settings_toml(
            runtime_api=proxy.address,
            drain_timeout=5,
            verify_timeout=5,
            **(judged if canary else {}),
        )
    )
    (workdir / "test_checks.py").write_text(CHECKS)
    (workdir / "conftest.py").write_text(STEP_HOOK)
    env = {
        **clean_environ(),
        "FAULT_STEP": step,
        "FAULT": fault,
        "FAULT_DIR": str(workdir),
    }
    cell = Cell(step, fault)
    probe = Probe(f"{stack.routed_url}/health")
    down: list[tuple[float, float]] = []  # when HAProxy was killed or reloading
    gate = subprocess.Popen(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green"),
            *("--switch", *(CANARY_ARGS if canary else ())),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (workdir / "at-step").exists() or gate.poll() is not None,
            60,
            f"the gate to reach {step}",
            interval=0.005,
        )
        _inject(stack, proxy, gate, step, fault, down=down)
        (workdir / "go").touch()
        out, _ = gate.communicate(timeout=120)
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
    cell.exit_code = gate.returncode
    cell.output = out or ""
    if fault == "haproxy-killed":
        stack.haproxy.start(stack.runtime)
        down[-1] = (down[-1][0], time.monotonic())
    if fault in ("sigkill", "haproxy-killed"):
        recover = subprocess.run(
            [*BLUEGREEN, "recover"], cwd=workdir, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        cell.recovery = recover.stdout + recover.stderr
        cell.output += f"\n$ bluegreen recover ({recover.returncode})\n{cell.recovery}"
    result = probe.finish()
    cell.requests = result.count
    for sample in result.failed:
        if any(start <= sample.end and sample.start <= end for start, end in down):
            cell.failed_while_down += 1
            cell.haproxy_failures.append(f"{sample.kind}: {sample.error or sample.status}")
        else:
            cell.failed_requests += 1
    if fault == "api-error":
        cell.injected = bool(proxy.failed)
    elif fault == "answer-lost":
        cell.injected = bool(proxy.lost)
        cell.output += f"\nanswers lost: {proxy.lost}"
    _look(stack, workdir, cell)
    return cell


def _inject(
    stack: Stack,
    proxy: RuntimeApiProxy,
    gate: subprocess.Popen[str],
    step: str,
    fault: str,
    *,
    down: list[tuple[float, float]],
) -> None:
    if fault == "sigint":
        gate.send_signal(signal.SIGINT)
    elif fault == "sigterm":
        gate.send_signal(signal.SIGTERM)
    elif fault == "sigkill":
        gate.kill()
        gate.wait()
    elif fault == "reload":
        started = time.monotonic()
        stack.haproxy.reload(stack.runtime)  # returns when the old process has exited
        down.append((started, time.monotonic()))
    elif fault == "haproxy-killed":
        down.append((time.monotonic(), float("inf")))
        stack.haproxy.kill()
    elif fault == "api-error":
        proxy.fail_next.set()
    elif fault == "answer-lost":
        proxy.lose_answers(*LOST_ANSWERS[step])


def _look(stack: Stack, workdir: Path, cell: Cell) -> None:
    settings = resolve({}, {}, {}, workdir)
    api = RuntimeApi(stack.runtime)
    states = api.server_states(settings.topology.all_servers)
    cell.live = settings.topology.live_color(states)
    cell.problems = inconsistencies(states, settings.topology)
    journal = read_journal(settings.state.journal_file)
    cell.journal_open = journal is not None and journal.open
    cell.history = _history(stack)
    # the server-state file must hold the same: a soft reload (the probe has finished)
    stack.haproxy.reload(stack.runtime)
    cell.live_after_reload = settings.topology.live_color(
        api.server_states(settings.topology.all_servers)
    )


def summary(cells: list[Cell]) -> dict[str, Any]:
    return {
        "faults": len(cells),
        "survived": sum(c.survived for c in cells),
        "requests": sum(c.requests for c in cells),
        "failed": sum(c.failed_requests for c in cells),
        "failed_while_haproxy_down": sum(
            c.failed_while_down for c in cells if c.fault == "haproxy-killed"
        ),
        "failed_while_haproxy_reloaded": sum(
            c.failed_while_down for c in cells if c.fault == "reload"
        ),
    }
