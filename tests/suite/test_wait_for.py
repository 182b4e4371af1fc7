"""tests/support/stack.py's ``wait_for``: only "not yet" is waited out. A bug in a predicate, a
watched process that ended, HAProxy exiting at its start or a load that stopped fail at once,
with what happened, instead of as a timeout 10 to 30 seconds later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import (
    PORT_NAMES,
    Backend,
    Exited,
    NotYet,
    Stack,
    free_ports,
    wait_for,
)
from tests.support.switching import LoadProcess, _Progress


class Calls:
    """A predicate: raises or answers from ``answers`` in turn (the last one forever)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self) -> object:
        self.count += 1
        answer = self.answers[min(self.count, len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_falsy_and_not_yet_are_waited_out_and_the_answer_returned() -> None:
    predicate = Calls(None, NotYet("no replica yet"), [], ["ready"])
    assert wait_for(predicate, 10, "the replicas", interval=0.001) == ["ready"]
    assert predicate.count == 4


def test_retry_names_what_else_means_not_yet() -> None:
    predicate = Calls(ConnectionRefusedError(111, "refused"), True)
    assert wait_for(predicate, 10, "the server", interval=0.001, retry=(OSError,)) is True
    assert predicate.count == 2


@pytest.mark.parametrize(
    "bug",
    [KeyError("pid"), TypeError("'NoneType' is not subscriptable"), ConnectionRefusedError()],
    ids=["key-error", "type-error", "an-error-not-named-in-retry"],
)
def test_any_other_exception_is_raised_at_once(bug: Exception) -> None:
    predicate = Calls(bug, True)
    with pytest.raises(type(bug)) as raised:
        wait_for(predicate, 30, "something", interval=0.001)
    assert raised.value is bug
    assert predicate.count == 1


def test_the_timeout_names_what_was_waited_for_and_the_last_answer() -> None:
    with pytest.raises(TimeoutError, match=r"waiting for the replicas \(last: NotYet\('1 of 2'\)"):
        wait_for(Calls(NotYet("1 of 2")), 0.05, "the replicas", interval=0.001)


def test_a_watched_process_that_ended_fails_the_wait_at_once() -> None:
    gate = subprocess.Popen(
        [sys.executable, "-c", "print('collection failed'); raise SystemExit(4)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    predicate = Calls(False)
    with pytest.raises(Exited, match=r"waiting for the gate to reach drain: .* exited 4") as raised:
        wait_for(predicate, 60, "the gate to reach drain", interval=0.01, watch=[gate])
    assert "saying: collection failed" in str(raised.value)
    assert predicate.count < 500  # not the 60 s


def test_haproxy_exiting_at_its_start_fails_at_once_with_its_log(
    tmp_path: Path, tls_cert: Path, color_backends: tuple[Backend, Backend]
) -> None:
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    stack = Stack(tmp_path, ports, *color_backends, tls_cert)
    broken = tmp_path / "broken.cfg"
    broken.write_text("global\n    no-such-keyword-here\n")
    stack.haproxy.extra_configs = [*stack.haproxy.extra_configs, broken]
    try:
        with pytest.raises(Exited, match="haproxy exited 1") as raised:
            stack.start()
    finally:
        stack.stop()
    assert "no-such-keyword-here" in str(raised.value)  # its own words, from its log


def test_a_load_that_stopped_fails_the_wait_for_more_answers_at_once(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, _ = color_backends
    load = LoadProcess(f"{blue.url}/health", 100_000, 60, 1)
    progress = _Progress([load], 100_000)
    progress.wait_for_more(5)
    load.process.kill()  # the load process dies (OOM, a bug): no more answers will come
    load.process.join(10)
    with pytest.raises(RuntimeError, match="the load stopped before the switches were done"):
        progress.wait_for_more(1_000_000)
