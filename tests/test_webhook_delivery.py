"""Delivering to the ``notify`` webhooks when they misbehave, against real HTTP receivers on
127.0.0.1 (tests/support/receiver.py): ``Retry-After`` (seconds, an HTTP date, one past the
budget), the retry budget, redirects (never followed), a connection reset mid-answer, and the
overall deadline with several webhooks that never finish answering; then through a real gate in
front of a real HAProxy: its exit status unchanged, one warning line per failed webhook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pytest_bluegreen.notify import budget, notify
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import NotifySettings
from pytest_bluegreen.state import HistoryEntry, Outcome
from pytest_bluegreen.webhooks import Webhook
from tests.support.receiver import Answer, Receiver, retry_after


@pytest.fixture
def make() -> Iterator[type[Receiver]]:
    """``make(answers)``: a receiver, closed after the test."""
    made: list[Receiver] = []

    class Made(Receiver):
        def __init__(self, answers: list[int | str | Answer] | None = None) -> None:
            super().__init__(answers or [])
            made.append(self)

    yield Made
    for receiver in made:
        receiver.close()


def entry() -> HistoryEntry:
    return HistoryEntry.now(
        from_color="blue", to_color="green", tag="v1.1.0", outcome=Outcome.SWITCHED, reason="ok"
    )


def send(*hooks: Receiver, timeout: float = 1.0, retries: int = 1) -> list[str]:
    settings = NotifySettings(
        notify=tuple(Webhook(h.url()) for h in hooks),
        notify_timeout=timeout,
        notify_retries=retries,
    )
    return notify(settings, entry(), secrets=Secrets())


def warning(hook: Receiver, problem: str) -> str:
    return f"warning: notification to http://127.0.0.1:{hook.port}/… not delivered: {problem}"


# --- Retry-After and the retry budget -----------------------------------------------------------


def in_two_seconds() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)


@pytest.mark.parametrize(
    ("asked", "waited"),
    [pytest.param(lambda: "1", 1.0, id="seconds"), pytest.param(in_two_seconds, 0.9, id="date")],
)
def test_retry_after_is_waited_before_the_retry(
    make: type[Receiver], asked: object, waited: float
) -> None:
    """An HTTP date is whole seconds: two seconds ahead is more than one from now."""
    assert callable(asked)
    hook = make([retry_after(asked()), 200])
    assert send(hook, timeout=1, retries=1) == []
    assert len(hook.received) == 2
    [gap] = hook.gaps()
    assert gap >= waited  # the plain backoff would be 0.25 s


def test_retry_after_holds_for_its_answer_only(make: type[Receiver]) -> None:
    """A Retry-After of 1 s, then a 503 without one: the second retry comes after the plain
    backoff (0.5 s), not after twice the Retry-After, which would not fit the budget (2.25 s)
    and leave the event undelivered."""
    hook = make([retry_after(1), 503, 200])
    assert send(hook, timeout=0.5, retries=2) == []
    assert len(hook.received) == 3
    assert len({event["id"] for event in hook.events()}) == 1


def test_a_retry_after_past_the_budget_is_not_waited_out(make: type[Receiver]) -> None:
    hook = make([retry_after(3600)])
    started = time.monotonic()
    warnings = send(hook, timeout=1, retries=2)
    assert time.monotonic() - started < budget(1, 2)
    assert warnings == [
        warning(hook, "HTTP 503, its Retry-After (3600s) past the notify budget (1 attempt)")
    ]
    assert len(hook.received) == 1


@pytest.mark.parametrize("retries", [0, 3])
def test_the_retries_are_at_most_notify_retries(make: type[Receiver], retries: int) -> None:
    hook = make([500] * 10)
    warnings = send(hook, timeout=1, retries=retries)
    attempts = retries + 1
    assert len(hook.received) == attempts
    assert warnings == [warning(hook, f"HTTP 500 ({attempts} attempt{'s' * (attempts > 1)})")]


def test_the_budget_ends_retries_that_retry_after_would_take_past_it(
    make: type[Receiver],
) -> None:
    """3 retries of 0.1 s allowed, 2.15 s in all: each answer asks for 1 s, so the fourth
    attempt would start past the budget; the delivery ends after the third."""
    hook = make([retry_after(1)] * 10)
    started = time.monotonic()
    warnings = send(hook, timeout=0.1, retries=3)
    assert time.monotonic() - started < budget(0.1, 3)
    assert len(hook.received) == 3
    assert warnings == [
        warning(hook, "HTTP 503, its Retry-After (1s) past the notify budget (3 attempts)")
    ]
