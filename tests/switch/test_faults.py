"""Faults first: every step of the switch x every fault a real deployment sees, on a real
HAProxy under a bounded load probe (tests/support/faults.py has the harness and the promises).

After each: exactly one color takes traffic, nothing is left in drain or maint, the journal is
closed, the history says what happened, the exit code is the documented one, no probe request
failed while HAProxy was running, and a soft reload of HAProxy keeps the color (its
server-state file holds what it shows). Before the point of no return a fault undoes the
switch; after it the switch is completed.

And output nobody reads (a closed stdout, a progress line that raises) is no fault of
HAProxy's: it never reverts, nor fails, a switch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal, read_journal
from tests.support.cli import clean_environ
from tests.support.faults import CANARY_STEP, FAULTS, STEPS, run_cell
from tests.support.gate import CHECKS
from tests.support.stack import GREEN_LIVE, Stack, StackFactory, wait_for
from tests.support.switching import stack_settings
from tests.support.tiers import diagonal


@pytest.mark.parametrize(("step", "fault"), diagonal((*STEPS, CANARY_STEP), FAULTS))
def test_fault_at_step(stack_factory: StackFactory, tmp_path: Path, step: str, fault: str) -> None:
    """Every step of the switch, and a canary's second step (--canary 10,50: its first
    step's split weights in HAProxy, every weight going back to the states before it)."""
    stack = stack_factory()
    cell = run_cell(stack, tmp_path / "gate", step, fault)
    assert cell.mismatches() == [], cell.output[-6000:]
    assert cell.requests > 0
    if step == CANARY_STEP:
        assert "canary 1/2 (10%)" in cell.output, cell.output[-6000:]  # the first step judged
    if fault == "reload":
        # HAProxy 2.6 closes idle keep-alive connections of the old process on a soft
        # reload; a request sent on one at that instant fails (HAProxy's doing, not the
        # gate's: 2.8 has idle-close-on-response). Nothing else may fail.
        assert all(f.startswith("keepalive-") for f in cell.haproxy_failures), cell.haproxy_failures
    elif fault != "haproxy-killed":
        assert cell.failed_while_down == 0


# --- output nobody reads -------------------------------------------------------------------

READER_GOES_AWAY = """
import os


def pytest_bluegreen_switch_step(config, step, plan):
    if step == os.environ["CLOSE_STDOUT_AT"]:  # `pytest --switch | head`: the reader is gone
        read, write = os.pipe()
        os.close(read)
        os.dup2(write, 1)
        os.close(write)
"""


@pytest.mark.parametrize("step", ["drain", "idle"])  # before and after the point of no return
def test_a_reader_gone_mid_switch_fails_nothing(stack: Stack, tmp_path: Path, step: str) -> None:
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml())
    (tmp_path / "test_checks.py").write_text(CHECKS)
    (tmp_path / "conftest.py").write_text(READER_GOES_AWAY)
    env = clean_environ()
    gate = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=tmp_path, env={**env, "CLOSE_STDOUT_AT": step}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert (gate.returncode, gate.stderr) == (0, ""), gate.stdout + gate.stderr
    assert "bluegreen gate: switch" in gate.stdout  # what came before the reader went
    entries = json.loads(stack.state_file.read_text())["history"]
    assert [e["outcome"] for e in entries] == ["switched"]
    assert stack.live_weights() == GREEN_LIVE
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")
    stack.haproxy.reload(stack.runtime)
    assert stack.live_weights() == GREEN_LIVE


@pytest.mark.parametrize("step", STEPS)
def test_output_that_raises_at_a_step_fails_nothing(stack: Stack, step: str) -> None:
    """From ``step``'s own line on, every progress line raises (the stdout it goes to was
    closed)."""
    settings = stack_settings(stack)
    closed: list[str] = []

    def progress(line: str) -> None:
        if closed or line.endswith(f": {step}"):
            closed.append(line)
            raise BrokenPipeError(32, "Broken pipe")

    plan = switch.plan(
        stack.haproxies(), settings.topology, "green", settings.switching.full_weight
    )
    result = switch.apply(
        stack.haproxies(),
        plan,
        settings.switching,
        settings.topology,
        journal=Journal(stack.journal_file),
        server_state_file=stack.server_state_file,
        progress=progress,
    )
    assert closed  # the output failed from that step on
    assert result.notes == []
    assert stack.live_weights() == GREEN_LIVE
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")
    assert [s["step"] for s in journal.steps] == list(switch.STEPS)


def test_a_progress_line_that_raises_is_no_haproxy_failure(stack: Stack) -> None:
    """A long drain says what it waits for; a closed stdout makes that line raise
    BrokenPipeError, an OSError as the Runtime API's socket errors are: past the point of no
    return it must neither revert nor stop the switch."""
    settings = stack_settings(stack, drain_timeout=10)
    # a slow request in flight on blue, held until the drain has said what it waits for (a
    # drain over 1 s): released then, not after a fixed delay
    stack.blue.control(hold=True)
    answers: list[int] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            requests.post(f"{stack.routed_url}/api/slow", timeout=60).status_code
        )
    )
    slow.start()
    wait_for(
        lambda: any(r.server == "blue-api" and r.scur > 0 for r in stack.api().show_stat()),
        10,
        "the slow request to reach blue",
        watch=[slow],
    )
    said: list[str] = []

    def closed_stdout(line: str) -> None:
        said.append(line)
        if line.startswith("draining: "):
            stack.blue.control(release=True)
        raise BrokenPipeError(32, "Broken pipe")

    plan = switch.plan(
        stack.haproxies(), settings.topology, "green", settings.switching.full_weight
    )
    result = switch.apply(
        stack.haproxies(),
        plan,
        settings.switching,
        settings.topology,
        journal=Journal(stack.journal_file),
        server_state_file=stack.server_state_file,
        progress=closed_stdout,
    )
    slow.join(30)
    assert any(line.startswith("draining: api_backend/blue-api 1 session(s)") for line in said)
    assert result.drained
    assert answers == [200]
    assert stack.live_weights() == GREEN_LIVE
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")


def test_a_color_failing_after_verify_is_reported_not_undone(stack: Stack) -> None:
    """At 'confirm' the routed URL is asked once more. Past the point of no return a failure
    there is the new color's doing (HAProxy's states are the switch's): a warning, never a
    second, unverified switch back (that is the bake's to judge)."""
    settings = stack_settings(stack, verify_timeout=1)

    def breaks_at_confirm(step: str, plan: switch.SwitchPlan) -> None:
        if step == "confirm":
            stack.green.control(health_status=500)

    plan = switch.plan(
        stack.haproxies(), settings.topology, "green", settings.switching.full_weight
    )
    result = switch.apply(
        stack.haproxies(),
        plan,
        settings.switching,
        settings.topology,
        journal=Journal(stack.journal_file),
        server_state_file=stack.server_state_file,
        on_step=breaks_at_confirm,
    )
    [warning] = result.notes
    assert warning.startswith("warning: at 'confirm' ")
    assert "did not answer from green" in warning
    assert "nothing undone" in warning
    assert stack.live_weights() == GREEN_LIVE
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")


def test_an_unexpected_error_past_the_point_of_no_return_is_an_incomplete_switch(
    stack: Stack,
) -> None:
    """Past the point of no return an error that is not HAProxy's (a bug, a verifier that
    raises something unforeseen) neither undoes the switch nor escapes as a traceback: the
    switch is incomplete (exit 10), the journal stays open and ``recover`` completes it."""
    settings = stack_settings(stack)
    calls: list[str] = []

    def verifier(target: str, deadline: float) -> switch.Verification:
        calls.append(target)
        if len(calls) > 1:  # at 'confirm'
            raise LookupError("a bug of ours")
        return switch.Verification(0.0, None, 1)

    plan = switch.plan(
        stack.haproxies(), settings.topology, "green", settings.switching.full_weight
    )
    with pytest.raises(switch.SwitchIncomplete) as raised:
        switch.apply(
            stack.haproxies(),
            plan,
            settings.switching,
            settings.topology,
            journal=Journal(stack.journal_file),
            server_state_file=stack.server_state_file,
            verifier=verifier,
        )
    assert raised.value.exit_code == 10
    assert raised.value.step == "confirm"
    assert "at 'confirm': LookupError: a bug of ours" in str(raised.value)
    assert "run 'bluegreen recover'" in str(raised.value)
    assert stack.live_weights() == GREEN_LIVE  # idle was done: nothing undone
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert journal.open
    assert [s["step"] for s in journal.steps][-1] == "incomplete"
