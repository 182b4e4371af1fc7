"""Canary steps before the full switch, on a real HAProxy with the suite's bounded load: a good
color passes every step and is switched to; a color failing a share of routed requests only is
caught in the first step and every weight goes back; too little traffic is never a pass; a
signal, a reload, ``bluegreen abort`` or a SIGKILL (then ``bluegreen recover``) during a step
leave exactly one color live and the journal closed; ``bluegreen status`` shows the canary and
exits non-zero while it runs; ``bluegreen promote`` skips the steps left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.switch import canary
from pytest_bluegreen.switch.journal import read_journal
from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.gate import CHECKS, WatchedGate, history
from tests.support.instances import Group
from tests.support.stack import Stack, StackFactory, wait_for
from tests.support.switching import LoadProcess
from tests.support.tiers import one_fast

STEP_SECONDS = 1.5
CANARY: dict[str, Any] = {
    "canary_step_seconds": STEP_SECONDS,
    "canary_min_requests": 10,
    "canary_sticky": False,  # sticky users: test_canary_sticky.py
}


def gate_folder(stack: Stack, **settings: Any) -> Path:
    folder = stack.workdir / "gate"
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**{**CANARY, **settings}))
    (folder / "test_checks.py").write_text(CHECKS)
    return folder


def start_gate(folder: Path, *args: str) -> WatchedGate:
    return WatchedGate(
        folder, "--env", "green", "--switch", "-m", "quick", *args, env=clean_environ()
    )


def bluegreen(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], check=False, cwd=folder, capture_output=True, text=True, timeout=60,
        env=clean_environ(),
    )  # fmt: skip


@pytest.fixture
def load(stack: Stack) -> Iterator[LoadProcess]:
    """Users through the routed API: at most 6,000 requests or 60 s."""
    users = LoadProcess(f"{stack.routed_url}/api/echo", 6000, 60, 2, pause=0.002)
    wait_for(lambda: users.answered_at_least(20), 10, "the load to begin")
    yield users
    users.finish(30)


def blue_alone(stack: Stack) -> None:
    """Exactly blue takes traffic, as before the canary, and the journal is closed."""
    assert stack.served_color() == "blue"
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert not entry.open, entry
    api = stack.api()
    for server, weight in (("blue-api", 100), ("green-api", 0)):
        [state] = [s for s in api.servers_state("api_backend") if s.ref.server == server]
        assert (state.uweight, state.admin.value) == (weight, "ready"), state


def test_a_good_color_passes_every_step_then_takes_all_traffic(
    stack: Stack, load: LoadProcess
) -> None:
    gate = start_gate(gate_folder(stack), "--canary", "10,50")
    code = gate.finish(120)
    loaded = load.finish(30)
    assert code == 0, gate.text
    assert re.search(r"canary 1/2 \(10%\): .*: passed", gate.text), gate.text
    assert re.search(r"canary 2/2 \(50%\): .*: passed", gate.text), gate.text
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert entry.outcome == "switched"
    steps = [s["step"] for s in entry.steps]
    assert steps[:5] == [
        "canary-10",
        "canary-10-judged",
        "canary-50",
        "canary-50-judged",
        "promote",
    ], steps
    assert [s["verdict"] for s in entry.steps if s["step"].endswith("-judged")] == ["passed"] * 2
    first = entry.steps[0]
    assert first["weights"]["api_backend/green-api"] < first["weights"]["api_backend/blue-api"]
    assert 0.09 < first["shares"]["api_backend"] < 0.11
    assert stack.served_color() == "green"
    assert [e["outcome"] for e in history(stack)][-1] == "switched"
    assert loaded.failed == []  # the users saw no failed request through the canary
    match = re.search(r"green answered ([\d,]+) of ([\d,]+) routed request", gate.text)
    assert match, gate.text
    new, routed = (int(g.replace(",", "")) for g in match.groups())
    assert 0.1 < new / routed < 0.5  # between the two steps' shares


def test_a_color_failing_some_routed_requests_is_caught_and_every_weight_goes_back(
    stack: Stack, load: LoadProcess
) -> None:
    """Green answers 500 to every 5th request routed to it (its own port never fails, so
    the checks pass): the first step catches it, with what share of users it reached."""
    stack.backend("green").control(routed_error_every=5)
    gate = start_gate(gate_folder(stack), "--canary", "10,50")
    code = gate.finish(120)
    load.finish(30)
    assert code == 11, gate.text
    assert "canary step 1/2 (10%) failed" in gate.text, gate.text
    assert "5xx rate" in gate.text or "http_5xx_rate" in gate.text, gate.text
    match = re.search(r"green answered ([\d,]+) of ([\d,]+) routed request", gate.text)
    assert match, gate.text
    new, routed = (int(g.replace(",", "")) for g in match.groups())
    assert 0.05 < new / routed < 0.15, (new, routed)
    blue_alone(stack)
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert entry.outcome == "reverted"
    assert [s["step"] for s in entry.steps] == ["canary-10", "canary-10-judged"]
    assert entry.steps[-1]["verdict"] == "failed"
    assert [e["outcome"] for e in history(stack)][-1] == "reverted"


@pytest.mark.parametrize(
    ("on_inconclusive", "windows"), [("abort", 1), ("extend", 2)], ids=["abort", "extend"]
)
def test_too_little_traffic_is_never_a_pass(
    stack: Stack, on_inconclusive: str, windows: int
) -> None:
    """No user traffic: the step cannot be judged; judged again (extend) up to its bound, or
    aborted at once; then every weight goes back, exit 6."""
    folder = gate_folder(stack, canary_on_inconclusive=on_inconclusive, canary_extensions=1)
    gate = start_gate(folder, "--canary", "10")
    code = gate.finish(120)
    assert code == 6, gate.text
    assert "fewer than canary_min_requests 10" in gate.text, gate.text
    assert "could not be judged in " + str(windows) + " window(s)" in gate.text, gate.text
    assert ("judged again (1)" in gate.text) == (windows == 2), gate.text
    blue_alone(stack)


@pytest.mark.parametrize("how", one_fast(["sigterm", "sigint", "reload", "abort"]))
def test_a_stop_during_a_step_returns_every_weight(
    stack: Stack, load: LoadProcess, how: str
) -> None:
    # a step far longer than the wait below: each stop (a reload too, seen by the gate's look
    # at HAProxy's servers during the window) ends the canary at once, not at the window's end
    folder = gate_folder(stack, canary_step_seconds=600)
    gate = start_gate(folder, "--canary", "10,50")
    try:
        assert gate.said("canary 1/2: 10%", 60), gate.text
        if how == "sigterm":
            gate.proc.send_signal(signal.SIGTERM)
        elif how == "sigint":
            gate.proc.send_signal(signal.SIGINT)
        elif how == "reload":
            stack.haproxy.reload(stack.runtime)
        else:
            asked = bluegreen(folder, "abort")
            assert asked.returncode == 0, asked.stdout + asked.stderr
            assert "ended: reverted" in asked.stdout, asked.stdout
        code = gate.finish(60)
    finally:
        gate.finish(0.1)
    loaded = load.finish(30)
    assert code == 8, gate.text
    expected = {
        "sigterm": "interrupted by SIGTERM",
        "sigint": "interrupted by SIGINT",
        "reload": "changed outside the gate",
        "abort": "aborted by 'bluegreen abort'",
    }[how]
    assert expected in gate.text, gate.text
    blue_alone(stack)
    assert [e["outcome"] for e in history(stack)][-1] == "reverted"
    if how != "reload":  # a reload closes keep-alive connections of the old process
        assert loaded.failed == []


def test_status_shows_the_canary_and_promote_skips_the_steps_left(
    stack: Stack, load: LoadProcess
) -> None:
    folder = gate_folder(stack, canary_step_seconds=30)
    gate = start_gate(folder, "--canary", "10,50")
    try:
        assert gate.said("canary 1/2: 10%", 60), gate.text
        status = bluegreen(folder, "status")
        assert status.returncode != 0, status.stdout
        assert "CANARY IN PROGRESS: blue -> green, step 1/2 (10%" in status.stdout, status.stdout
        assert "UNFINISHED SWITCH" not in status.stdout, status.stdout
        assert "INCONSISTENT" not in status.stdout, status.stdout
        promoted = bluegreen(folder, "promote")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "steps left were skipped" in promoted.stdout, promoted.stdout
        code = gate.finish(60)
    finally:
        gate.finish(0.1)
    load.finish(30)
    assert code == 0, gate.text
    assert "bluegreen promote at canary step 1/2" in gate.text, gate.text
    assert stack.served_color() == "green"
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert [s["step"] for s in entry.steps][:3] == ["canary-10", "canary-10-judged", "promote"]
    assert entry.steps[1]["verdict"] == "promote"
    after = bluegreen(folder, "status")
    assert "CANARY IN PROGRESS" not in after.stdout
    assert after.returncode == 0, after.stdout


def test_a_sigkill_during_a_step_then_recover_restores_the_states_before_the_canary(
    stack: Stack,
) -> None:
    folder = gate_folder(stack, canary_step_seconds=30)
    gate = start_gate(folder, "--canary", "10,50")
    try:
        assert gate.said("canary 1/2: 10%", 60), gate.text
        gate.proc.send_signal(signal.SIGKILL)
        assert gate.finish(30) == -signal.SIGKILL
    finally:
        gate.finish(0.1)
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert entry.open
    status = bluegreen(folder, "status")  # the gate is gone: an unfinished switch, not a canary
    assert "UNFINISHED SWITCH" in status.stdout
    assert "CANARY IN PROGRESS" not in status.stdout
    refused = start_gate(folder, "--canary", "10")
    assert refused.finish(60) == 7, refused.text
    recovered = bluegreen(folder, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    blue_alone(stack)
    assert [e["outcome"] for e in history(stack)][-1] == "recovered"


def test_a_dry_run_says_the_steps_and_changes_nothing(stack: Stack) -> None:
    gate = start_gate(gate_folder(stack), "--canary", "5,25,50", "--dry-run")
    assert gate.finish(60) == 0, gate.text
    for number, percent in ((1, 5), (2, 25), (3, 50)):
        assert f"dry run: would run canary {number}/3: {percent}%" in gate.text, gate.text
    assert read_journal(stack.journal_file) is None
    assert stack.served_color() == "blue"


def test_abort_too_late_says_so_and_a_forced_switch_has_no_canary(stack: Stack) -> None:
    """bluegreen abort once the steps have passed (the gate held at 'promote'): it says too
    late and exits non-zero, the switch goes on. A forced switch moves at once."""
    folder = gate_folder(stack, canary_step_seconds=0.5, canary_min_requests=1)
    (folder / "conftest.py").write_text(HOLD_AT_PROMOTE)
    users = LoadProcess(f"{stack.routed_url}/api/echo", 4000, 60, 2, pause=0.002)
    gate = start_gate(folder, "--canary", "10")
    try:
        wait_for((folder / "at-promote").exists, 60, "the gate at promote")
        asked = subprocess.Popen(
            [*BLUEGREEN, "abort"], cwd=folder, stdout=subprocess.PIPE, text=True,
            env=clean_environ(),
        )  # fmt: skip
        wait_for(lambda: canary.request_path(stack.journal_file).exists(), 30, "the request")
        (folder / "go").touch()
        out, _ = asked.communicate(timeout=60)
        code = gate.finish(60)
    finally:
        gate.finish(0.1)
        users.finish(30)
    assert asked.returncode != 0, out
    assert "too late for 'abort'" in out, out
    assert code == 0, gate.text
    assert stack.served_color() == "green"
    forced = bluegreen(folder, "switch-to", "blue", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "canary" not in forced.stdout, forced.stdout
    assert stack.served_color() == "blue"


HOLD_AT_PROMOTE = """
import pathlib, time


def pytest_bluegreen_switch_step(config, step, plan):
    if step != "promote":
        return
    here = pathlib.Path(__file__).parent
    (here / "at-promote").touch()
    deadline = time.monotonic() + 60
    while not (here / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""


@pytest.mark.parametrize("planted", ["fifo", "folder"])
def test_something_planted_at_the_request_name_is_ignored(stack: Stack, planted: str) -> None:
    """A FIFO or a folder where a request goes: the gate neither waits on it nor fails."""
    path = canary.request_path(stack.journal_file)
    if planted == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    users = LoadProcess(f"{stack.routed_url}/api/echo", 4000, 60, 2, pause=0.002)
    try:
        gate = start_gate(gate_folder(stack, canary_step_seconds=1), "--canary", "10")
        code = gate.finish(60)
    finally:
        users.finish(30)
    assert code == 0, gate.text
    assert stack.served_color() == "green"


def test_every_instance_gets_the_same_weights_at_each_step(stack_factory: StackFactory) -> None:
    """Two HAProxy instances as one group: at the second step of --canary 10,50 both show the
    first step's split and hold sticky users of the same canary (one id); the canary ends with
    both on green alone."""
    group = Group.start(stack_factory, count=2)
    users = LoadProcess(f"{group.main.routed_url}/api/echo", 4000, 60, 2, pause=0.002)
    try:
        gate = group.paused_gate(
            "canary-50", "--env", "green", "--switch", "-m", "quick", "--canary", "10,50",
            canary_step_seconds=0.5, canary_min_requests=1,
        )  # fmt: skip
        try:
            weights = group.weights()
            [first, second] = weights.values()
            assert first == second, weights
            assert 0 < first["green-api"][0] < first["blue-api"][0], first
            ids = {RuntimeApi(stack.runtime).sticky_id() for stack in group.stacks.values()}
            assert len(ids) == 1, ids  # one canary id: a user keeps its color on either one
            assert None not in ids
            group.go()
            out, _ = gate.communicate(timeout=120)
        finally:
            if gate.poll() is None:
                gate.kill()
                gate.wait()
    finally:
        users.finish(30)
        group.close()
    assert gate.returncode == 0, out
    assert set(group.lives().values()) == {"green"}, out
    assert not any(RuntimeApi(stack.runtime).sticky() for stack in group.stacks.values())


def test_no_canary_while_the_live_color_has_no_server_up(stack: Stack) -> None:
    """Blue DOWN in HAProxy: any weight would give green all the traffic. The canary stops at
    its first step and every weight goes back (exit 8)."""
    stack.backend("blue").control(health_status=503)
    stack.wait_down("blue")
    gate = start_gate(gate_folder(stack, canary_step_seconds=1), "--canary", "10")
    code = gate.finish(60)
    assert code == 8, gate.text
    assert "no server of the live color blue is UP in api_backend" in gate.text, gate.text
    api = stack.api()
    for server, weight in (("blue-api", 100), ("green-api", 0)):
        [state] = [s for s in api.servers_state("api_backend") if s.ref.server == server]
        assert state.uweight == weight, state
