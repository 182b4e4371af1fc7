from __future__ import annotations

from pytest_bluegreen.haproxy.runtime import supported_version
from tests.support.stack import Stack


def test_stack_starts_blue_live(stack: Stack) -> None:
    assert stack.served_color() == "blue"
    assert supported_version(stack.api().version())
