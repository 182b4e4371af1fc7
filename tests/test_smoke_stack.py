from __future__ import annotations

from tests.support.stack import Stack


def test_stack_starts_blue_live(stack: Stack) -> None:
    assert stack.served_color() == "blue"
    assert stack.api().version().startswith("2.")
