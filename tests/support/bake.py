"""A gate run with a bake, as a user runs it against a Stack: ``pytest --env green --switch
--bake SECONDS`` with a post check, 0.5 s intervals and no scale-down delay, in the foreground
(:func:`bake_run`, optionally a release that goes bad once it takes traffic) or in the
background (:class:`BackgroundGate`, to act on HAProxy or the gate while it bakes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from .gate import CHECKS, run_gate
from .stack import Stack

# the post check the bake runs every interval
POST = """

@pytest.mark.post
def test_the_live_color_serves_items(routed_http):
    response = routed_http.post("/api/items", json={"name": "bake"})
    assert response.status_code == 200, response.text
"""

# the bake's settings: short intervals, the old color stopped at once
BAKE: dict[str, Any] = {"bake_interval": 0.5, "scale_down_delay": 0}

# a conftest: the new color goes bad once it takes traffic (a release that degrades under load)
DEGRADE_AFTER_SWITCH = """
import requests


def pytest_bluegreen_after_switch(config, result):
    if result.plan.target == "green":
        requests.post({control!r}, json={{"api_status": 500}}, timeout=5)
"""


def degrade_after_switch(pytester: pytest.Pytester, stack: Stack) -> None:
    """The gate's conftest: ``stack``'s green answers 500 on its API once switched to."""
    pytester.makeconftest(DEGRADE_AFTER_SWITCH.format(control=f"{stack.green.url}/_control"))


def bake_run(
    pytester: pytest.Pytester,
    stack: Stack,
    seconds: float,
    *args: str,
    degrade: bool = False,
    checks: str = CHECKS + POST,
    **settings: Any,
) -> pytest.RunResult:
    """``pytest --env green --switch --bake SECONDS ARGS`` on ``stack`` with :data:`BAKE` (and
    ``settings`` over it); with ``degrade``, green goes bad after the switch."""
    if degrade:
        degrade_after_switch(pytester, stack)
    bake = ("--env", "green", "--switch", "--bake", f"{seconds:g}")
    return run_gate(pytester, stack, *bake, *args, checks=checks, **(BAKE | settings))


class BackgroundGate:
    """``pytest --env green --switch --bake SECONDS`` started in ``folder`` (prepared with
    :func:`tests.support.gate.prepare`), its output read line by line; killed on leaving a
    ``with`` block if it still runs."""

    def __init__(self, folder: Path, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green",
                "--switch", "--bake", f"{seconds:g}",
            ],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.seen: list[str] = []

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        """Read the output up to a line with ``text``; AssertionError if none comes in time."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.seen.append(line)
            if text in line:
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no line with {text!r}: {''.join(self.seen)}")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Its exit status and all it wrote, once it ends."""
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.seen) + out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self) -> BackgroundGate:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()
