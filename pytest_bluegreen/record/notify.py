"""Webhook notifications: each recorded outcome POSTed as JSON to the ``notify`` URLs.

The payload has a Slack-compatible ``text`` (one line: an emoji, what happened, the reason)
and the outcome's fields (:meth:`Event.payload`; the schema is in ``docs/notifications.md``).
Every URL gets its own thread: at most ``notify_retries`` retries when the webhook surely did
not get the event (no connection could be made) or asks for it again (HTTP 5xx, 429), after a
short backoff, or the ``Retry-After`` that answer asks for (seconds or an HTTP date; one that
would end past the delivery's budget is not waited out); never after a redirect (3xx: not
followed), another 4xx, a read timeout or a connection lost before the status line (the event
may have arrived: a retry could post it twice). The status line decides: the answer's body is
never read. Each attempt waits at most ``notify_timeout`` seconds and the whole delivery is
bounded (:func:`budget`). A failed delivery is one warning line for the summary; it never
changes the exit status.

The URLs themselves (parsed strictly, shown without their secrets) are :mod:`.webhooks`.
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pytest_bluegreen import __version__
from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings.webhooks import Webhook

from .history import HistoryEntry, Outcome

if TYPE_CHECKING:
    import requests

    from pytest_bluegreen.settings import NotifySettings

__all__ = [
    "SCHEMA",
    "Delivery",
    "Event",
    "ci_run_id",
    "notify",
    "send",
]

SCHEMA = 1  # the payload's version, raised when a field changes meaning or goes
BACKOFF = 0.25  # seconds before the first retry, doubled for each next one
SLACK = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}  # Slack's three escapes in text
CI_RUN_IDS = ("GITHUB_RUN_ID", "CI_PIPELINE_ID")  # GitHub Actions, GitLab CI

# event -> (Slack emoji, what happened: {source} and {target} filled in)
EVENTS: Mapping[str, tuple[str, str]] = {
    "switched": (":white_check_mark:", "switched {source} → {target}"),
    "rolled-back": (":leftwards_arrow_with_hook:", "rolled back {source} → {target}"),
    "bake-failed": (":rotating_light:", "bake failed: switched back {source} → {target}"),
    "noop": (":information_source:", "{target} already live: nothing switched"),
    "failed": (":x:", "gate failed for {target}"),
    "inconclusive": (":grey_question:", "gate inconclusive for {target}"),
    "refused": (":no_entry:", "gate refused for {target}"),
    "reverted": (":warning:", "switch {source} → {target} reverted"),
    "revert-failed": (":sos:", "switch {source} → {target} failed and so did its revert"),
    "incomplete": (":sos:", "switch {source} → {target} verified but not completed"),
    "deploy-failed": (":x:", "deploy of {target} failed"),
    "recovered": (":wrench:", "recovered: {target} live"),
    "pending-promotion": (":hourglass_flowing_sand:", "{target} verified: promotion pending"),
    "aborted": (":wastebasket:", "pending promotion of {target} aborted"),
    "expired": (":hourglass:", "pending promotion of {target} expired"),
}


# --- the event ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One outcome, as the webhooks receive it."""

    id: str  # the same for every retry: a receiver can drop a repeat
    event: str  # EVENTS' keys: the outcome, or bake-failed for the bake's switch back
    outcome: Outcome
    source: str | None  # the color live before
    target: str
    tag: str | None
    reason: str
    exit_code: int | None
    time: str
    host: str
    forced: bool
    run_id: str | None

    @classmethod
    def of(
        cls,
        entry: HistoryEntry,
        *,
        exit_code: int | None,
        run_id: str | None,
        secrets: Secrets,
    ) -> Event:
        bake_failed = entry.outcome is Outcome.ROLLED_BACK and exit_code == ExitCode.BAKE_FAILED
        return cls(
            id=uuid.uuid4().hex,
            event="bake-failed" if bake_failed else entry.outcome.value,
            outcome=entry.outcome,
            source=entry.from_color,
            target=entry.to_color,
            tag=entry.tag,
            # redacted first, then put on one line: collapsing the whitespace inside a secret
            # (a tab, two spaces, a newline) first would hide it from the redactor
            reason=" ".join(secrets.redact(entry.reason).split()),
            exit_code=None if exit_code is None else int(exit_code),
            time=entry.time,
            host=entry.host,
            forced=entry.forced,
            run_id=run_id,
        )

    @property
    def text(self) -> str:
        """Slack's ``text``: ``:white_check_mark: switched blue → green (v1.1.0): <reason>``."""
        emoji, what = EVENTS[self.event]
        line = f"{emoji} {what.format(source=self.source or '(none)', target=self.target)}"
        if self.tag:
            line += f" ({self.tag})"
        if self.forced:
            line += " [forced]"
        if self.reason:
            line += f": {self.reason}"
        return "".join(SLACK.get(c, c) for c in line)

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "schema": SCHEMA,
            "id": self.id,
            "event": self.event,
            "outcome": self.outcome.value,
            "from": self.source,
            "to": self.target,
            "tag": self.tag,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "time": self.time,
            "host": self.host,
            "forced": self.forced,
            "run_id": self.run_id,
        }


# --- delivery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What became of one webhook's POST."""

    webhook: Webhook
    attempts: int
    status: int | None  # the last HTTP status, if any answer came
    problem: str | None = None  # None: delivered (a 2xx)

    @property
    def delivered(self) -> bool:
        return self.problem is None

    def warning(self) -> str:
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"warning: notification to {self.webhook} not delivered: {self.problem} ({tries})"


def budget(timeout: float, retries: int) -> float:
    """The longest one webhook's delivery may take: every attempt's timeout and every backoff."""
    return timeout * (retries + 1) + BACKOFF * ((1 << retries) - 1)


def _retry_after(response: requests.Response) -> float:
    """The seconds ``Retry-After`` asks for: a number, or an HTTP date (RFC 9110); 0 when
    there is none or it cannot be read."""
    value = str(response.headers.get("Retry-After", "")).strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:  # "-0000": an HTTP date is in GMT
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _os_error(exc: BaseException) -> str:
    """The OS's words for what broke a connection (``Connection reset by peer``): the
    strerror of an OSError among the exception's arguments and causes, else an ``[Errno N]``
    in its text; never the rest of its message, which names the URL."""
    todo: list[object] = [exc]
    seen: list[BaseException] = []
    while todo:
        item = todo.pop(0)
        if isinstance(item, BaseException) and item not in seen:
            seen.append(item)
            if isinstance(item, OSError) and item.strerror:
                return str(item.strerror)
            todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    found = re.search(r"\[Errno -?\d+\] ([A-Za-z ]+)", str(exc))
    return found[1].strip() if found else ""


def _connection_failed(exc: Exception) -> tuple[str, bool]:
    """What went wrong, in the OS's words only (the exception's message names the URL), and
    whether nothing was sent: no connection was made, so a retry cannot post it twice."""
    from urllib3.exceptions import NewConnectionError  # noqa: PLC0415 - with requests

    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    said = _os_error(exc)
    why = f": {said}" if said else ""
    if isinstance(reason, NewConnectionError):
        return f"cannot connect{why}", True
    return f"connection lost before an answer{why}", False


def _status_problem(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status} (a redirect: not followed)"
    return f"HTTP {status}"


@dataclass(frozen=True)
class _Answer:
    """What one POST came to."""

    status: int | None  # the HTTP status; None: no answer
    problem: str | None  # None: delivered (a 2xx)
    again: bool = False  # worth trying again, and safe (it cannot be posted twice)
    asked: float = 0.0  # what Retry-After asks for


def _post(
    hook: Webhook, payload: Mapping[str, Any], headers: dict[str, str], wait: float
) -> _Answer:
    """One POST to ``hook``, waiting at most ``wait`` seconds."""
    import requests  # noqa: PLC0415 - loaded only when there is something to send

    try:
        # stream: the status line decides, the body is never read
        response = requests.post(
            hook.url,
            json=payload,
            headers=headers,
            timeout=wait,
            allow_redirects=False,
            stream=True,
        )
    except requests.exceptions.ReadTimeout:  # it may have arrived: never posted twice
        return _Answer(None, f"no answer within {wait:g}s")
    except requests.ConnectTimeout:  # nothing was sent: safe to try again
        return _Answer(None, f"cannot connect within {wait:g}s", again=True)
    except requests.ConnectionError as exc:
        problem, again = _connection_failed(exc)
        return _Answer(None, problem, again=again)
    except requests.RequestException as exc:
        return _Answer(None, type(exc).__name__)
    status = response.status_code
    response.close()
    if 200 <= status < 300:
        return _Answer(status, None)
    again = status == 429 or status >= 500
    return _Answer(status, _status_problem(status), again=again, asked=_retry_after(response))


def _deliver(
    hook: Webhook,
    payload: Mapping[str, Any],
    timeout: float,
    retries: int,
    attempted: Callable[[int], None] = lambda count: None,
) -> Delivery:
    """POST to one webhook, retried as the module says; ``attempted`` hears each attempt's
    number as it starts (what :func:`send` says of a delivery it stops waiting for)."""
    deadline = time.monotonic() + budget(timeout, retries)
    headers = {"User-Agent": f"pytest-bluegreen/{__version__}"}
    attempts, status, backoff = 0, None, BACKOFF
    while True:
        attempts += 1
        attempted(attempts)
        answer = _post(hook, payload, headers, min(timeout, max(deadline - time.monotonic(), 0.01)))
        if answer.status is not None:
            status = answer.status  # the last answer's, kept when a later attempt has none
        if answer.problem is None:
            return Delivery(hook, attempts, status)
        if not answer.again or attempts > retries:
            return Delivery(hook, attempts, status, answer.problem)
        pause = max(backoff, answer.asked)  # Retry-After is this answer's: the backoff goes on
        if time.monotonic() + pause >= deadline:
            problem = answer.problem
            if answer.asked and answer.asked >= backoff:
                problem += f", its Retry-After ({answer.asked:g}s) past the notify budget"
            return Delivery(hook, attempts, status, problem)
        time.sleep(pause)
        backoff *= 2


def send(
    webhooks: Iterable[Webhook], payload: Mapping[str, Any], *, timeout: float, retries: int
) -> list[Delivery]:
    """POST ``payload`` to every webhook at once (a thread each); returns within the budget of
    one webhook (and a second), whatever they do. Never raises."""
    hooks = list(webhooks)
    results: list[Delivery | None] = [None] * len(hooks)
    attempts = [0] * len(hooks)

    def one(index: int, hook: Webhook) -> None:
        def attempted(count: int) -> None:
            attempts[index] = count

        try:
            results[index] = _deliver(hook, payload, timeout, retries, attempted)
        except Exception as exc:  # a notification never fails the gate
            results[index] = Delivery(hook, max(attempts[index], 1), None, type(exc).__name__)

    threads = [
        threading.Thread(target=one, args=(i, hook), name="bluegreen-notify", daemon=True)
        for i, hook in enumerate(hooks)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + budget(timeout, retries) + 1.0
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    limit = f"no answer within the notify budget ({budget(timeout, retries):g}s)"
    return [
        result if result is not None else Delivery(hook, attempts[index], None, limit)
        for index, (hook, result) in enumerate(zip(hooks, results, strict=True))
    ]


def ci_run_id(environ: Mapping[str, str]) -> str | None:
    """The CI's id of this run (GitHub Actions, GitLab CI), when there is one."""
    return next((environ[name] for name in CI_RUN_IDS if environ.get(name)), None)


def notify(
    settings: NotifySettings,
    entry: HistoryEntry,
    *,
    secrets: Secrets,
    exit_code: int | None = None,
) -> list[str]:
    """Send ``entry`` to every ``notify`` URL; the warning lines of those not delivered."""
    if not settings.notify:
        return []
    run_id = settings.run_id or ci_run_id(os.environ)
    event = Event.of(entry, exit_code=exit_code, run_id=run_id, secrets=secrets)
    deliveries = send(
        settings.notify,
        event.payload(),
        timeout=settings.notify_timeout,
        retries=settings.notify_retries,
    )
    return [secrets.redact(d.warning()) for d in deliveries if not d.delivered]
