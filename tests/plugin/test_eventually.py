"""eventually() (retries until a deadline) and classify() (infrastructure vs wrong answer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import docker.errors
import psycopg
import pytest
import redis.exceptions
import requests

from pytest_bluegreen.eventually import (
    INFRASTRUCTURE,
    WRONG_ANSWER,
    InfrastructureError,
    classify,
    eventually,
    unreachable_part,
)


class Flaky:
    """Raises ``error()`` for the first ``failures`` calls, then returns "ok"; counts calls."""

    def __init__(self, failures: int, error: Callable[[], BaseException]) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return "ok"


# --- eventually ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        lambda: AssertionError("not yet"),
        lambda: ConnectionRefusedError(111, "Connection refused"),
        lambda: requests.ConnectionError("starting"),
        lambda: InfrastructureError("engine starting"),
    ],
    ids=["assertion", "refused", "requests", "infrastructure"],
)
def test_returns_once_the_check_passes(error: Callable[[], BaseException]) -> None:
    check = Flaky(3, error)
    assert eventually(check, timeout=10, interval=0.001) == "ok"
    assert check.calls == 4


def test_passing_at_once_calls_once() -> None:
    check = Flaky(0, AssertionError)
    assert eventually(check, timeout=10, interval=5) == "ok"
    assert check.calls == 1


def test_gives_up_at_the_deadline_with_the_attempts_in_a_note() -> None:
    check = Flaky(10**9, lambda: AssertionError("still 503"))
    start = time.monotonic()
    with pytest.raises(AssertionError, match="still 503") as info:
        eventually(check, timeout=0.3, interval=0.05)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3  # the deadline, not an unbounded loop
    assert check.calls >= 2
    (note,) = info.value.__notes__
    assert note.startswith(f"eventually: gave up after {check.calls} attempt(s) over ")
    assert "(timeout 0.3s, every 0.05s)" in note


def test_gives_up_on_an_infrastructure_error_too() -> None:
    check = Flaky(10**9, lambda: ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(ConnectionRefusedError) as info:
        eventually(check, timeout=0.1, interval=0.02)
    assert f"gave up after {check.calls} attempt(s)" in info.value.__notes__[0]


def test_the_last_sleep_is_cut_to_the_deadline() -> None:
    """interval longer than the timeout: one more attempt at the deadline, not after interval."""
    check = Flaky(10**9, lambda: AssertionError("never healthy"))
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"^never healthy\n"):
        eventually(check, timeout=0.2, interval=30)
    assert time.monotonic() - start < 5
    assert check.calls == 2


@pytest.mark.parametrize("error", [ValueError, KeyError, TypeError, RuntimeError])
def test_unexpected_exceptions_are_not_retried(error: type[Exception]) -> None:
    check = Flaky(1, lambda: error("the check's own"))
    with pytest.raises(error, match="the check's own") as info:
        eventually(check, timeout=10, interval=0.001)
    assert check.calls == 1
    assert not getattr(info.value, "__notes__", [])


def test_retry_on_names_more_retryable_errors() -> None:
    check = Flaky(2, lambda: KeyError("items"))
    assert eventually(check, timeout=10, interval=0.001, retry_on=(KeyError,)) == "ok"
    assert check.calls == 3


def test_retry_on_replaces_assertion_error_but_not_infrastructure_errors() -> None:
    refused = Flaky(2, lambda: ConnectionRefusedError(111, "Connection refused"))
    assert eventually(refused, timeout=10, interval=0.001, retry_on=(KeyError,)) == "ok"
    wrong = Flaky(2, lambda: AssertionError("a wrong answer"))
    with pytest.raises(AssertionError, match=r"^a wrong answer$"):
        eventually(wrong, timeout=10, interval=0.001, retry_on=(KeyError,))
    assert wrong.calls == 1


@pytest.mark.parametrize(("timeout", "interval"), [(0, 1), (-1, 1), (1, 0), (1, -0.5)])
def test_timeout_and_interval_must_be_positive(timeout: float, interval: float) -> None:
    check = Flaky(0, AssertionError)
    with pytest.raises(ValueError, match="must be positive"):
        eventually(check, timeout=timeout, interval=interval)
    assert check.calls == 0


# --- classify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError("refused"),
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.Timeout("timed out"),
        socket.gaierror(-2, "Name or service not known"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        InfrastructureError("the Docker engine does not answer"),
        docker.errors.DockerException("Error while fetching server API version"),
        docker.errors.APIError("500 Server Error"),
        psycopg.OperationalError("connection failed: Connection refused"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:10001"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
    ids=lambda exc: type(exc).__module__ + "." + type(exc).__name__,
)
def test_unreachable_is_infrastructure(exc: BaseException) -> None:
    assert classify(exc) == INFRASTRUCTURE == "infrastructure"


@pytest.mark.parametrize(
    "exc",
    [
        AssertionError("assert 500 == 200"),
        ValueError("bad JSON"),
        KeyError("color"),
        requests.HTTPError("500 Server Error"),
        psycopg.ProgrammingError("relation does not exist"),
        redis.exceptions.ResponseError("WRONGTYPE"),
        pytest.fail.Exception("checks failed"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_wrong_answers_are_check_failures(exc: BaseException) -> None:
    assert classify(exc) == WRONG_ANSWER == "check"


def test_nothing_is_a_check_failure() -> None:
    assert classify(None) == WRONG_ANSWER


def raised(make: Callable[[], None]) -> BaseException:
    try:
        make()
    except BaseException as exc:  # the test wants whatever was raised
        return exc
    raise AssertionError("nothing was raised")


def test_explicit_cause_that_is_a_connection_error_is_infrastructure() -> None:
    def make() -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionError as cause:
            raise AssertionError("green did not answer") from cause

    assert classify(raised(make)) == INFRASTRUCTURE


def test_implicit_context_that_is_a_connection_error_is_infrastructure() -> None:
    def make() -> None:
        try:
            requests.get("http://127.0.0.1:1/health", timeout=1)
        except requests.ConnectionError:
            pytest.fail("green /health: no answer")

    assert classify(raised(make)) == INFRASTRUCTURE


def test_deep_chain_is_followed() -> None:
    root = socket.gaierror(-2, "Name or service not known")
    middle = RuntimeError("lookup failed")
    middle.__cause__ = root
    top = AssertionError("no answer")
    top.__cause__ = middle
    assert classify(top) == INFRASTRUCTURE


def test_chain_of_wrong_answers_is_a_check_failure() -> None:
    def make() -> None:
        try:
            raise KeyError("color")
        except KeyError as cause:
            raise AssertionError("no color in the body") from cause

    assert classify(raised(make)) == WRONG_ANSWER


def test_suppressed_context_still_counts() -> None:
    """``raise ... from None`` hides the context from the traceback, not from classify()."""

    def make() -> None:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionError:
            raise AssertionError("down") from None

    exc = raised(make)
    assert exc.__suppress_context__
    assert classify(exc) == INFRASTRUCTURE


def test_a_cyclic_chain_ends() -> None:
    first = ValueError("a")
    second = KeyError("b")
    first.__cause__ = second
    second.__cause__ = first
    assert classify(first) == WRONG_ANSWER


def test_the_unreachable_part_is_named_when_it_is_not_the_color() -> None:
    """``INFRA-ERROR (prometheus unreachable)``: the part an infrastructure error names, through
    the chain; None for the color's own outage."""

    class PartDown(InfrastructureError):
        part = "prometheus"

    assert unreachable_part(ConnectionRefusedError()) is None
    assert unreachable_part(InfrastructureError("green does not answer")) is None
    assert unreachable_part(PartDown("down")) == "prometheus"
    wrapped = AssertionError("wrapped")
    wrapped.__cause__ = PartDown("down")
    assert unreachable_part(wrapped) == "prometheus"
    assert classify(wrapped) == INFRASTRUCTURE
