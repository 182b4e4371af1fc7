"""Running a real gated pytest session (a subprocess, as a user would) against a Stack."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http, color):
    response = http.get("/health")
    assert response.status_code == 200


@pytest.mark.quick
def test_api(http):
    response = http.post("/api/items", json={"name": "x"})
    assert response.status_code == 200, response.text


@pytest.mark.shared
def test_shared_service(haproxy):
    from pytest_bluegreen.haproxy.runtime import supported_version

    assert supported_version(haproxy.version())
"""


def deployment_folder(folder: Path, stack: Stack, extra: str = "", **settings: Any) -> Path:
    """A deployment's folder as ``bluegreen`` runs in it: ``bluegreen.toml`` for ``stack``
    (``settings`` over its defaults, then ``extra`` appended) and ``checks/test_checks.py``."""
    (folder / "checks").mkdir(parents=True, exist_ok=True)
    (folder / "checks" / "test_checks.py").write_text(CHECKS)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**settings) + extra)
    return folder


def prepare(pytester: pytest.Pytester, stack: Stack, checks: str = CHECKS, **settings: Any) -> None:
    pytester.makefile(".toml", bluegreen=stack.settings_toml(**settings))
    pytester.makepyfile(test_checks=checks)


def run_gate(
    pytester: pytest.Pytester, stack: Stack, *args: str, checks: str = CHECKS, **settings: Any
) -> pytest.RunResult:
    prepare(pytester, stack, checks, **settings)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def history(stack: Stack) -> list[dict[str, Any]]:
    if not stack.state_file.exists():
        return []
    entries: list[dict[str, Any]] = json.loads(stack.state_file.read_text())["history"]
    return entries


def outcomes(stack: Stack) -> list[str]:
    return [e["outcome"] for e in history(stack)]


def verdict(pytester: pytest.Pytester) -> dict[str, Any]:
    """The gate's ``reports/verdict.json`` in the pytester folder."""
    data: dict[str, Any] = json.loads((pytester.path / "reports" / "verdict.json").read_text())
    return data


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def server_state_file(stack: Stack) -> Path:
    return stack.server_state_file


class WatchedGate:
    """A gate (``python -m pytest ... --switch``) started in ``folder`` as a subprocess whose
    output is read as it comes, so a test can act at a moment the gate announces (say, the
    first ``bluegreen: draining:`` line) and then signal it."""

    def __init__(self, folder: Path, *args: str, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                for text, seen in self._waiting.items():
                    if text in line:
                        seen.set()

    def said(self, text: str, timeout: float) -> bool:
        """Whether an output line holding ``text`` came within ``timeout`` seconds."""
        with self._lock:
            seen = self._waiting.setdefault(text, threading.Event())
            if any(text in line for line in self.lines):
                seen.set()
        return seen.wait(timeout)

    def finish(self, timeout: float) -> int:
        """Its exit status (killed if still running after ``timeout``), its output read."""
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(10)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
