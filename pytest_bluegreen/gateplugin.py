"""The gating controller's plugin object: registered in ``pytest_configure`` only on the
process that may change something (the xdist controller, or a serial run), as pytest-xdist
registers its ``DSession``.

It owns the session's start (lock, ``--deploy``), the outcome collection, the session's finish
(the gate) and the terminal summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .errors import BluegreenError, DeployError
from .gaterun import GateHooks, GateReport, GateRun
from .haproxy import RuntimeApiError
from .keys import TARGET_KEY
from .settings import Settings, SettingsError
from .state import LockHeld
from .verdict import verdict, write_verdict

__all__ = ["GatePlugin", "hooks_for", "progress_for"]


def progress_for(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines of long steps (deploy, drain) on the terminal, readable in CI logs."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"bluegreen: {line}")

    return write


def hooks_for(config: pytest.Config) -> GateHooks:
    """The user's hooks (conftests, plugins), called with keyword arguments."""
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


class GatePlugin:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.run = GateRun(settings, hooks_for(config), progress=progress_for(config))
        self.report: GateReport | None = None
        self.notes: list[str] = []  # said after the report's own lines (a verdict not written)

    # -- start -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before xdist's DSession starts the workers
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        run = self.run
        try:
            run.start()
        except SettingsError as exc:
            raise pytest.UsageError(str(exc)) from None
        except (LockHeld, RuntimeApiError) as exc:
            self._stop(run.refused(exc, record=False))
        self.config.stash[TARGET_KEY] = run.target
        if run.settings.run.deploy is None:
            return
        try:
            run.deploy()
        except BluegreenError as exc:
            report = run.refused(exc, record=True)
            run.close()
            if isinstance(exc, DeployError):
                for line in str(exc).splitlines()[1:]:
                    progress_for(self.config)(f"  {line}")
            self._stop(report)

    def _stop(self, report: GateReport) -> None:
        self.report = report
        pytest.exit(f"bluegreen: {report.lines[0]}", returncode=report.exit_code)

    # -- during ------------------------------------------------------------------------------
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Runs on the controller for every report, the workers' ones included."""
        self.run.outcomes.add(report)

    # -- finish ------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self.run
        if self.report is None and run.target is not None:
            try:
                self.report = run.finish(int(exitstatus))
            finally:
                run.close()
            session.exitstatus = self.report.exit_code
        if self.report is not None:
            self._write_reports(self.report)

    def _write_reports(self, report: GateReport) -> None:
        """verdict.json always; the gate's Allure results when Allure is on."""
        data = verdict(self.run, report)
        warning = write_verdict(self.run.settings.reports.verdict_file, data)
        if warning:
            self.notes.append(warning)
        alluredir = getattr(self.config.option, "allure_report_dir", None)
        if alluredir:
            from .reporting import write_gate_results  # noqa: PLC0415 - the allure extra

            try:
                version: str | None = self.run.api.version()
            except RuntimeApiError:
                version = None
            write_gate_results(self.run, report, Path(alluredir), version)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.report
        if report is None:
            return
        terminalreporter.section("bluegreen gate")
        for number, line in enumerate((*report.lines, *self.notes)):
            prefix = f"bluegreen: {report.verdict_word}: " if number == 0 else "bluegreen: "
            terminalreporter.write_line(prefix + line)
        terminalreporter.write_line(f"bluegreen: exit status {int(report.exit_code)}")
