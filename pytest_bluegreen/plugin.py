"""pytest hooks of pytest-bluegreen. Thin: the work is in the modules they call.

Side effects (the lock, the switch, the history) happen on the xdist controller only, or in the
single process of a serial run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from . import hookspecs
from .eventually import INFRASTRUCTURE, classify
from .fixtures import (  # noqa: F401 - fixtures are registered by being in this module
    bluegreen_secrets,
    bluegreen_settings,
    color,
    color_containers,
    container_host,
    docker_client,
    environment,
    haproxy,
    http,
    live_color,
    neo4j_http,
    ollama_http,
    postgres_dsn,
    redis_url,
)
from .gate import EXIT_DEPLOY_FAILED, EXIT_REFUSED
from .gaterun import DeployRefused, GateHooks, GateReport, GateRun, refused
from .haproxy import RuntimeApiError
from .keys import GATE_KEY, SETTINGS_KEY, TARGET_KEY, WORKERINPUT_TARGET
from .outcomes import COLOR_PROPERTY, FAILURE_PROPERTY, SHARED, color_of
from .reporting import AllureReporting, ReportScrubber, redact, verdict, write_gate_results
from .settings import CONFIG_OPTION, OPTIONS, SettingsError, describe, resolve
from .state import LockHeld

MARKERS = (
    "shared: a check of the shared services (PostgreSQL, Redis, Neo4j, Ollama, monitoring); "
    "runs with every --env",
    "quick: a fast check, part of the pre-switch gate (pytest --env green -m quick --switch)",
    "perf: a performance check: bounded load with k6-style thresholds",
)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bluegreen", "blue/green deployment gate (pytest-bluegreen)")
    for option in (CONFIG_OPTION, *OPTIONS):
        dest = f"bluegreen_{option.key}"
        if option.cli:
            ini = f" [ini: {option.ini_name}]" if option.ini else ""
            env = f" [env: {option.env_name}]" if option.env else ""
            if option.default is False:
                group.addoption(
                    option.cli, action="store_true", default=None, dest=dest, help=option.help + env
                )
            else:
                group.addoption(
                    option.cli,
                    default=None,
                    dest=dest,
                    metavar=option.key.upper(),
                    help=option.help + env + ini,
                )
        if option.ini:
            parser.addini(option.ini_name, help=f"pytest-bluegreen: {option.help}", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    cli: dict[str, Any] = {
        o.key: config.getoption(f"bluegreen_{o.key}") for o in (CONFIG_OPTION, *OPTIONS) if o.cli
    }
    given = cli.get("config")
    if given and (config.invocation_params.dir / given).is_file():
        # a path on the command line is relative to where pytest was run, not to the rootdir
        cli["config"] = str(config.invocation_params.dir / given)
    ini: dict[str, str] = {}
    for o in (CONFIG_OPTION, *OPTIONS):
        if o.ini:
            value = config.getini(o.ini_name)
            if isinstance(value, str) and value:
                ini[o.ini_name] = value
    try:
        settings = resolve(cli, os.environ, ini, config.rootpath)
    except SettingsError as exc:
        if config.option.help:
            return  # let --help show the options that fix it
        raise pytest.UsageError(str(exc)) from None
    config.stash[SETTINGS_KEY] = settings
    if settings.allure_dir is not None and not getattr(config.option, "allure_report_dir", None):
        config.option.allure_report_dir = str(settings.allure_dir)
    if getattr(config.option, "allure_report_dir", None):
        config.pluginmanager.register(AllureReporting(settings), "bluegreen-allure")
    if _is_worker(config):
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        config.stash[TARGET_KEY] = workerinput.get(WORKERINPUT_TARGET, settings.target)
        return
    config.stash[TARGET_KEY] = settings.target
    written = [getattr(config.option, "allure_report_dir", None), config.option.xmlpath]
    report_paths = [Path(p) for p in written if p] + [settings.verdict_file]
    config.pluginmanager.register(ReportScrubber(settings, report_paths), "bluegreen-scrubber")
    if settings.gating:
        run = GateRun(settings, _hooks_for(config), progress=_progress_for(config))
        config.stash[GATE_KEY] = run
        config.pluginmanager.register(OutcomeCollector(run), "bluegreen-outcomes")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "bluegreen-xdist")


def _progress_for(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines of long steps (deploy, drain) on the terminal, readable in CI logs."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"bluegreen: {line}")

    return write


def _hooks_for(config: pytest.Config) -> GateHooks:
    hook = config.hook
    return GateHooks(
        before_switch=lambda plan, decision: hook.pytest_bluegreen_before_switch(
            config=config, plan=plan, decision=decision
        ),
        after_switch=lambda result: hook.pytest_bluegreen_after_switch(
            config=config, result=result
        ),
        after_rollback=lambda from_color, to_color, reason: hook.pytest_bluegreen_after_rollback(
            config=config, from_color=from_color, to_color=to_color, reason=reason
        ),
    )


class OutcomeCollector:
    """Counts outcomes per color; ``pytest_runtest_logreport`` runs on the controller for every
    report, the workers' ones included (xdist forwards them)."""

    def __init__(self, run: GateRun) -> None:
        self.run = run

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.run.outcomes.add(report)


class XdistHooks:
    """Registered only when xdist is installed: hands the settled target to the workers."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKERINPUT_TARGET] = node.config.stash[TARGET_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Label each failure: the color is unreachable (infrastructure) or answers wrongly."""
    report = yield
    if report.failed and call.excinfo is not None:
        report.user_properties.append((FAILURE_PROPERTY, classify(call.excinfo.value)))
    if report.failed or report.sections:
        _redact_report(report, item.config.stash[SETTINGS_KEY].env_files.secrets_values())
    return report


def _redact_report(report: pytest.TestReport, secrets: dict[str, str]) -> None:
    """Secret values never reach the terminal, JUnit XML or Allure through a failure text."""
    values = [v for v in secrets.values() if v]
    if not values:
        return
    text = report.longreprtext
    if any(v in text for v in values):
        report.longrepr = redact(text, values)
    report.sections = [(title, redact(body, values)) for title, body in report.sections]


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    properties = getattr(report, "user_properties", ())  # collect reports have none
    if report.failed and (FAILURE_PROPERTY, INFRASTRUCTURE) in properties:
        where = color_of(report) or "a part"
        word = f"INFRA-ERROR ({where} unreachable)" if report.when == "call" else "INFRA-ERROR"
        category = report.outcome if report.when == "call" else "error"  # as pytest counts it
        return category, "I", (word, {"red": True, "bold": True})
    return None


def pytest_report_header(config: pytest.Config) -> list[str]:
    return describe(config.stash[SETTINGS_KEY])


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(GATE_KEY, None)
    if run is None:
        return
    try:
        run.start()
    except LockHeld as exc:
        run.report = refused(f"refused: {exc}", run.target)
        pytest.exit(f"bluegreen: {run.report.lines[0]}", returncode=EXIT_REFUSED)
    except RuntimeApiError as exc:
        run.report = refused(f"refused: {exc}", run.target)
        pytest.exit(f"bluegreen: {run.report.lines[0]}", returncode=EXIT_REFUSED)
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[TARGET_KEY] = run.target
    if run.settings.deploy is not None:
        _deploy(config, run)


def _deploy(config: pytest.Config, run: GateRun) -> None:
    """--deploy on the controller, before any check and before xdist starts its workers."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    progress = run.progress
    from .deploy import DeployError  # noqa: PLC0415 - Docker clients load only to deploy

    try:
        run.deploy(progress)
    except DeployRefused as exc:
        run.report = run.record(refused(str(exc), run.target))
        run.close()
        pytest.exit(f"bluegreen: {exc}", returncode=EXIT_REFUSED)
    except DeployError as exc:
        run.report = refused(str(exc).splitlines()[0], run.target)
        run.report.exit_code = EXIT_DEPLOY_FAILED
        run.record(run.report, outcome="deploy-failed")
        run.close()
        first, *rest = str(exc).splitlines()
        if reporter is not None and rest:
            for line in rest:
                reporter.write_line(f"  {line}")
        pytest.exit(f"bluegreen: deploy failed: {first}", returncode=EXIT_DEPLOY_FAILED)


@pytest.hookimpl(tryfirst=True)  # before a test module's own: the color leads the id
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "color" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        listed = names.split(",") if isinstance(names, str) else list(names)
        if "color" in (n.strip() for n in listed):
            return  # the test chose its colors itself
    colors = list(metafunc.config.stash[SETTINGS_KEY].colors)
    metafunc.parametrize("color", colors, indirect=True, ids=colors, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS_KEY]
    target = config.stash[TARGET_KEY]
    wanted = set(settings.selected_colors())
    if settings.rollback and target is not None:
        wanted = {target}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        item_color = callspec.params.get("color") if callspec is not None else None
        if item_color is not None:
            item.user_properties.append((COLOR_PROPERTY, str(item_color)))
            keep = item_color in wanted
        elif item.get_closest_marker("shared") is not None:
            item.user_properties.append((COLOR_PROPERTY, SHARED))
            keep = True
        else:
            keep = settings.env != "shared"
        (kept if keep else dropped).append(item)
    if dropped:
        items[:] = kept
        config.hook.pytest_deselected(items=dropped)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        return
    run = config.stash.get(GATE_KEY, None)
    if run is None:
        return
    if run.report is None and run.target is not None:
        try:
            report = run.finish(int(exitstatus))
        finally:
            run.close()
        session.exitstatus = report.exit_code
    if run.report is not None:
        _write_reports(config, run, run.report)


def _write_reports(config: pytest.Config, run: GateRun, report: GateReport) -> None:
    """verdict.json always; the gate's Allure results when Allure is on."""
    settings = run.settings
    try:
        settings.verdict_file.parent.mkdir(parents=True, exist_ok=True)
        settings.verdict_file.write_text(json.dumps(verdict(run, report), indent=2) + "\n")
    except OSError as exc:
        report.lines.append(f"warning: verdict not written to {settings.verdict_file}: {exc}")
    alluredir = getattr(config.option, "allure_report_dir", None)
    if alluredir:
        try:
            version: str | None = run.api.version()
        except RuntimeApiError:
            version = None
        write_gate_results(run, report, Path(alluredir), version)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = config.stash.get(GATE_KEY, None)
    if run is None or run.report is None:
        return
    report = run.report
    terminalreporter.section("bluegreen gate")
    if report.decision is not None:
        verdict = report.decision.verdict.value.upper()
    else:  # no traffic decision: a deploy without --switch, or an interrupted session
        verdict = "DONE" if report.exit_code == 0 else "FAILED"
    for number, line in enumerate(report.lines):
        prefix = f"bluegreen: {verdict}: " if number == 0 else "bluegreen: "
        terminalreporter.write_line(prefix + line)
    terminalreporter.write_line(f"bluegreen: exit status {report.exit_code}")
