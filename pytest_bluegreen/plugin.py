"""pytest hooks of pytest-bluegreen. Thin: the work is in the modules they call.

Side effects (the lock, the deploy, the switch, the history) happen only in the
:class:`~pytest_bluegreen.gateplugin.GatePlugin`, registered on the xdist controller (or the
single process of a serial run) of a gating run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from . import hookspecs
from .eventually import INFRASTRUCTURE, classify, unreachable_part
from .extras import MissingExtra, require
from .fixtures import (  # noqa: F401 - fixtures are registered by being in this module
    baseline_color,
    bluegreen_secrets,
    bluegreen_settings,
    color,
    environment,
    haproxy,
    http,
    live_color,
    preview_http,
    prometheus,
    routed_http,
)
from .gate.outcomes import COLOR_PROPERTY, FAILURE_PROPERTY, SHARED, UNREACHABLE_PROPERTY, color_of
from .haproxy.preview import preview_key
from .keys import (
    ANSWERS_KEY,
    POST_KEY,
    SECRETS_KEY,
    SETTINGS_KEY,
    TARGET_KEY,
    TWINS_KEY,
    WORKERINPUT_TARGET,
)
from .process.child import follow_parent
from .redaction import ReportScrubber, Secrets
from .settings import Option, Settings, SettingsError, all_options, describe, resolve
from .settings.files import misread_values

__all__ = ["add_options", "settings_from_config"]

MARKERS = (
    "shared: a check of the shared services (PostgreSQL, Redis, Neo4j, Ollama, monitoring); "
    "runs with every --env",
    "quick: a fast check, part of the pre-switch gate (pytest --env green -m quick --switch)",
    "perf: a performance check: bounded load with k6-style thresholds",
    "post: a check after the switch, run by the bake (--bake) every interval against the live "
    "color through the routed URLs (the routed_http fixture); left out of the run before it",
)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def add_options(parser: pytest.Parser, options: Iterable[Option]) -> None:
    """Each option's CLI flag (if it has one) in the ``bluegreen`` group, and its ini twin.
    Plugins that add settings groups call this from their own ``pytest_addoption``."""
    group = parser.getgroup("bluegreen", "blue/green deployment gate (pytest-bluegreen)")
    for option in options:
        if option.cli:
            ini = f" [ini: {option.ini_name}]" if option.ini else ""
            env = f" [env: {option.env_name}]" if option.env else ""
            if option.flag:
                group.addoption(
                    option.cli,
                    *option.aliases,
                    action="store_true",
                    default=None,
                    dest=option.dest,
                    help=option.help + env,
                )
            else:
                group.addoption(
                    option.cli,
                    default=None,
                    dest=option.dest,
                    metavar=option.key.upper(),
                    help=option.help + env + ini,
                )
        if option.ini:
            parser.addini(option.ini_name, help=f"pytest-bluegreen: {option.help}", default="")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, all_options())


def settings_from_config(config: pytest.Config) -> Settings:
    """Resolve the settings from this config's CLI options, ini, environment and file, with
    the groups other plugins add. Raises SettingsError."""
    extra = [g for groups in config.hook.pytest_bluegreen_settings_groups() for g in groups]
    options = all_options(extra)
    cli: dict[str, Any] = {o.key: config.getoption(o.dest, None) for o in options if o.cli}
    here = config.invocation_params.dir
    misread = misread_values(_given_args(config), _value_flags(options), here)
    if misread is not None:
        raise SettingsError(misread)
    ini: dict[str, str] = {}
    for o in options:
        if o.ini:
            try:
                value = config.getini(o.ini_name)
            except ValueError:  # a plugin's group whose ini twins were not registered
                continue
            if isinstance(value, str) and value:
                ini[o.ini_name] = value
    # the settings file: from where pytest runs (and the paths it was given), never from the
    # rootdir, which a plugin's option value can move (settings/files.py)
    given = config.args if config.args_source is pytest.Config.ArgsSource.ARGS else []
    near = [here / arg.split("::")[0] for arg in given]
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    return resolve(cli, os.environ, ini, here, extra_groups=extra, near=near, ini_dir=ini_dir)


def _given_args(config: pytest.Config) -> list[str]:
    """The words pytest read its rootdir from: the command line, PYTEST_ADDOPTS, addopts."""
    words = list(config.invocation_params.args)
    words += shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    addopts = config.getini("addopts")
    return words + [str(w) for w in addopts] if isinstance(addopts, list) else words


def _value_flags(options: Iterable[Option]) -> list[str]:
    """Our options that take a value (a separate word pytest may misread as a path)."""
    return [o.cli for o in options if o.cli and not o.flag]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    follow_parent()  # a child of bluegreen: its gate ends as after a SIGTERM if bluegreen dies
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        settings = settings_from_config(config)
    except SettingsError as exc:
        if config.option.help:
            return  # let --help show the options that fix it
        raise pytest.UsageError(str(exc)) from None
    config.stash[SETTINGS_KEY] = settings
    secrets = settings.load_secrets()
    config.stash[SECRETS_KEY] = secrets
    _redact_log_records(config, secrets)
    # a missing extra is the error of a run that uses its feature: --help, --version (no
    # pytest_configure) and what shows or collects without running tests always work
    shows = any(config.getoption(name, False) for name in SHOW_ONLY)
    if _runs_tests(config) and not shows:
        _require_stats_extra(settings)
        _require_metrics_extra(settings)
        try:
            preview_key(secrets)  # a key that cannot be sent: one line before any check
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    allure_results = _register_allure(config, settings, secrets, shows=shows)
    if _is_worker(config):
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        config.stash[TARGET_KEY] = workerinput.get(WORKERINPUT_TARGET, settings.target)
        return
    config.stash[TARGET_KEY] = settings.target
    written = [allure_results, config.option.xmlpath]
    report_paths = [Path(p) for p in written if p] + [settings.reports.verdict_file]
    config.pluginmanager.register(ReportScrubber(secrets, report_paths), "bluegreen-scrubber")
    _register_run_plugins(config, settings, allure_results)
    _register_xdist(config)


def _redact_log_records(config: pytest.Config, secrets: Secrets) -> None:
    """Log records (caplog, live logging, files) are redacted when made, until the session ends."""
    if secrets.active:
        previous = logging.getLogRecordFactory()
        config.add_cleanup(lambda: logging.setLogRecordFactory(previous))
        logging.setLogRecordFactory(secrets.redacting_record_factory(previous))


def _require_stats_extra(settings: Settings) -> None:
    """A run that compares colors needs scipy (the ``stats`` extra)."""
    if settings.checks.compare and importlib.util.find_spec("scipy") is None:
        raise pytest.UsageError(
            "bluegreen: comparing colors ([compare] rules) needs the 'stats' extra: "
            "pip install 'pytest-bluegreen[stats]'"
        )


def _require_metrics_extra(settings: Settings) -> None:
    """A run that publishes the gate's metrics needs prometheus-client (the ``metrics``
    extra): said before anything is checked or switched, not as a warning afterwards."""
    where = settings.metrics
    if where.metrics_textfile is None and where.metrics_push_url is None:
        return  # and the gate's modules stay unloaded in a session that is no gate
    from .report.metrics import require_client  # noqa: PLC0415 - a run that publishes

    try:
        require_client(settings.metrics)
    except MissingExtra as exc:
        raise pytest.UsageError(f"bluegreen: {exc}") from None


def _register_allure(
    config: pytest.Config, settings: Settings, secrets: Secrets, *, shows: bool
) -> str | None:
    """The Allure results folder (``allure_dir`` unless ``--alluredir`` was given), its writer
    registered unless the run only ``shows`` something; None without Allure results."""
    allure_dir = settings.reports.allure_dir
    if allure_dir is not None and not getattr(config.option, "allure_report_dir", None):
        config.option.allure_report_dir = str(allure_dir)
    allure_results: str | None = getattr(config.option, "allure_report_dir", None)
    if allure_results and not shows:
        try:
            require("allure", "allure", "Allure results (allure_dir)")
        except MissingExtra as exc:
            raise pytest.UsageError(f"bluegreen: {exc}") from None
        from .report.allure import AllureReporting  # noqa: PLC0415 - the allure extra

        config.pluginmanager.register(AllureReporting(settings, secrets), "bluegreen-allure")
    return allure_results


def _register_run_plugins(
    config: pytest.Config, settings: Settings, allure_results: str | None
) -> None:
    """The controller's plugin for a run that runs tests: the gate when gating, else the
    Allure run environment when Allure results are written (a gate writes its own)."""
    if not _runs_tests(config):
        return
    if settings.gating:
        from .gateplugin import GatePlugin  # noqa: PLC0415 - only a gating controller needs it
        from .process.closedpipe import quiet_closed_pipes  # noqa: PLC0415 - a gating controller's

        # a reader that goes away (`pytest --switch | head`) must not fail a gate that moves
        # traffic: before the terminal reporter takes sys.stdout (this hook runs first); line
        # by line, as pytest's capture flushes the stream it saved but not this one
        quiet_closed_pipes(line_buffering=True)

        # a verdict left by an earlier run must not pass for this one's (a crash writes none)
        settings.reports.verdict_file.unlink(missing_ok=True)
        config.pluginmanager.register(GatePlugin(config, settings), "bluegreen-gate")
    elif allure_results:
        from .report.allure import AllureRunEnvironment  # noqa: PLC0415 - the allure extra

        environment = AllureRunEnvironment(settings, Path(allure_results))
        config.pluginmanager.register(environment, "bluegreen-allure-environment")


def _register_xdist(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "bluegreen-xdist")
        if config.getoption("dist", "no") != "no":  # the workers' reports are shown here
            _show_infra_errors(config)


NO_TESTS_RUN = ("collectonly", "setupplan", "setuponly")
SHOW_ONLY = ("help", "markers", "showfixtures", "show_fixtures_per_test")


def _runs_tests(config: pytest.Config) -> bool:
    """False for --collect-only, --setup-plan, --setup-only: nothing to gate, nothing to deploy."""
    return not any(config.getoption(name, False) for name in NO_TESTS_RUN)


class XdistHooks:
    """Registered only when xdist is installed: hands the settled target to the workers."""

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[WORKERINPUT_TARGET] = node.config.stash[TARGET_KEY]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Label each failure: the color is unreachable (infrastructure) or answers wrongly; carry
    what the colors' answers said about their build to the controller (gate/builds.py)."""
    report = yield
    answers = item.config.stash.get(ANSWERS_KEY, None)
    if answers is not None:
        answers.attach(report)
    if report.failed and call.excinfo is not None:
        kind = classify(call.excinfo.value)
        report.user_properties.append((FAILURE_PROPERTY, kind))
        part = unreachable_part(call.excinfo.value) if kind == INFRASTRUCTURE else None
        if part is not None:  # not the color: "INFRA-ERROR (prometheus unreachable)"
            report.user_properties.append((UNREACHABLE_PROPERTY, part))
        if kind == INFRASTRUCTURE:
            _show_infra_errors(item.config)
    secrets = item.config.stash.get(SECRETS_KEY, None)
    if secrets is not None and secrets.active:
        _redact_report(report, secrets)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A collection error (a conftest that fails to import) is redacted like a test's."""
    report = yield
    secrets = collector.config.stash.get(SECRETS_KEY, None)
    if secrets is not None and secrets.active and report.longrepr is not None:
        report.longrepr = secrets.redact_object(report.longrepr)
    return report


def _redact_report(report: pytest.TestReport, secrets: Secrets) -> None:
    """Secret values never reach the terminal, JUnit XML or Allure through a report: the
    failure (its crash line kept, so the summary still names the real error), a skip or xfail
    reason, captured output."""
    if report.longrepr is not None:
        report.longrepr = secrets.redact_object(report.longrepr)
    if hasattr(report, "wasxfail"):
        report.wasxfail = secrets.redact(str(report.wasxfail))
    report.sections = [(title, secrets.redact(body)) for title, body in report.sections]


class InfraStatus:
    """``INFRA-ERROR (<part> unreachable)`` as the terminal's word for a failure labelled
    infrastructure. Registered only where such a report can be shown: on an xdist controller
    from the start (its reports come from the workers), elsewhere with the first label (a hook
    called for every report of every test is a measurable part of the plugin's cost)."""

    @pytest.hookimpl
    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        properties = getattr(report, "user_properties", ())  # collect reports have none
        if report.failed and (FAILURE_PROPERTY, INFRASTRUCTURE) in properties:
            part = next((v for k, v in properties if k == UNREACHABLE_PROPERTY), None)
            where = part or color_of(report) or "a part"
            word = f"INFRA-ERROR ({where} unreachable)" if report.when == "call" else "INFRA-ERROR"
            category = report.outcome if report.when == "call" else "error"  # as pytest counts
            return category, "I", (word, {"red": True, "bold": True})
        return None


INFRA_STATUS = "bluegreen-infra-status"


def _show_infra_errors(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(INFRA_STATUS):
        config.pluginmanager.register(InfraStatus(), INFRA_STATUS)


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS_KEY]
    lines = describe(settings)
    if settings.gating and not _runs_tests(config):
        lines.append(
            "bluegreen gate: off: this mode runs no checks; nothing is deployed or switched"
        )
    secrets = config.stash[SECRETS_KEY]  # a URL setting's password, a DSN's
    return [secrets.redact(line) for line in lines]


@pytest.hookimpl(tryfirst=True)  # before a test module's own: the color leads the id
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "color" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        listed = names.split(",") if isinstance(names, str) else list(names)
        if "color" in (n.strip() for n in listed):
            return  # the test chose its colors itself
    colors = list(metafunc.config.stash[SETTINGS_KEY].topology.colors)
    metafunc.parametrize("color", colors, indirect=True, ids=colors, scope="session")


@pytest.hookimpl(tryfirst=True)  # before -m/-k: the bake's post checks are kept whatever runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SETTINGS_KEY]
    target = config.stash[TARGET_KEY]
    wanted = set(settings.selected_colors())
    if settings.run.rollback and target is not None:
        wanted = {target}
    everything = settings.run.env != "shared"
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    post: list[pytest.Item] = []
    posts: dict[pytest.Collector | None, bool] = {}
    shared: dict[pytest.Collector | None, bool] = {}
    for item in items:
        if _has_marker(item, "post", posts):
            callspec = getattr(item, "callspec", None)
            item_color = callspec.params.get("color") if callspec is not None else None
            if item_color in (None, target) and settings.bake.enabled:
                post.append(item)  # kept for the bake, after the switch
            dropped.append(item)
            continue
        callspec = getattr(item, "callspec", None)
        item_color = callspec.params.get("color") if callspec is not None else None
        if item_color is not None:
            item.user_properties.append((COLOR_PROPERTY, str(item_color)))
            keep = item_color in wanted
        elif _has_marker(item, "shared", shared):
            item.user_properties.append((COLOR_PROPERTY, SHARED))
            keep = True
        else:
            keep = everything
        (kept if keep else dropped).append(item)
    config.stash[POST_KEY] = post
    if settings.blames and target is not None:
        config.stash[TWINS_KEY] = _twins(items, target, settings.topology.other(target))
    if dropped:
        items[:] = kept
        config.hook.pytest_deselected(items=dropped)


def _has_marker(item: pytest.Item, name: str, parents: dict[pytest.Collector | None, bool]) -> bool:
    """``item.get_closest_marker(name) is not None``, each parent chain looked at once: the
    items of one module share their parents, and a thousand of them each walking the chain
    was a measurable part of the plugin's cost per test."""
    if any(getattr(mark, "name", None) == name for mark in item.own_markers):
        return True
    parent = item.parent
    if parent not in parents:
        parents[parent] = parent is not None and parent.get_closest_marker(name) is not None
    return parents[parent]


def _twins(items: list[pytest.Item], target: str, other: str) -> dict[str, pytest.Item]:
    """Each check of the target and the same check (same parameters) for the other color."""
    from .judge.blame import twin_key  # noqa: PLC0415 - only a run that blames needs it

    theirs: dict[tuple[str, str, str], pytest.Item] = {}
    mine: list[tuple[tuple[str, str, str], pytest.Item]] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or item.get_closest_marker("post") is not None:
            continue
        parent = item.parent.nodeid if item.parent is not None else ""
        key = twin_key(parent, getattr(item, "originalname", item.name), callspec.params)
        its_color = callspec.params.get("color")
        if its_color == other:
            theirs[key] = item
        elif its_color == target:
            mine.append((key, item))
    return {item.nodeid: theirs[key] for key, item in mine if key in theirs}
