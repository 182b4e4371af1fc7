"""Waiting in checks, and telling "the color is down" apart from "the color answers wrongly".

``eventually(check, timeout=..., interval=...)`` calls ``check`` until it returns without an
AssertionError or an infrastructure error, or the deadline passes; the error that finally
escapes carries a note with the attempts made (no fixed sleeps: a deadline and an interval).

Infrastructure errors -- refused, reset, timed out, DNS, an engine that does not answer -- are
classified apart from assertion failures by :func:`classify`; the plugin labels each failed
report with it, so a report reader sees "green is down" apart from "green answers wrongly".
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import BluegreenError, ExitCode

__all__ = [
    "INFRASTRUCTURE",
    "WRONG_ANSWER",
    "InfrastructureError",
    "classify",
    "eventually",
    "unreachable_part",
]

T = TypeVar("T")
INFRASTRUCTURE = "infrastructure"
WRONG_ANSWER = "check"


class InfrastructureError(BluegreenError):
    """Something a check needs is unreachable or not running (as opposed to a wrong answer).

    ``part`` names it when it is not the color under test (a subclass sets it, e.g.
    ``"prometheus"``): the report then reads ``INFRA-ERROR (prometheus unreachable)`` rather
    than blaming the color. A check that raises it fails (exit 1), labelled INFRA-ERROR."""

    exit_code = ExitCode.CHECKS_FAILED
    part: str | None = None


_INFRA_TYPES: tuple[type[BaseException], ...] = (
    InfrastructureError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


def _extra_infra_types() -> tuple[type[BaseException], ...]:
    """The clients' and drivers' connection errors, from those already imported: an exception
    of a module nobody imported cannot be raised, and importing requests, psycopg, redis and
    docker here would cost every session (requests alone about 50 ms of the plugin's start)."""
    extra: list[type[BaseException]] = []
    if (requests := sys.modules.get("requests")) is not None:
        extra += [requests.ConnectionError, requests.Timeout]
    if (docker_errors := sys.modules.get("docker.errors")) is not None:
        extra.append(docker_errors.DockerException)
    if (psycopg := sys.modules.get("psycopg")) is not None:
        extra.append(psycopg.OperationalError)
    if (redis_exceptions := sys.modules.get("redis.exceptions")) is not None:
        extra += [redis_exceptions.ConnectionError, redis_exceptions.TimeoutError]
    return tuple(extra)


def _is_answer(exc: BaseException) -> bool:
    """Errors that are a reachable part's answer, though their types say "connection"."""
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.exceptions.SSLError):
        return True  # a certificate that does not verify (a subclass of ConnectionError)
    psycopg = sys.modules.get("psycopg")
    # "FATAL: password authentication failed", "FATAL: database ... does not exist"
    return (
        psycopg is not None and isinstance(exc, psycopg.OperationalError) and "FATAL:" in str(exc)
    )


def classify(exc: BaseException | None) -> str:
    """``infrastructure`` for unreachable parts, ``check`` for wrong answers."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _is_answer(exc):
            return WRONG_ANSWER
        if isinstance(exc, _INFRA_TYPES + _extra_infra_types()):
            return INFRASTRUCTURE
        exc = exc.__cause__ or exc.__context__
    return WRONG_ANSWER


def unreachable_part(exc: BaseException | None) -> str | None:
    """The ``part`` of the first :class:`InfrastructureError` in the chain that names one."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InfrastructureError) and exc.part:
            return exc.part
        exc = exc.__cause__ or exc.__context__
    return None


def eventually(
    check: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Call ``check`` until it passes or ``timeout`` seconds have gone by.

    Retries assertion failures and infrastructure errors (a service still starting); any other
    exception escapes at once. The last failure escapes with a note of the attempts made.
    """
    if timeout <= 0 or interval <= 0:
        raise ValueError("timeout and interval must be positive")
    start = time.monotonic()
    deadline = start + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            return check()
        except retry_on + _INFRA_TYPES + _extra_infra_types() as exc:
            now = time.monotonic()
            if now >= deadline:
                exc.add_note(
                    f"eventually: gave up after {attempts} attempt(s) over {now - start:.1f}s "
                    f"(timeout {timeout:g}s, every {interval:g}s)"
                )
                raise
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
