"""Real HAProxy processes (lb-1, lb-2, lb-3 ...: each its own configuration, ports, Runtime
API and server-state file, on loopback) in front of the same two colors, configured as one
group with ``[instances.NAME]`` tables. Used by ``tests/haproxy/test_instances.py`` (three,
and six), ``tests/switch/test_instances_recovery.py`` and, through ``tests/support/tier.py``,
``benchmarks/switch_under_load.py --instances 1,2,5,10,20``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.judge.load import LoadResult
from pytest_bluegreen.settings import Settings, resolve
from pytest_bluegreen.switch.consistency import group_problems, inconsistencies
from pytest_bluegreen.switch.journal import read_journal

from .cli import BLUEGREEN, clean_environ
from .faults import LOST_ANSWERS, PROBE_PAUSE, STEP_HOOK, Cell, RuntimeApiProxy
from .gate import CHECKS
from .stack import Stack, StackFactory, wait_for
from .switching import LoadProcess


def names(count: int) -> tuple[str, ...]:
    """The first ``count`` instances' names: ``lb-1``, ``lb-2``, ..."""
    return tuple(f"lb-{number}" for number in range(1, count + 1))


NAMES = names(3)
# three HAProxy processes health-check the same two backends: at a single stack's 100 ms a
# check times out on a loaded two-core machine (Layer4 timeout), the server goes DOWN, and the
# gate rightly refuses (target not UP) or HAProxy answers 503 (no server) whatever the gate
# does; 500 ms spares the machine (a server comes UP in about a second)
CHECK_INTER = {"BG_CHECK_INTER": "500ms"}


@dataclass
class Group:
    """The instances, by name; lb-1's folder holds the history, journal and locks."""

    stacks: dict[str, Stack]
    workdir: Path
    proxies: dict[str, RuntimeApiProxy] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        factory: StackFactory,
        count: int = 3,
        env: dict[str, str] | None = None,
        addresses: dict[str, str] | None = None,
    ) -> Group:
        """``env``: each HAProxy's environment overrides (over :data:`CHECK_INTER`);
        ``addresses``: the colors elsewhere (``BG_*_ADDR``, :class:`.fastcolors.FastColors`)."""
        stacks = {
            name: factory(name, env={**CHECK_INTER, **(env or {})}, addresses=addresses)
            for name in names(count)
        }
        workdir = factory.workdir / "gate"
        workdir.mkdir(exist_ok=True)
        return cls(stacks, workdir)

    @property
    def main(self) -> Stack:
        return next(iter(self.stacks.values()))

    def proxy(self, name: str) -> RuntimeApiProxy:
        """A Runtime API proxy in front of ``name`` (its commands can be made to fail)."""
        if name not in self.proxies:
            host, port = self.stacks[name].runtime.rsplit(":", 1)
            self.proxies[name] = RuntimeApiProxy((host, int(port)))
        return self.proxies[name]

    def runtime(self, name: str) -> str:
        return self.proxies[name].address if name in self.proxies else self.stacks[name].runtime

    def settings_toml(self, **overrides: Any) -> str:
        main = self.main
        text = main.settings_toml(
            runtime_api=None,
            routed_api_url=None,
            routed_frontend_url=None,
            haproxy_state_file=None,
            **overrides,
        )
        for name, stack in self.stacks.items():
            text += (
                f'[instances."{name}"]\n'
                f'runtime_api = "{self.runtime(name)}"\n'
                f'routed_api_url = "{stack.routed_url}"\n'
                f'routed_frontend_url = "http://127.0.0.1:{stack.ports["frontend"]}"\n'
                f'haproxy_state_file = "{stack.server_state_file}"\n'
            )
        return text

    def write(self, *, checks: str = CHECKS, hook: bool = False, **overrides: Any) -> Path:
        (self.workdir / "bluegreen.toml").write_text(self.settings_toml(**overrides))
        (self.workdir / "test_checks.py").write_text(checks)
        if hook:
            (self.workdir / "conftest.py").write_text(STEP_HOOK)
        return self.workdir

    def settings(self, **overrides: Any) -> Settings:
        folder = self.workdir / "settings"
        folder.mkdir(exist_ok=True)
        (folder / "bluegreen.toml").write_text(self.settings_toml(**overrides))
        return resolve({}, {}, {}, folder)

    # -- running -----------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {**clean_environ(), **extra}

    def gate(self, *args: str, **overrides: Any) -> subprocess.CompletedProcess[str]:
        """``pytest --switch ...`` in the group's folder, to the end."""
        self.write(**overrides)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def bluegreen(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BLUEGREEN, *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def paused_gate(
        self, step: str, *args: str, fault: str = "", **overrides: Any
    ) -> subprocess.Popen[str]:
        """A gate that stops before ``step`` until :meth:`go` (the fault harness's hook;
        ``fault="hook-raises"``: the hook raises then)."""
        self.write(hook=True, **overrides)
        gate = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.workdir,
            env=self.env(FAULT_STEP=step, FAULT=fault, FAULT_DIR=str(self.workdir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(
            lambda: (self.workdir / "at-step").exists() or gate.poll() is not None,
            60,
            f"the gate to reach {step}",
            interval=0.005,
        )
        return gate

    def go(self) -> None:
        (self.workdir / "go").touch()

    # -- looking -----------------------------------------------------------------------------
    def weights(self) -> dict[str, dict[str, tuple[int, str]]]:
        return {name: stack.live_weights() for name, stack in self.stacks.items()}

    def lives(self) -> dict[str, str | None]:
        topology = self.settings().topology
        return {
            name: topology.live_color(RuntimeApi(stack.runtime).server_states(topology.all_servers))
            for name, stack in self.stacks.items()
        }

    def problems(self) -> dict[str, list[str]]:
        topology = self.settings().topology
        found = {}
        for name, stack in self.stacks.items():
            states = RuntimeApi(stack.runtime).server_states(topology.all_servers)
            found[name] = inconsistencies(states, topology)
        return found

    def served(self) -> dict[str, str]:
        return {name: stack.served_color() for name, stack in self.stacks.items()}

    def history(self) -> list[dict[str, Any]]:
        path = self.main.state_file
        if not path.exists():
            return []
        entries: list[dict[str, Any]] = json.loads(path.read_text())["history"]
        return entries

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()


class SpreadLoad:
    """A bounded load on every given instance's routed URL at once (a process each), a request
    every few milliseconds per connection (``PROBE_PAUSE``): it watches the switch on every
    instance, it does not keep the cores busy (HAProxy's own health checks timed out under
    the closed loop, and a cell excuses the failures they cause)."""

    def __init__(
        self, stacks: list[Stack], total: int = 3000, duration: float = 60, concurrency: int = 2
    ) -> None:
        self.loads = [
            LoadProcess(f"{stack.routed_url}/health", total, duration, concurrency, PROBE_PAUSE)
            for stack in stacks
        ]
        self.duration = duration

    def wait_started(self) -> None:
        for load in self.loads:
            wait_for(partial(load.answered_at_least, 20), 30, "the load", watch=[load.process])

    def finish(self) -> list[LoadResult]:
        return [load.finish(self.duration + 30) for load in self.loads]


def run_group_cell(group: Group, step: str, fault: str, on: str = "lb-2") -> Cell:
    """One cell of the fault matrix (tests/support/faults.py) on the group: the gate held at
    ``step``; the signals go to the gate, the HAProxy faults (a reload, HAProxy killed, an
    error answer, an answer lost) to the instance ``on`` alone, under a load spread over all
    three. The same promises as on one instance, for every instance: one color, the same on
    all, nothing left in drain or maint, the journal closed, the history, the exit code; no
    request failed (but through ``on`` while it was killed, or on a keep-alive connection its
    reload closed); then a reload of every instance keeps the color."""
    proxy = group.proxy(on)
    cell = Cell(step, fault)
    load = SpreadLoad(list(group.stacks.values()), duration=90, concurrency=1)
    load.wait_started()
    gate = group.paused_gate(
        step, "--env", "green", "--switch", fault=fault, drain_timeout=5, verify_timeout=5
    )
    target = group.stacks[on]
    try:
        _inject(gate, target, proxy, step, fault)
        group.go()
        out, _ = gate.communicate(timeout=120)
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.wait()
    cell.exit_code = gate.returncode
    cell.output = out or ""
    if fault == "haproxy-killed":
        target.start()
    if fault in ("sigkill", "haproxy-killed"):
        recover = group.bluegreen("recover")
        cell.recovery = recover.stdout + recover.stderr
        cell.output += f"\n$ bluegreen recover ({recover.returncode})\n{cell.recovery}"
    for name, result in zip(group.stacks, load.finish(), strict=True):
        cell.requests += result.count
        flapped = health_check_down(group.stacks[name])
        if flapped and result.failed:
            cell.output += f"\n{name}: HAProxy's own health check took {flapped} down"
        for sample in result.failed:
            failure = f"{name} {sample.kind}: {sample.error or sample.status}"
            excused = bool(flapped) or (
                name == on
                and (
                    fault == "haproxy-killed"
                    or (fault == "reload" and sample.kind.startswith("keepalive-"))
                )
            )
            if excused:
                cell.failed_while_down += 1
                cell.haproxy_failures.append(failure)
            else:
                cell.failed_requests += 1
                cell.output += f"\nfailed: {failure}"
    if fault == "api-error":
        cell.injected = bool(proxy.failed)
    elif fault == "answer-lost":
        cell.injected = bool(proxy.lost)
        cell.output += f"\nanswers lost: {proxy.lost}"
    settings = group.settings()
    topology = settings.topology

    def look() -> str | None:
        every = {
            name: RuntimeApi(stack.runtime).server_states(topology.all_servers)
            for name, stack in group.stacks.items()
        }
        cell.problems += group_problems(every, settings.haproxies(), topology)
        lives = {topology.live_color(states) for states in every.values()}
        return lives.pop() if len(lives) == 1 else f"not one color: {sorted(map(str, lives))}"

    cell.live = look()
    journal = read_journal(settings.state.journal_file)
    cell.journal_open = journal is not None and journal.open
    cell.history = tuple(e["outcome"] for e in group.history())
    for stack in group.stacks.values():  # every server-state file holds the same
        stack.haproxy.reload(stack.runtime)
    cell.live_after_reload = look()
    return cell


SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


def _inject(
    gate: subprocess.Popen[str], target: Stack, proxy: RuntimeApiProxy, step: str, fault: str
) -> None:
    if fault in SIGNALS:
        gate.send_signal(SIGNALS[fault])
    elif fault == "reload":
        target.haproxy.reload(target.runtime)
    elif fault == "haproxy-killed":
        target.haproxy.kill()
    elif fault == "api-error":
        proxy.fail_next.set()
    elif fault == "answer-lost":
        proxy.lose_answers(*LOST_ANSWERS[step])


def health_check_down(stack: Stack) -> str:
    """The routed servers HAProxy's own health check marked DOWN (its log): on a machine so
    loaded that a check times out (100 ms), the color has no server for a moment and HAProxy
    answers 503, whatever the gate does; the requests that failed through that instance then
    are counted apart, as while it was killed (the states, the journal, the history and the
    exit code are asserted all the same)."""
    found = sorted(
        {
            line.split("Server ", 1)[1].split(" is DOWN", 1)[0]
            for line in stack.haproxy.log_text().splitlines()
            if " is DOWN, reason: " in line and "Server api_backend/" in line
        }
    )
    return ", ".join(found)
