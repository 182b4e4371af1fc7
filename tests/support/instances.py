"""Three real HAProxy processes (lb-1, lb-2, lb-3: each its own configuration, ports, Runtime
API and server-state file, on loopback) in front of the same two colors, configured as one
group with ``[instances.NAME]`` tables. Used by ``tests/test_instances.py`` and
``benchmarks/switch_under_load.py --instances N``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_bluegreen.haproxy import RuntimeApi
from pytest_bluegreen.load import LoadResult
from pytest_bluegreen.recovery import inconsistencies
from pytest_bluegreen.settings import Settings, resolve

from .faults import BLUEGREEN, STEP_HOOK, RuntimeApiProxy
from .gate import CHECKS
from .stack import Stack, StackFactory, wait_for
from .switching import LoadProcess

NAMES = ("lb-1", "lb-2", "lb-3")


@dataclass
class Group:
    """The instances, by name; lb-1's folder holds the history, journal and locks."""

    stacks: dict[str, Stack]
    workdir: Path
    proxies: dict[str, RuntimeApiProxy] = field(default_factory=dict)

    @classmethod
    def start(cls, factory: StackFactory, count: int = 3) -> Group:
        stacks = {name: factory(name) for name in NAMES[:count]}
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
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTEST"))}
        return {**clean, **extra}

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

    def paused_gate(self, step: str, *args: str) -> subprocess.Popen[str]:
        """A gate that stops before ``step`` until :meth:`go` (the fault harness's hook)."""
        self.write(hook=True)
        gate = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.workdir,
            env=self.env(FAULT_STEP=step, FAULT="", FAULT_DIR=str(self.workdir)),
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
    """A bounded load on every given instance's routed URL at once (a process each)."""

    def __init__(self, stacks: list[Stack], total: int = 3000, duration: float = 60) -> None:
        self.loads = [
            LoadProcess(f"{stack.routed_url}/health", total, duration, 2) for stack in stacks
        ]
        self.duration = duration

    def wait_started(self) -> None:
        for load in self.loads:
            wait_for(lambda load=load: load.answered.value >= 20, 30, "the load to answer")

    def finish(self) -> list[LoadResult]:
        return [load.finish(self.duration + 30) for load in self.loads]
