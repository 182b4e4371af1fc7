"""Reports that tell the deployment story: Allure results, the verdict JSON, secret scrubbing.

On every process (controller and xdist workers): each check's Allure title and parameters
carry its color, and a failed check gets the HTTP exchange and the color's container log tail
attached. On the controller, after the gate: ``environment.properties``, ``categories.json``,
the gate's decision as a result of its own (with HAProxy ``show stat`` before and after a
switch), ``verdict.json``, and a last pass that replaces every secret value in the written
reports by ``***``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .eventually import INFRASTRUCTURE
from .outcomes import FAILURE_PROPERTY

if TYPE_CHECKING:
    from .gaterun import GateReport, GateRun
    from .settings import Settings

__all__ = ["CATEGORIES", "AllureReporting", "ReportScrubber", "redact", "verdict"]

REDACTED = "***"
SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
_MIN_SECRET = 4  # shorter values would blank out ordinary text

# The regexes work in Allure 2 (Java, whole-text match) and Allure 3 (JavaScript): no inline
# flags, [\s\S] for "anything including newlines".
CATEGORIES: list[dict[str, Any]] = [
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


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if len(s) >= _MIN_SECRET), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _allure() -> Any:
    import allure  # noqa: PLC0415 - only when Allure reporting is on

    return allure


def describe_exchange(response: Any, secrets: Iterable[str]) -> str:
    """A requests response and its request as text, with secret headers and values hidden."""
    request = response.request

    def headers(items: Mapping[str, str]) -> str:
        return "\n".join(
            f"{k}: {REDACTED if k.lower() in SECRET_HEADERS else v}" for k, v in items.items()
        )

    body = request.body or b""
    sent = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    text = (
        f"{request.method} {request.url}\n{headers(request.headers)}\n\n{sent[:2000]}\n\n"
        f"--- response: HTTP {response.status_code} in "
        f"{response.elapsed.total_seconds() * 1000:.1f} ms\n{headers(response.headers)}\n\n"
        f"{response.text[:4000]}"
    )
    return redact(text, secrets)


class AllureReporting:
    """Registered on every process when Allure results are written."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secrets = list(settings.env_files.secrets_values().values())

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
                    redact(logs, self.secrets),
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
        try:
            import docker  # noqa: PLC0415

            client = docker.from_env()
            client.ping()
        except Exception:
            return ""
        parts = []
        try:
            for service in self.settings.color[color].services:
                labels = [
                    f"com.docker.compose.project={self.settings.compose_project}",
                    f"com.docker.compose.service={service}",
                ]
                for container in client.containers.list(all=True, filters={"label": labels}):
                    tail = container.logs(tail=50).decode(errors="replace")
                    parts.append(f"=== {container.name}\n{tail}")
        finally:
            client.close()
        return "\n".join(parts)


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


def verdict(run: GateRun, report: GateReport) -> dict[str, Any]:
    """The machine-readable verdict: decision, reason, colors, tag, counts."""
    decision = report.decision
    counts = {
        str(key or "untagged"): {
            "passed": c.passed,
            "failed": c.failed,
            "errors": c.errors,
            "skipped": c.skipped,
            "xfailed": c.xfailed,
            "xpassed": c.xpassed,
            "unreachable": c.unreachable,
        }
        for key, c in run.outcomes.as_dict().items()
    }
    return {
        "decision": _decision_word(report),
        "verdict": decision.verdict.value if decision else None,
        "reason": report.lines[0] if report.lines else "",
        "lines": report.lines,
        "exit_code": report.exit_code,
        "target": run.target,
        "live_before": decision.live if decision else None,
        "live_after": report.traffic_on,
        "tag": run.settings.deploy
        or run.settings.deployment_tag
        or (report.result.version if report.result else None),
        "counts": counts,
        "probe": report.probe,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
    }


def _decision_word(report: GateReport) -> str:
    """switched / rolled back / refused / inconclusive / failed / noop / deployed."""
    decision = report.decision
    if report.result is not None:
        return "rolled back" if report.rolled_back else "switched"
    if decision is None:
        return "deployed" if report.exit_code == 0 else "failed"
    return {"noop": "no change", "refused": "refused"}.get(
        decision.verdict.value, decision.verdict.value
    )


def write_gate_results(
    run: GateRun, report: GateReport, alluredir: Path, haproxy_version: str | None
) -> None:
    """environment.properties, categories.json and the gate's own result in ``alluredir``."""
    alluredir.mkdir(parents=True, exist_ok=True)
    data = verdict(run, report)
    root = run.settings.config_file.parent if run.settings.config_file else Path.cwd()
    env = {
        "target.color": data["target"],
        "deployment.tag": data["tag"] or "-",
        "live.before": data["live_before"] or "-",
        "live.after": data["live_after"] or "-",
        "haproxy.version": haproxy_version or "unknown",
        "git.revision": _git_revision(root),
        "gate.decision": data["decision"],
    }
    (alluredir / "environment.properties").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (alluredir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2))

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
        attach("zero-downtime probe", json.dumps(report.probe, indent=2))
    attach("verdict.json", json.dumps(data, indent=2))
    ok = report.exit_code == 0
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
    }
    (alluredir / f"{result['uuid']}-result.json").write_text(json.dumps(result, indent=2))


class ReportScrubber:
    """Last pass on the controller: no secret value stays in a written report file."""

    def __init__(self, settings: Settings, paths: Iterable[Path]) -> None:
        self.secrets = [s for s in settings.env_files.secrets_values().values() if s]
        self.paths = [p for p in paths if p is not None]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.scrub()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.scrub()  # junitxml writes its file in its own sessionfinish

    def scrub(self) -> None:
        if not any(len(s) >= _MIN_SECRET for s in self.secrets):
            return
        for path in self.paths:
            files = path.rglob("*") if path.is_dir() else [path]
            for file in files:
                if not file.is_file() or file.stat().st_size > 50_000_000:
                    continue
                try:
                    text = file.read_text()
                except (UnicodeDecodeError, OSError):
                    continue
                cleaned = redact(text, self.secrets)
                if cleaned != text:
                    file.write_text(cleaned)
