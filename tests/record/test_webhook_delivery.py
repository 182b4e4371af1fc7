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

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.record.history import HistoryEntry, Outcome
from pytest_bluegreen.record.notify import budget, notify
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import NotifySettings
from pytest_bluegreen.settings.webhooks import Webhook
from tests.support.gate import CHECKS, output, run_gate
from tests.support.receiver import RESET, TRICKLE, Answer, Receiver, redirect, retry_after
from tests.support.stack import Stack


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


@pytest.mark.parametrize("value", ["\u00b2", "soon"])  # a header is Latin-1 on the wire
def test_a_retry_after_that_is_no_number_or_date_is_the_plain_backoff(
    make: type[Receiver], value: str
) -> None:
    """``str.isdigit`` takes ``\u00b2``, which float() refuses: it is no number of RFC 9110's
    (ASCII digits), as a word is no date."""
    hook = make([retry_after(value), 200])
    started = time.monotonic()
    assert send(hook, timeout=1, retries=1) == []
    assert len(hook.received) == 2
    assert time.monotonic() - started < budget(1, 1)


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


# --- redirects, resets, the overall deadline --------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_never_followed(make: type[Receiver], status: int) -> None:
    elsewhere = make()
    hook = make([redirect(elsewhere.url("/elsewhere"), status)])
    warnings = send(hook, retries=2)
    assert warnings == [warning(hook, f"HTTP {status} (a redirect: not followed) (1 attempt)")]
    assert len(hook.received) == 1
    assert elsewhere.received == []  # its Location was never contacted


def test_a_reset_before_the_status_line_is_not_retried(make: type[Receiver]) -> None:
    """The event may have arrived: a retry could post it twice."""
    hook = make([Answer(reset="line")])
    warnings = send(hook, retries=2)
    assert warnings == [
        warning(hook, "connection lost before an answer: Connection reset by peer (1 attempt)")
    ]
    assert len(hook.received) == 1


@pytest.mark.parametrize(
    ("answers", "requests"),
    [
        pytest.param([RESET], 1, id="200-then-reset"),
        pytest.param([Answer(reset="body")], 1, id="200-reset-in-body"),
        pytest.param([Answer(500, reset="body"), 200], 2, id="500-reset-in-body-retried"),
    ],
)
def test_a_reset_after_the_status_line_is_judged_by_the_status(
    make: type[Receiver], answers: list[Answer], requests: int
) -> None:
    """The status line is the answer (its body is never read): a 200 cut off after it was
    delivered, a 500 cut off asks for a retry."""
    hook = make(list(answers))
    assert send(hook, retries=2) == []
    assert len(hook.received) == requests


def test_webhooks_that_never_finish_answering_end_within_one_budget(
    make: type[Receiver],
) -> None:
    """Five receivers trickle their answer's headers a byte at a time (no read timeout ever
    fires): each is given up at the notify budget, all at once (not one after the other), one
    warning line each; the sixth, a good one, gets its event."""
    trickling = [make([TRICKLE]) for _ in range(5)]
    good = make()
    started = time.monotonic()
    warnings = send(*trickling, good, timeout=0.3, retries=1)
    took = time.monotonic() - started
    limit = budget(0.3, 1)  # 0.85 s, and send() waits one second more
    assert took < 2 * (limit + 1), took  # one after the other: 5 x 1.85 s
    assert warnings == [
        warning(hook, f"no answer within the notify budget ({limit:g}s) (1 attempt)")
        for hook in trickling
    ]
    assert [e["event"] for e in good.events()] == ["switched"]


# --- through a real gate ----------------------------------------------------------------------


@pytest.mark.parametrize("fails", [False, True], ids=["switched", "checks-failed"])
def test_failed_webhooks_are_one_line_each_and_change_no_exit_status(
    pytester: pytest.Pytester, stack: Stack, make: type[Receiver], fails: bool
) -> None:
    elsewhere = make()
    broken = {
        "redirect": make([redirect(elsewhere.url())]),
        "reset": make([Answer(reset="line")]),
        "retry-after": make([retry_after(3600)]),
        "trickle": make([TRICKLE]),
    }
    good = make()
    if fails:
        stack.green.control(api_status=500)
    try:
        result = run_gate(
            pytester,
            stack,
            "--env",
            "green",
            "--switch",
            checks=CHECKS,
            notify=[h.url() for h in (*broken.values(), good)],
            notify_timeout=0.5,
            notify_retries=1,
        )
    finally:
        stack.green.reset()
    code = ExitCode.CHECKS_FAILED if fails else ExitCode.OK
    assert result.ret == code, output(result)
    assert stack.served_color() == ("blue" if fails else "green")
    said = [line for line in result.outlines if "not delivered" in line]
    problems = {
        "redirect": "HTTP 307 (a redirect: not followed) (1 attempt)",
        "reset": "connection lost before an answer: Connection reset by peer (1 attempt)",
        "retry-after": "HTTP 503, its Retry-After (3600s) past the notify budget (1 attempt)",
        "trickle": "no answer within the notify budget (1.25s) (1 attempt)",
    }
    assert sorted(said) == sorted(
        f"bluegreen: {warning(broken[name], problem)}" for name, problem in problems.items()
    )
    assert [e["event"] for e in good.events()] == ["failed" if fails else "switched"]
    assert elsewhere.received == []
    result.stdout.fnmatch_lines([f"bluegreen: exit status {int(code)}"])
