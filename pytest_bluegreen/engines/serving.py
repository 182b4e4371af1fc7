"""Whether a container serves: it runs, and its own health check passes now.

Docker 20.10 runs a container's health check first one ``interval`` after the container starts
(``start_interval`` came with Engine 25), and then once per interval. At a calm interval (an
idle stack then costs next to nothing) Docker says ``starting`` for that long after each start,
and its ``healthy``/``unhealthy`` can be an interval old (``unhealthy`` takes ``retries``
failures). Nobody needs to wait for it or trust a stale health status: the container's configured
health check (``Config.Healthcheck``: ``CMD`` or ``CMD-SHELL``) is run by us with ``exec`` --
the command Docker would run, as the container's user, in its working directory, bounded by the
check's ``timeout`` -- and exit 0 means it serves. Docker's status stays in the messages.

:func:`judge` looks at containers once (``trust_healthy`` takes Docker's ``healthy`` as it is,
for a cheap display); :func:`wait_until_serving` looks again, with a deadline, until every
service has containers that all serve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.redaction import excerpt

if TYPE_CHECKING:
    from docker.models.containers import Container

__all__ = [
    "HealthRun",
    "Judged",
    "Waited",
    "health_command",
    "health_of",
    "judge_serving",
    "run_health_check",
    "wait_until_serving",
]

if not TYPE_CHECKING:  # the old names, for one release (issue 23)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"judge": "judge_serving"})

DEFAULT_TIMEOUT = 30.0  # Docker's default health check timeout
OUTPUT_CHARS = 300  # of a health check's output, in a message
FINAL_STATES = ("exited", "dead")  # nothing brings such a container back (restarts are
# "restarting": Docker sets that state together with the exit, under the container's lock)


def health_of(container: Container) -> str:
    """``healthy``, ``unhealthy``, ``starting``, or ``none`` (no health check), as Docker says."""
    health = container.attrs.get("State", {}).get("Health")
    return str(health["Status"]) if health else "none"


def health_command(attrs: Mapping[str, Any]) -> list[str] | None:
    """The argv Docker runs as this container's health check (from its inspect data), or None
    when it has none: ``CMD`` runs as is, ``CMD-SHELL`` through the container's shell."""
    config = attrs.get("Config") or {}
    test = list((config.get("Healthcheck") or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return [str(part) for part in test[1:]] or None
    if test[0] == "CMD-SHELL":
        shell = [str(part) for part in config.get("Shell") or ["/bin/sh", "-c"]]
        return [*shell, " ".join(str(part) for part in test[1:])]
    return None  # "NONE" or a form Docker does not know either


def _timeout_of(attrs: Mapping[str, Any]) -> float:
    nanoseconds = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Timeout") or 0
    return nanoseconds / 1e9 if nanoseconds > 0 else DEFAULT_TIMEOUT


@dataclass(frozen=True)
class HealthRun:
    """One run of a container's health check by us: its exit code (None: it did not finish in
    time, or could not be started) and its output (stdout and stderr, as Docker keeps them)."""

    exit_code: int | None
    output: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        """``exit 7: curl: (7) Failed to connect ...`` or ``timed out after 3s``."""
        text = excerpt(self.output, OUTPUT_CHARS)
        if self.exit_code is None:
            return text
        return f"exit {self.exit_code}: {text}" if text else f"exit {self.exit_code}"


def run_health_check(container: Container) -> HealthRun:
    """Run the container's health check once, now, bounded by its own timeout (like Docker,
    a command still running then is left to finish on its own and counts as a failure)."""
    command = health_command(container.attrs)
    if command is None:
        return HealthRun(0, "")
    timeout = _timeout_of(container.attrs)
    done: list[HealthRun] = []

    def run() -> None:
        try:
            result = container.exec_run(command, stdout=True, stderr=True)
            raw = result.output if isinstance(result.output, bytes) else b""  # not streamed
            output = raw.decode(errors="replace")
            done.append(HealthRun(result.exit_code, output))
        except Exception as exc:  # docker's APIError (e.g. the container stopped meanwhile)
            done.append(HealthRun(None, f"could not run it: {exc}"))

    worker = threading.Thread(target=run, name=f"health-check {container.name}", daemon=True)
    worker.start()
    worker.join(timeout)
    return done[0] if done else HealthRun(None, f"timed out after {timeout:g}s")


@dataclass(frozen=True)
class Judged:
    """One container as judged now: Docker's state and health, and our run of its health check
    (None: it has none, it does not run, or Docker's healthy was taken as it is)."""

    service: str
    name: str
    state: str  # Docker's: running, restarting, exited, ...
    exit_code: int
    health: str  # Docker's: healthy, unhealthy, starting, none
    failing_streak: int
    docker_output: str  # the output of Docker's last run of the check
    ran: HealthRun | None = None  # ours: None when it has no health check, or not run

    @property
    def serving(self) -> bool:
        if self.state != "running":
            return False
        if self.ran is not None:
            return self.ran.passed
        return self.health in ("healthy", "none")

    @property
    def final(self) -> bool:
        """Stopped for good: waiting longer will not make it serve."""
        return self.state in FINAL_STATES

    def brief(self) -> str:
        """``sutazai-green-backend (starting; its health check: exit 7: curl: ...)``."""
        if self.state != "running":
            return f"{self.name} ({self.state}, exit code {self.exit_code})"
        if self.ran is None:
            return f"{self.name} ({self.health})"
        return f"{self.name} ({self.health}; its health check: {self.ran.describe()})"

    def problem(self) -> str | None:
        """Why it does not serve (``green-agents (sutazai-green-agents) is unhealthy (...)``),
        or None when it serves."""
        if self.serving:
            return None
        name = f"{self.service} ({self.name})"
        if self.state in ("paused", "restarting"):
            return f"{name} is {self.state}"
        if self.state != "running":
            return f"{name} is not running: {self.state}, exit code {self.exit_code}"
        return f"{name} is {self._health_problem()}"

    def _health_problem(self) -> str:
        if self.ran is None:  # not run by us: Docker's last run
            last = excerpt(self.docker_output, OUTPUT_CHARS)
            return f"{self.health} (the last health check: {last})"
        now = self.ran.describe()
        if self.health == "starting":  # Docker has not run the check yet
            return f"starting and its health check, run now, fails: {now}"
        if self.health == "healthy":  # Docker's last run passed, an interval ago at most
            return f"healthy by Docker's last check, but its health check, run now, fails: {now}"
        return (
            f"{self.health} ({self.failing_streak} failed health checks in a row; run now: {now})"
        )


def _judged(service: str, container: Container, ran: HealthRun | None) -> Judged:
    state: dict[str, Any] = container.attrs.get("State", {})
    health: dict[str, Any] = state.get("Health") or {}
    log = health.get("Log") or [{}]
    status = str(state.get("Status", container.status))
    if state.get("Paused"):
        status = "paused"
    return Judged(
        service=service,
        name=str(container.name),
        state="restarting" if state.get("Restarting") else status,
        exit_code=int(state.get("ExitCode", 0) or 0),
        health=health_of(container),
        failing_streak=int(health.get("FailingStreak", 0) or 0),
        docker_output=str(log[-1].get("Output", "")),
        ran=ran,
    )


def _needs_a_run(container: Container, trust_healthy: bool) -> bool:
    state = container.attrs.get("State", {})
    if not state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return False
    health = health_of(container)
    return health != "none" and not (trust_healthy and health == "healthy")


def judge_serving(
    containers: Iterable[tuple[str, Container]],
    passed: set[str] | None = None,
    *,
    trust_healthy: bool = False,
) -> list[Judged]:
    """Judge (service, container) pairs as they are (reload them first for fresh state): every
    running container with a health check has it run, all at once (``trust_healthy``: not
    those Docker calls healthy). ``passed`` holds the ids of containers whose check passed
    earlier in the same wait (not run again); those that pass now are added."""
    pairs = list(containers)
    passed = set() if passed is None else passed
    runs: dict[int, HealthRun] = {}
    threads = []
    for index, (_, container) in enumerate(pairs):
        if not _needs_a_run(container, trust_healthy):
            continue
        if container.id in passed:
            runs[index] = HealthRun(0, "passed earlier")
            continue

        def run(index: int = index, container: Container = container) -> None:
            runs[index] = run_health_check(container)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()
    for thread in threads:
        thread.join()  # each run is bounded by its check's own timeout
    judged = [_judged(service, c, runs.get(i)) for i, (service, c) in enumerate(pairs)]
    for (_, container), one in zip(pairs, judged, strict=True):
        if one.ran is not None and one.ran.passed:
            passed.add(str(container.id))
    return judged


@dataclass(frozen=True)
class Waited:
    """How a wait ended: every container judged last, and the services without a container."""

    judged: tuple[Judged, ...]
    missing: tuple[str, ...] = ()

    @property
    def serving(self) -> bool:
        return not self.missing and all(j.serving for j in self.judged)

    def not_serving(self) -> list[Judged]:
        return [j for j in self.judged if not j.serving]

    def brief(self) -> list[str]:
        """``green-backend: no container``, ``sutazai-green-agents (starting; ...)``."""
        return [f"{s}: no container" for s in self.missing] + [
            j.brief() for j in self.not_serving()
        ]


def wait_until_serving(
    find: Callable[[], Mapping[str, Sequence[Container]]],
    *,
    timeout: float,
    poll: float = 0.2,
    worth_waiting: Callable[[Judged], bool] = lambda judged: not judged.final,
) -> Waited:
    """Until every service ``find`` names has containers and all of them serve, or the
    deadline. ``find`` gives service -> its containers, with fresh state, each round. The wait
    ends early when no service lacks a container and no container that does not serve is
    ``worth_waiting`` for (by default: every one that is not stopped for good is)."""
    deadline = time.monotonic() + timeout
    passed: set[str] = set()
    while True:
        found = find()
        missing = tuple(service for service, containers in found.items() if not containers)
        pairs = ((s, c) for s, containers in found.items() for c in containers)
        waited = Waited(tuple(judge_serving(pairs, passed)), missing)
        if waited.serving:
            return waited
        left = deadline - time.monotonic()
        if left <= 0 or (not missing and not any(map(worth_waiting, waited.not_serving()))):
            return waited
        time.sleep(min(poll, left))
