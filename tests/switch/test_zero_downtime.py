"""Zero downtime: a bounded load through the routed frontend while traffic switches 10 times."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack
from tests.support.switching import switch_under_load

pytestmark = pytest.mark.timing  # not one failed request under a load


def test_no_request_fails_while_switching_back_and_forth(stack: Stack) -> None:
    run = switch_under_load(stack, switches=10, total=12_000, duration=90)
    load = run.load
    assert len(run.switches) == 10
    assert [r.plan.target for r in run.switches] == ["green", "blue"] * 5
    assert load.failed == [], load.failed[:5]
    kinds = load.by_kind()
    assert set(kinds) == {"keepalive-get", "new-get", "keepalive-post"}
    assert min(kinds.values()) > 100, kinds
    colors = load.colors()
    assert colors["blue"] > 0
    assert colors["green"] > 0
    assert all(r.drained for r in run.switches)
    # every switch was followed by answers from its target
    assert len(run.latencies_ms()) == 10
    assert stack.served_color() == "blue"
