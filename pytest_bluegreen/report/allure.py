"""Allure reports that tell the deployment story (the ``allure`` extra).

On every process (controller and xdist workers): each check's Allure title and parameters
carry its color, and a failed check gets the HTTP exchange and the color's container log tail
attached. On the controller, at the end of every run: ``environment.properties`` (the target
color, the live color, each color's tag, the HAProxy, plugin and git versions) and
``categories.json``; after a gate, also the gate's decision as a result of its own (with
HAProxy ``show stat`` before and after a switch). Secret values are kept out by
:mod:`redaction`.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_bluegreen import __version__
from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.eventually import INFRASTRUCTURE
from pytest_bluegreen.extras import require
from pytest_bluegreen.gate.outcomes import FAILURE_PROPERTY
from pytest_bluegreen.haproxy.instances import InstancesDisagree
from pytest_bluegreen.redaction import REDACTED, SECRET_HEADERS, Secrets

from .verdict import verdict

if TYPE_CHECKING:
    from pytest_bluegreen.gate.report import GateReport
    from pytest_bluegreen.settings import Settings

__all__ = [
    "CATEGORIES",
    "AllureReporting",
    "AllureRunEnvironment",
    "CommandResult",
    "Step",
    "describe_exchange",
    "write_command_result",
    "write_gate_results",
    "write_run_environment",
]

# The regexes work in Allure 2 (Java, whole-text match) and Allure 3 (JavaScript): no inline
# flags, [\s\S] for "anything including newlines".
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "Environmental failures (fail on the other color too: not the build)",
        "matchedStatuses": ["failed", "broken", "skipped"],
        "messageRegex": r"bluegreen gate: INCONCLUSIVE[\s\S]*environmental[\s\S]*",
    },
    {
        "name": "Gate refusals (no switch)",
        "matchedStatuses": ["failed", "broken", "skipped"],
        "messageRegex": r"bluegreen gate: (REFUSED|INCONCLUSIVE|FAILED)[\s\S]*",
    },
    {
        "name": "Perf thresholds missed",
        "matchedStatuses": ["failed"],
        "messageRegex": r"[\s\S]*misses threshold[\s\S]*",
    },
    {
        "name": "Infrastructure errors (unreachable, not running)",
        "matchedStatuses": ["failed", "broken"],
        "traceRegex": (
            r"[\s\S]*(ConnectionError|ConnectTimeout|ReadTimeout|ConnectionRefusedError|"
            r"TimeoutError|InfrastructureError|OperationalError|DockerException|gaierror)[\s\S]*"
        ),
    },
    {"name": "Check failures (wrong answers)", "matchedStatuses": ["failed"]},
]


def _allure() -> Any:
    return require("allure", "allure", "Allure reporting")


def describe_exchange(response: Any, secrets: Secrets) -> str:
    """A requests response and its request as text, with secret headers and values hidden."""
    request = response.request

    def headers(items: Mapping[str, str]) -> str:
        return "\n".join(
            f"{k}: {REDACTED if k.lower() in SECRET_HEADERS else v}" for k, v in items.items()
        )

    body = request.body or b""
    sent = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    # each part redacted whole before it is cut short: a cut could split a secret in two
    sent, received = secrets.redact(sent)[:2000], secrets.redact(response.text)[:4000]
    text = (
        f"{request.method} {request.url}\n{headers(request.headers)}\n\n{sent}\n\n"
        f"--- response: HTTP {response.status_code} in "
        f"{response.elapsed.total_seconds() * 1000:.1f} ms\n{headers(response.headers)}\n\n"
        f"{received}"
    )
    return secrets.redact(text)


class AllureReporting:
    """Registered on every process when Allure results are written."""

    def __init__(self, settings: Settings, secrets: Secrets) -> None:
        self.settings = settings
        self.secrets = secrets

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        callspec = getattr(item, "callspec", None)
        color = callspec.params.get("color") if callspec is not None else None
        allure = _allure()
        if color is not None:
            name = getattr(item, "originalname", item.name)
            allure.dynamic.title(f"{name} [{color}]")
            allure.dynamic.parameter("color", color)
            allure.dynamic.tag(f"color:{color}")
        elif item.get_closest_marker("shared") is not None:
            allure.dynamic.tag("shared")
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and report.when == "call":
            self._attach_failure(item, report)
        return report

    def _attach_failure(self, item: pytest.Item, report: pytest.TestReport) -> None:
        allure = _allure()
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for value in funcargs.values():
            last = getattr(value, "last_response", None)
            if last is not None:
                allure.attach(
                    describe_exchange(last, self.secrets),
                    name=f"HTTP exchange ({getattr(value, 'color', '?')})",
                    attachment_type=allure.attachment_type.TEXT,
                )
        callspec = getattr(item, "callspec", None)
        color = callspec.params.get("color") if callspec is not None else None
        if color is not None:
            logs = self._container_logs(str(color))
            if logs:
                allure.attach(
                    self.secrets.redact(logs),
                    name=f"container logs ({color}, last 50 lines)",
                    attachment_type=allure.attachment_type.TEXT,
                )
        kind = (
            "infrastructure"
            if (FAILURE_PROPERTY, INFRASTRUCTURE) in report.user_properties
            else "check"
        )
        allure.dynamic.label("failure", kind)

    def _container_logs(self, color: str) -> str:
        from pytest_bluegreen.engines.compose import container_logs  # noqa: PLC0415 - only for a failure

        try:
            return container_logs(self.settings.compose, self.settings.topology, color, 50)
        except Exception:  # a report attachment must never fail the check's report
            return ""


def _git_revision(root: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def _tags_and_versions(settings: Settings, haproxy_version: str | None) -> dict[str, str]:
    """What every run's environment names: each color's deployed tag, the versions."""
    from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415 - the tags file's one home

    tags = TagsFile(settings.state.tags_file).tags(settings.topology.colors)
    config_file = settings.config_file
    root = config_file.parent if config_file else Path.cwd()
    return {
        **{f"tag.{color}": tag or "-" for color, tag in tags.items()},
        "haproxy.version": haproxy_version or "unknown",
        "bluegreen.version": __version__,
        "git.revision": _git_revision(root),
    }


def _write_environment(alluredir: Path, env: Mapping[str, str]) -> None:
    """environment.properties (Allure's metadata) and categories.json in ``alluredir``."""
    alluredir.mkdir(parents=True, exist_ok=True)
    (alluredir / "environment.properties").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (alluredir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))


def _read_haproxy(settings: Settings) -> tuple[str, str | None]:
    """The live color (``none`` when neither or both take traffic; ``unknown`` when HAProxy
    cannot tell: unreachable, refused, instances that disagree) and HAProxy's version (None
    when unknown). A Runtime API that fails is written down, not raised: a run's metadata
    must not fail the run."""
    from pytest_bluegreen.switch.reading import live_color  # noqa: PLC0415 - only when Allure results are written

    try:
        group = settings.haproxies()
        live = live_color(group, settings.topology) or "none"
    except InstancesDisagree:
        live = "unknown"
    except (BluegreenError, OSError):
        return "unknown", None  # it does not answer: do not wait for it a second time
    try:
        version: str | None = group.version()
    except (BluegreenError, OSError):
        version = None
    return live, version


def write_run_environment(settings: Settings, alluredir: Path) -> None:
    """environment.properties and categories.json of a run that does not gate."""
    live, haproxy_version = _read_haproxy(settings)
    env = {"target.color": settings.run.env, "live.color": live}
    _write_environment(alluredir, env | _tags_and_versions(settings, haproxy_version))


class AllureRunEnvironment:
    """Registered on the controller (or the single process) of a run that does not gate
    when Allure results are written; a gating run's GatePlugin writes its own."""

    def __init__(self, settings: Settings, alluredir: Path) -> None:
        self.settings = settings
        self.alluredir = alluredir

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        write_run_environment(self.settings, self.alluredir)


def _bake_steps(report: GateReport) -> list[dict[str, Any]]:
    """The bake's intervals as steps of the gate's result, each with its evidence."""
    if report.bake is None:
        return []
    steps = []
    for interval in report.bake.intervals:
        start = int(interval.started * 1000)
        steps.append(
            {
                "name": interval.line(),
                "status": {"passed": "passed", "failed": "failed"}.get(
                    interval.judgement.value, "broken"
                ),
                "stage": "finished",
                "start": start,
                "stop": start + int(interval.seconds * 1000),
                "parameters": [
                    {"name": k, "value": str(v)} for k, v in sorted(interval.metrics.items())
                ],
            }
        )
    return steps


def _blame_steps(report: GateReport) -> list[dict[str, Any]]:
    """Blame's runs on the other color as steps: passed there (the build) or failed too."""
    if report.blame is None:
        return []
    now = int(time.time() * 1000)
    return [
        {
            "name": checked.line(report.blame.target),
            "status": "failed" if checked.culprit.value == "environmental" else "passed",
            "stage": "finished",
            "start": now,
            "stop": now,
            "parameters": [{"name": "twin", "value": str(checked.twin)}],
        }
        for checked in report.blame.checks
    ]


def write_gate_results(
    settings: Settings, report: GateReport, alluredir: Path, haproxy_version: str | None
) -> None:
    """environment.properties, categories.json and the gate's own result in ``alluredir``."""
    data = verdict(report)
    gate = {
        "target.color": data["target"],
        "deployment.tag": data["tag"] or "-",
        "live.before": data["live_before"] or "-",
        "live.after": data["live_after"] or "-",
        "gate.decision": data["decision"],
    }
    _write_environment(alluredir, gate | _tags_and_versions(settings, haproxy_version))

    attachments = []

    def attach(name: str, text: str) -> None:
        source = f"{uuid.uuid4()}-attachment.txt"
        (alluredir / source).write_text(text)
        attachments.append({"name": name, "source": source, "type": "text/plain"})

    attach("gate decision", "\n".join(report.lines) + f"\nexit status {report.exit_code}\n")
    if report.stat_before:
        attach("HAProxy show stat before the switch", report.stat_before)
    if report.stat_after:
        attach("HAProxy show stat after the switch", report.stat_after)
    if report.probe:
        attach("zero-downtime probe", json.dumps(report.probe.as_dict(), indent=2))
    attach("verdict.json", json.dumps(data, indent=2))
    ok = report.exit_code == ExitCode.OK
    now = int(time.time() * 1000)
    word = data["decision"].upper()
    result = {
        "uuid": str(uuid.uuid4()),
        "historyId": f"bluegreen-gate-{data['target']}",
        "name": f"bluegreen gate: {word} {data['target']}",
        "fullName": f"bluegreen.gate.{data['target']}",
        "status": "passed" if ok else "failed",
        "statusDetails": {"message": f"bluegreen gate: {word}: {data['reason']}"},
        "stage": "finished",
        "start": now,
        "stop": now,
        "parameters": [
            {"name": "color", "value": str(data["target"])},
            {"name": "deployment tag", "value": str(data["tag"] or "-")},
        ],
        "labels": [
            {"name": "suite", "value": "bluegreen gate"},
            {"name": "tag", "value": f"color:{data['target']}"},
            {"name": "severity", "value": "blocker"},
        ],
        "attachments": attachments,
        "steps": _blame_steps(report) + _bake_steps(report),
    }
    (alluredir / f"{result['uuid']}-result.json").write_text(json.dumps(result, indent=2))


@dataclass(frozen=True)
class Step:
    """A step of a command's result: its line, ``passed``/``failed``/``skipped``, parameters."""

    name: str
    status: str
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class CommandResult:
    """What a ``bluegreen`` command measured (``bluegreen drill --power``), as a result of its
    own: ``status`` passed, failed or broken, its message, text attachments and steps."""

    name: str
    status: str
    message: str
    attachments: Mapping[str, str]
    steps: Sequence[Step] = ()


def write_command_result(alluredir: Path, command: CommandResult) -> Path:
    """``command``'s result in ``alluredir``, beside the results of the gates it ran. Returns
    the result's file."""
    alluredir.mkdir(parents=True, exist_ok=True)
    sources = []
    for title, text in command.attachments.items():
        source = f"{uuid.uuid4()}-attachment.txt"
        (alluredir / source).write_text(text)
        sources.append({"name": title, "source": source, "type": "text/plain"})
    now = int(time.time() * 1000)
    result = {
        "uuid": str(uuid.uuid4()),
        "historyId": f"bluegreen-{command.name}",
        "name": f"bluegreen {command.name}",
        "fullName": f"bluegreen.{command.name.replace(' ', '.')}",
        "status": command.status,
        "statusDetails": {"message": command.message},
        "stage": "finished",
        "start": now,
        "stop": now,
        "labels": [{"name": "suite", "value": "bluegreen drill"}],
        "attachments": sources,
        "steps": [
            {
                "name": step.name,
                "status": step.status,
                "stage": "finished",
                "start": now,
                "stop": now,
                "parameters": [{"name": k, "value": v} for k, v in step.parameters.items()],
            }
            for step in command.steps
        ],
    }
    path = alluredir / f"{result['uuid']}-result.json"
    path.write_text(json.dumps(result, indent=2))
    return path
