"""A step hook that raises a BaseException -- ``pytest.exit``, ``sys.exit``, a
``KeyboardInterrupt`` -- is an abort before the switch's point of no return (reverted, exit 8)
and a warning after it (switched, exit 0): never HAProxy half-switched, a journal left open or
the hook's own exit code. (``pytest.fail`` and an ordinary Exception are a column of the fault
matrix, tests/switch/test_faults.py, at every step; before_switch/after_switch in
tests/gate/test_truth.py.)
A real gate, as a user runs it, against a real HAProxy."""

from __future__ import annotations

import pytest

from pytest_bluegreen.switch.journal import read_journal
from tests.support.gate import outcomes, output, run_gate
from tests.support.stack import BLUE_LIVE, GREEN_LIVE, Stack

HOOK = """
import os, sys, pytest


def pytest_bluegreen_switch_step(config, step, plan):
    if step != os.environ["HOOK_AT"]:
        return
    kind = os.environ["HOOK_RAISES"]
    if kind == "pytest-exit":
        pytest.exit("the operator stops here", returncode=3)
    if kind == "sys-exit":
        sys.exit(3)
    raise KeyboardInterrupt
"""

# what the hook raises -> how the gate names it
SAID = {
    "pytest-exit": "Exit: the operator stops here",
    "sys-exit": "SystemExit: 3",
    "keyboard-interrupt": "KeyboardInterrupt",
}


@pytest.mark.parametrize("kind", list(SAID))
@pytest.mark.parametrize("at", ["drain", "idle"])
def test_a_step_hook_raising_a_base_exception(
    pytester: pytest.Pytester,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    at: str,
) -> None:
    said = SAID[kind]
    pytester.makeconftest(HOOK)
    monkeypatch.setenv("HOOK_AT", at)
    monkeypatch.setenv("HOOK_RAISES", kind)
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    journal = read_journal(stack.journal_file)
    assert journal is not None
    if at == "drain":  # before the point of no return: undone
        assert result.ret == 8, output(result)
        result.stdout.fnmatch_lines(
            [
                f"*REFUSED: switch to green failed at 'drain': the step hook raised {said}*"
                "previous server states restored*"
            ]
        )
        assert stack.live_weights() == BLUE_LIVE
        assert outcomes(stack) == ["reverted"]
        assert (journal.open, journal.outcome) == (False, "reverted")
    else:  # past it: completed, the hook's raise said
        assert result.ret == 0, output(result)
        result.stdout.fnmatch_lines(["*SWITCH: switched blue -> green*"])
        assert f"the step hook raised {said}" in output(result)
        assert stack.live_weights() == GREEN_LIVE
        assert outcomes(stack) == ["switched"]
        assert (journal.open, journal.outcome) == (False, "switched")
