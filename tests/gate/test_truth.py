"""The gate tells the truth about the session: a pytest.exit(0), a shared-only failure, a
narrowed selection, a raising hook, a refusal at start, a SIGTERM during the checks -- each
against a real HAProxy, as a user would run it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gate import CHECKS, history, outcomes, output, prepare, run_gate, verdict
from tests.support.stack import Stack, wait_for

BLUE_LIVE = {
    "blue-api": (100, "ready"),
    "blue-frontend": (100, "ready"),
    "green-api": (0, "ready"),
    "green-frontend": (0, "ready"),
}


@pytest.mark.parametrize(
    ("checks", "code", "said"),
    [
        pytest.param(
            CHECKS + "\n\ndef test_budget():\n    assert False\n\n"
            "def test_out_of_time():\n    pytest.exit('time budget', returncode=0)\n",
            1,
            "*FAILED: checks failed (untagged: 1 failed); none of green's own checks failed; "
            "the session was interrupted (pytest.exit: time budget)*",
            id="a-failure-then-exit-0",
        ),
        pytest.param(
            CHECKS + "\n\ndef test_out_of_time():\n    pytest.exit('time budget', returncode=0)\n",
            6,
            "*INCONCLUSIVE: inconclusive: the session was interrupted (pytest.exit: time budget)*",
            id="passes-then-exit-0",
        ),
    ],
)
def test_pytest_exit_zero_never_switches(
    pytester: pytest.Pytester, stack: Stack, checks: str, code: int, said: str
) -> None:
    result = run_gate(pytester, stack, "--env", "green", "--switch", checks=checks)
    assert result.ret == code, output(result)
    result.stdout.fnmatch_lines([said])
    assert stack.live_weights() == BLUE_LIVE
    assert verdict(pytester)["decision"] != "switched"
    assert verdict(pytester)["exit_code"] == code


def test_a_shared_only_failure_keeps_traffic_on_the_live_color(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    broken_shared = CHECKS.replace(
        "assert supported_version(haproxy.version())", 'assert False, "redis unreachable"'
    )
    result = run_gate(pytester, stack, "--env", "green", "--switch", checks=broken_shared)
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(
        [
            "*FAILED: checks failed (shared: 1 failed); none of green's own checks failed*",
            "*traffic stays on green*",
        ]
    )
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["switched", "failed"]


@pytest.mark.parametrize(
    ("args", "narrowed"),
    [
        pytest.param(
            ["--deselect", "test_checks.py::test_api[green]"], "--deselect", id="deselect"
        ),
        pytest.param(["--lf"], "--lf", id="last-failed"),
        pytest.param(["--sw"], "--sw", id="stepwise"),
    ],
)
def test_a_narrowed_selection_is_inconclusive_unless_allowed(
    pytester: pytest.Pytester, stack: Stack, args: list[str], narrowed: str
) -> None:
    prepare(pytester, stack)
    gate = ["--env", "green", "--switch", *args]
    result = pytester.runpytest_subprocess(*gate, timeout=120)  # the cache plugin is on
    assert result.ret == 6, output(result)
    result.stdout.fnmatch_lines([f"*inconclusive: the selection was narrowed by {narrowed}*"])
    assert stack.live_weights() == BLUE_LIVE
    allowed = pytester.runpytest_subprocess(*gate, "--allow-narrowed", timeout=120)
    assert allowed.ret == 0, output(allowed)
    assert stack.served_color() == "green"


@pytest.mark.parametrize("mode", ["--collect-only", "--setup-plan"])
def test_modes_that_run_no_checks_deploy_and_switch_nothing(
    pytester: pytest.Pytester, stack: Stack, mode: str
) -> None:
    result = run_gate(pytester, stack, "--env", "green", "--deploy", "v9", "--switch", mode)
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*bluegreen gate: off: this mode runs no checks*"])
    assert "deploying" not in output(result)
    assert not stack.lock().path.exists()
    assert stack.live_weights() == BLUE_LIVE
    assert history(stack) == []


# what a hook raises: an Exception, or pytest.fail's Failed (a BaseException, as SystemExit)
RAISES = [
    pytest.param("raise ConnectionError('{what}')", "ConnectionError: {what}", id="exception"),
    pytest.param("pytest.fail('{what}')", "Failed: {what}", id="pytest-fail"),
]


@pytest.mark.parametrize(("raising", "said"), RAISES)
def test_a_raising_after_switch_hook_does_not_fail_a_done_switch(
    pytester: pytest.Pytester, stack: Stack, raising: str, said: str
) -> None:
    what = "the chat webhook does not answer"
    pytester.makeconftest(
        "import pytest\n\n\n"
        "def pytest_bluegreen_after_switch(config, result):\n"
        f"    {raising.format(what=what)}\n"
    )
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(
        [
            "*SWITCH: switched blue -> green*",
            f"*warning: pytest_bluegreen_after_switch hook raised {said.format(what=what)}*",
        ]
    )
    assert outcomes(stack) == ["switched"]
    assert verdict(pytester)["decision"] == "switched"


@pytest.mark.parametrize(("raising", "said"), RAISES)
def test_a_raising_before_switch_hook_vetoes(
    pytester: pytest.Pytester, stack: Stack, raising: str, said: str
) -> None:
    what = "the change calendar does not answer"
    pytester.makeconftest(
        "import pytest\n\n\n"
        "def pytest_bluegreen_before_switch(config, plan, decision):\n"
        f"    {raising.format(what=what)}\n"
    )
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 7, output(result)
    result.stdout.fnmatch_lines(
        [f"*REFUSED: vetoed: the before_switch hook raised {said.format(what=what)}*"]
    )
    assert stack.live_weights() == BLUE_LIVE
    assert outcomes(stack) == ["refused"]


def test_a_refusal_at_start_replaces_the_last_verdict(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    assert verdict(pytester)["decision"] == "switched"
    with stack.lock().hold():
        result = pytester.runpytest_subprocess("--env", "blue", "--switch", timeout=120)
    assert result.ret == 7, output(result)
    assert verdict(pytester)["decision"] == "refused"
    assert "another gate holds" in verdict(pytester)["reason"]


def test_sigterm_during_the_checks_changes_nothing_and_says_so(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    started = pytester.path / "started"
    slow = CHECKS + (
        "\n\ndef test_slow(color):\n"
        "    import pathlib, time\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    deadline = time.monotonic() + 60\n"
        "    while time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
    )
    prepare(pytester, stack, slow)
    gate = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(started.exists, 60, "the slow check to start", watch=[gate])
    gate.send_signal(signal.SIGTERM)
    out, _ = gate.communicate(timeout=60)
    assert gate.returncode == 2, out
    assert "INCONCLUSIVE: inconclusive: the session was interrupted (SIGTERM received)" in out, out
    assert stack.live_weights() == BLUE_LIVE
    assert outcomes(stack) == ["inconclusive"]
    assert verdict(pytester)["exit_code"] == 2


def test_an_unfinished_journal_refuses_every_gate_until_recovered(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    from pytest_bluegreen.haproxy.identity import InstanceIdentity  # noqa: PLC0415
    from pytest_bluegreen.switch.journal import Journal  # noqa: PLC0415

    journal = Journal(stack.journal_file)
    journal.begin(
        source="blue",
        target="green",
        instance=InstanceIdentity(stack.runtime, 1, 1),
        prior=stack.api().server_states(
            [s.ref for s in stack.api().servers_state() if s.backend.endswith("_backend")]
        ),
    )
    journal.step("promote")
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 7, output(result)
    assert "an unfinished switch blue -> green" in output(result)
    assert "bluegreen recover" in output(result)
    assert "passed" not in output(result)  # refused before any check ran
    assert stack.live_weights() == BLUE_LIVE
    assert Path(stack.journal_file).exists()
