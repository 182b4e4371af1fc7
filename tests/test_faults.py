"""Faults first: every step of the switch x every fault a real deployment sees, on a real
HAProxy under a bounded load probe (tests/support/faults.py has the harness and the promises).

After each: exactly one color takes traffic, nothing is left in drain or maint, the journal is
closed, the history says what happened, the exit code is the documented one, and no probe
request failed while HAProxy was running.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faults import FAULTS, STEPS, run_cell
from tests.support.stack import StackFactory

pytestmark = pytest.mark.infra


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("step", STEPS)
def test_fault_at_step(stack_factory: StackFactory, tmp_path: Path, step: str, fault: str) -> None:
    stack = stack_factory()
    cell = run_cell(stack, tmp_path / "gate", step, fault)
    assert cell.mismatches() == [], cell.output[-6000:]
    assert cell.requests > 0
    if fault == "reload":
        # HAProxy 2.6 closes idle keep-alive connections of the old process on a soft
        # reload; a request sent on one at that instant fails (HAProxy's doing, not the
        # gate's: 2.8 has idle-close-on-response). Nothing else may fail.
        assert all(f.startswith("keepalive-") for f in cell.haproxy_failures), cell.haproxy_failures
    elif fault != "haproxy-killed":
        assert cell.failed_while_down == 0
