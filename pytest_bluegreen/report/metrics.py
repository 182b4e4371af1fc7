"""The gate's own metrics, for Prometheus: :class:`RunMetrics` collects what a run did (every
outcome the history records, heard through :func:`history.listening`; the switch's duration, the
bake's intervals, the deploy's duration) and :func:`publish` writes them to a node_exporter
textfile and/or pushes them to a Pushgateway, counters carried on from the previous file or
group. The metrics, what counts and where it goes: docs/monitoring.md. The format is
``prometheus-client``'s (report/exposition.py, the ``metrics`` extra).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.extras import MissingExtra
from pytest_bluegreen.haproxy.instances import HAPROXY_UNREADABLE
from pytest_bluegreen.haproxy.lockfile import open_lock_file
from pytest_bluegreen.judge.judgement import Judgement
from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import HistoryEntry, Outcome
from pytest_bluegreen.redaction import excerpt, redact, shown_url, url_secrets
from pytest_bluegreen.switch.reading import live_color

from .exposition import (
    ExpositionError,
    Family,
    Labels,
    Sample,
    client,
    labels_of,
    parse,
    registry,
    render,
)

if TYPE_CHECKING:
    from pytest_bluegreen.engines import DeployResult
    from pytest_bluegreen.gate.report import GateReport
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.settings import Settings, Topology
    from pytest_bluegreen.settings.judging import MetricsSettings

__all__ = [
    "NAMES",
    "RunMetrics",
    "families",
    "publish",
    "push",
    "require_client",
    "shown_url",
    "write_textfile",
]

JOB = "bluegreen"
RUNS = "bluegreen_gate_runs_total"
SWITCH = "bluegreen_switch_duration_seconds"
BAKE = "bluegreen_bake_intervals_total"
LIVE = "bluegreen_live_color"
DEPLOY = "bluegreen_deploy_duration_seconds"
NAMES = (RUNS, SWITCH, BAKE, LIVE, DEPLOY)
HELP = {
    RUNS: "Gate outcomes recorded in the history, by outcome and target color.",
    SWITCH: "Seconds the last verified switch took, from its first change to its last step.",
    BAKE: "Bake intervals after a switch, by judgement (passed, failed, inconclusive).",
    LIVE: "1 for the color HAProxy sends traffic to after the last run, 0 for the others.",
    DEPLOY: "Seconds the last --deploy took, from the backup to the color being healthy.",
}

Build = Callable[[Sequence[Sample]], list[Family]]


@dataclass
class RunMetrics:
    """What one run adds to the gate's metrics."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, target)
    bake_intervals: Counter[str] = field(default_factory=Counter)
    switch_seconds: float | None = None
    deploy_seconds: float | None = None

    def recorded(self, entry: HistoryEntry) -> None:
        """A history entry was written (``history.listening``)."""
        self.outcomes[(entry.outcome.value, entry.to_color)] += 1

    def concluded(self, report: GateReport | None, deployed: DeployResult | None) -> None:
        """A finished run: its report's (last) verified switch and its bake's intervals (no
        report: a deploy alone), and the deploy's duration, when it deployed."""
        if deployed is not None:
            self.deploy_seconds = deployed.seconds
        if report is None or report.dry_run:
            return
        result = report.result
        if result is not None and result.finished:
            self.switch_seconds = result.finished - result.started
        if report.bake is not None:
            self.bake_intervals.update(i.judgement.value for i in report.bake.intervals)

    @contextmanager
    def collecting(self) -> Iterator[RunMetrics]:
        """Count every history entry written inside this block."""
        with history.listening(self.recorded):
            yield self

    @property
    def anything(self) -> bool:
        return bool(self.outcomes or self.bake_intervals) or (
            self.switch_seconds is not None or self.deploy_seconds is not None
        )


# --- the families: what was there before, plus this run ------------------------------------


def families(
    previous: Iterable[Sample],
    run: RunMetrics,
    colors: Sequence[str],
    live: str | None,
    *,
    live_known: bool = True,
) -> list[Family]:
    """The five families after this run: counters are the previous values plus this run's
    (every outcome and color, every bake judgement present, at 0 when never seen, so a rate
    has a series to start from); a duration this run did not measure keeps its previous
    value; ``bluegreen_live_color`` is left out when HAProxy could not be read
    (``live_known`` false), all 0 when no single color is live."""
    before: dict[str, dict[Labels, float]] = {name: {} for name in NAMES}
    for sample in previous:
        before[sample.name][sample.labels] = sample.value
    runs = {labels_of(outcome=o, target=t): float(n) for (o, t), n in run.outcomes.items()}
    bake = {labels_of(result=r): float(n) for r, n in run.bake_intervals.items()}
    found = [
        _counter(
            RUNS,
            before[RUNS],
            runs,
            [labels_of(outcome=o, target=c) for o in Outcome for c in colors],
        ),
        _gauge(SWITCH, before[SWITCH], run.switch_seconds),
        _counter(BAKE, before[BAKE], bake, [labels_of(result=v) for v in Judgement]),
    ]
    if live_known:
        shown = {labels_of(color=c): float(c == live) for c in colors}
        found.append(Family(LIVE, "gauge", HELP[LIVE], shown))
    found.append(_gauge(DEPLOY, before[DEPLOY], run.deploy_seconds))
    return found


def _counter(
    name: str, before: Mapping[Labels, float], added: Mapping[Labels, float], zero: Iterable[Labels]
) -> Family:
    samples = {**dict.fromkeys(zero, 0.0), **before}
    for labels, value in added.items():
        samples[labels] = samples.get(labels, 0.0) + value
    return Family(name, "counter", HELP[name], samples)


def _gauge(name: str, before: Mapping[Labels, float], value: float | None) -> Family:
    samples: dict[Labels, float] = dict(before) if value is None else {(): value}
    return Family(name, "gauge", HELP[name], samples)


# --- the textfile -----------------------------------------------------------------------------


def write_textfile(path: Path, build: Build) -> None:
    """Read the file's previous samples, build the families, and replace the file atomically
    (a temporary file in the same folder, renamed over it), under ``.<name>.lock`` beside it
    so two gates on this host never add to the same old counters. The temporary and the lock
    file do not end in ``.prom``: node_exporter reads neither. Raises OSError, or
    ExpositionError when the existing file is not in the format (left as it is).

    The text is ``generate_latest``'s; the file is not written by ``write_to_textfile``, which
    opens a predictable temporary name that follows a symbolic link, leaves the mode to the
    umask (node_exporter runs as another user), does not fsync, and leaves its temporary file
    behind on Ctrl-C."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(f".{path.name}.lock")):
        previous = list(parse(path.read_text(), NAMES)) if path.exists() else []
        text = render(build(previous))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # node_exporter runs as another user
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = open_lock_file(path)  # 0600, no symbolic link followed, this user's only
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


# --- the Pushgateway --------------------------------------------------------------------------


class PushFailed(BluegreenError):
    """The Pushgateway could not be read or written in time: :func:`publish` says so in a
    warning (the run's exit status is its own); one that escaped would be a bug of ours."""

    exit_code = ExitCode.INTERNAL_ERROR


def push(url: str, instance: str, timeout: float, build: Build) -> None:
    """Read the group's samples back from the Pushgateway's ``/metrics``, build the families,
    PUT them to the group (``push_to_gateway``: the group's URL, the body, its content type).
    Raises PushFailed (after one retry, or when ``timeout`` seconds are spent) or
    ExpositionError (what it answered is not in the format)."""
    client()
    from prometheus_client import push_to_gateway  # noqa: PLC0415 - the metrics extra

    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        answer = _request(session, "GET", f"{url.rstrip('/')}/metrics", deadline, timeout)
        own = {"job": JOB, "instance": instance}
        previous = [
            Sample(s.name, tuple(kv for kv in s.labels if kv[0] not in own), s.value)
            for s in parse(answer.text, NAMES)
            if s.label("job") == JOB and s.label("instance") == instance
        ]
        budget = timeout

        def through_session(
            url: str,
            method: str,
            timeout: float | None,  # unused: the deadline bounds each attempt
            headers: Sequence[tuple[str, str]],
            data: bytes,
        ) -> Callable[[], None]:
            """The library's request, sent by ``requests`` (credentials in the URL, the
            deadline, one retry, a short reason) instead of urllib."""

            def send() -> None:
                _request(session, method, url, deadline, budget, body=data, headers=dict(headers))

            return send

        push_to_gateway(
            url,
            job=JOB,
            registry=registry(build(previous)),
            grouping_key={"instance": instance},
            timeout=timeout,
            handler=through_session,
        )


def _request(
    session: requests.Session,
    method: str,
    url: str,
    deadline: float,
    budget: float,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """One request, retried once after a connection error, a timeout or a 5xx answer; the
    time left before ``deadline`` bounds each attempt."""
    problem = ""
    for _attempt in range(2):
        left = deadline - time.monotonic()
        if left <= 0:
            raise PushFailed(f"{method} timed out (metrics_push_timeout {budget:g}s)")
        try:
            answer = session.request(method, url, data=body, headers=headers, timeout=left)
        except requests.Timeout:
            problem = f"{method} timed out (metrics_push_timeout {budget:g}s)"
            continue
        except requests.RequestException as exc:
            problem = f"{method} failed: {_reason(exc)}"
            continue
        if answer.ok:
            return answer
        problem = f"{method} answered HTTP {answer.status_code}: {excerpt(answer.text, 200)}"
        if answer.status_code < 500:
            break  # a refusal: asking again changes nothing
    raise PushFailed(problem)


def _reason(exc: requests.RequestException) -> str:
    """``[Errno 111] Connection refused`` rather than urllib3's paragraph."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group() if found else type(exc).__name__


# --- publishing -------------------------------------------------------------------------------


def _live(group: Haproxies, topology: Topology) -> tuple[str | None, bool]:
    try:
        return live_color(group, topology), True
    except HAPROXY_UNREADABLE:
        return None, False


def require_client(where: MetricsSettings) -> None:
    """Raise MissingExtra when a place to publish is set and ``prometheus-client`` (the
    ``metrics`` extra) is not installed: the run's one-line error, before anything changes."""
    if where.metrics_textfile is not None or where.metrics_push_url is not None:
        client()


def publish(settings: Settings, run: RunMetrics, group: Haproxies | None = None) -> list[str]:
    """Write and/or push this run's metrics, as set; the warnings (one line per place that
    failed). Nothing at all for a dry run, a run that recorded and measured nothing, or when
    neither ``metrics_textfile`` nor ``metrics_push_url`` is set. ``group``: the HAProxy
    instance(s) that say which color is live (default: the settings')."""
    where = settings.metrics
    if settings.run.dry_run or not run.anything:
        return []
    if where.metrics_textfile is None and where.metrics_push_url is None:
        return []
    try:
        require_client(where)
    except MissingExtra as exc:  # the gate stopped earlier; a command that recorded: warn
        return [f"warning: gate metrics not published: {exc}"]
    live, known = _live(group if group is not None else settings.haproxies(), settings.topology)

    def build(previous: Sequence[Sample]) -> list[Family]:
        return families(previous, run, settings.topology.colors, live, live_known=known)

    warnings = []
    if where.metrics_textfile is not None:
        try:
            write_textfile(where.metrics_textfile, build)
        except (OSError, ExpositionError) as exc:
            why = f"{exc.strerror}" if isinstance(exc, OSError) and exc.strerror else exc
            warnings.append(f"warning: gate metrics not written to {where.metrics_textfile}: {why}")
    if where.metrics_push_url is not None:
        url = where.metrics_push_url
        try:
            push(url, socket.gethostname(), where.metrics_push_timeout, build)
        except (PushFailed, ExpositionError) as exc:
            text = _without_credentials(str(exc), url)
            warnings.append(f"warning: gate metrics not pushed to {shown_url(url)}: {text}")
    return warnings


def _without_credentials(text: str, url: str) -> str:
    return redact(text, url_secrets(url))
