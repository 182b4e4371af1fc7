"""Sticky users during a canary, on a real HAProxy (the shipped haproxy.cfg's bluegreen_sticky
cookie): clients that keep their cookies keep the color they got for the rest of the canary,
whichever it is; the full switch (here after ``bluegreen promote``) and an abort move every one
of them, cookie or not."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.gate import CHECKS, WatchedGate
from tests.support.stack import Stack

USERS = 12  # at a 50% step, all twelve on one color by chance: 1 in 2,048


def colors_seen(user: requests.Session, url: str, times: int = 8) -> set[str]:
    seen = set()
    for _ in range(times):
        answer = user.get(f"{url}/api/echo", timeout=5)
        assert answer.status_code == 200, answer.text
        seen.add(answer.headers["X-Bluegreen-Color"])
    return seen


@pytest.mark.parametrize("then", ["promote", "abort"])
def test_users_keep_their_color_until_the_canary_ends(stack: Stack, then: str) -> None:
    folder = stack.workdir / "gate"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(canary_step_seconds=60, canary_sticky=True)
    )
    (folder / "test_checks.py").write_text(CHECKS)
    gate = WatchedGate(
        folder, "--env", "green", "--switch", "-m", "quick", "--canary", "50",
        env=clean_environ(),
    )  # fmt: skip
    users = [requests.Session() for _ in range(USERS)]
    try:
        assert gate.said("canary 1/1: 50%", 60), gate.text
        first = [colors_seen(user, stack.routed_url) for user in users]
        assert all(len(seen) == 1 for seen in first), first  # nobody flaps between versions
        assert set().union(*first) == {"blue", "green"}, first  # both colors got users
        again = [colors_seen(user, stack.routed_url) for user in users]
        assert again == first  # and kept them
        fresh = [colors_seen(requests.Session(), stack.routed_url, 1) for _ in range(USERS)]
        assert set().union(*fresh) == {"blue", "green"}  # newcomers are balanced by weight
        asked = subprocess.run(
            [*BLUEGREEN, then], cwd=folder, capture_output=True, text=True, timeout=60,
            env=clean_environ(), check=False,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stdout + asked.stderr
        code = gate.finish(60)
    finally:
        gate.finish(0.1)
        for user in users:
            user.close()
    assert code == (0 if then == "promote" else 8), gate.text
    everyone = "green" if then == "promote" else "blue"
    after = [colors_seen(user, stack.routed_url) for user in users]  # the same cookies
    assert all(seen == {everyone} for seen in after), after
    assert not stack.api().sticky()  # persistence off again


def test_without_canary_sticky_users_are_balanced(stack: Stack) -> None:
    """canary_sticky = false: the cookie is not honoured during the canary either."""
    folder = stack.workdir / "gate"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(canary_step_seconds=60, canary_sticky=False)
    )
    (folder / "test_checks.py").write_text(CHECKS)
    gate = WatchedGate(
        folder, "--env", "green", "--switch", "-m", "quick", "--canary", "50",
        env=clean_environ(),
    )  # fmt: skip
    user = requests.Session()
    try:
        assert gate.said("canary 1/1: 50%", 60), gate.text
        assert not stack.api().sticky()
        assert colors_seen(user, stack.routed_url, 12) == {"blue", "green"}
        subprocess.run([*BLUEGREEN, "abort"], cwd=folder, capture_output=True, timeout=60,
                       env=clean_environ(), check=False)  # fmt: skip
        assert gate.finish(60) == 8, gate.text
    finally:
        gate.finish(0.1)
        user.close()


KILLED_AFTER_THE_FIRST_WEIGHT = """
import os, signal
from pytest_bluegreen.haproxy.runtime import RuntimeApi

_set_weight = RuntimeApi.set_weight


def set_weight(self, ref, weight):
    _set_weight(self, ref, weight)
    if weight not in (0, 100):  # the canary's first weight is in HAProxy: killed before its record
        os.kill(os.getpid(), signal.SIGKILL)


RuntimeApi.set_weight = set_weight
"""


def test_a_gate_killed_before_its_first_step_record_leaves_no_user_held(stack: Stack) -> None:
    """Persistence on and a first weight sent, the step not yet journaled: recover restores
    the weights and lets the users go (the journal said so before persistence went on)."""
    folder = stack.workdir / "gate"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(
        stack.settings_toml(canary_step_seconds=60, canary_sticky=True)
    )
    (folder / "test_checks.py").write_text(CHECKS)
    (folder / "conftest.py").write_text(KILLED_AFTER_THE_FIRST_WEIGHT)
    gate = WatchedGate(
        folder, "--env", "green", "--switch", "-m", "quick", "--canary", "50",
        env=clean_environ(),
    )  # fmt: skip
    assert gate.finish(120) == -9, gate.text
    assert stack.api().sticky()
    recovered = subprocess.run(
        [*BLUEGREEN, "recover"], cwd=folder, capture_output=True, text=True, timeout=60,
        env=clean_environ(), check=False,
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert not stack.api().sticky()
    with requests.Session() as user:  # a cookie for green: green no longer takes it
        user.cookies.set("bluegreen_sticky", "green")
        assert colors_seen(user, stack.routed_url) == {"blue"}


def test_held_users_with_no_canary_are_a_problem_recover_solves(stack: Stack) -> None:
    """Persistence left on by hand (or by a gate killed without a journal): status says it,
    recover lets the users go."""
    folder = stack.workdir / "gate"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(stack.settings_toml())
    stack.api().set_sticky(True)

    def bluegreen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*BLUEGREEN, *args], cwd=folder, capture_output=True, text=True, timeout=60,
            env=clean_environ(), check=False,
        )  # fmt: skip

    status = bluegreen("status")
    assert status.returncode != 0
    assert "sticky users are held" in status.stdout, status.stdout
    recovered = bluegreen("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "let go" in recovered.stdout, recovered.stdout
    assert not stack.api().sticky()
    assert bluegreen("status").returncode == 0
