"""The gating controller's plugin object: registered in ``pytest_configure`` only on the
process that may change something (the xdist controller, or a serial run), as pytest-xdist
registers its ``DSession``.

It owns the session's start (lock, ``--deploy``), what the session itself says (tests
selected and finished, an interruption, a narrowed selection), the outcome collection, the
session's finish (the gate, with signals deferred) and the terminal summary.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

# the public hook (item.ihook.pytest_runtest_protocol) logs every report to every reporter;
# a bake interval's run is not a test of the session. pytest-rerunfailures runs items again
# the same way.
from _pytest.runner import runtestprotocol

from .errors import BluegreenError, DeployError
from .gate.decision import SessionFacts
from .gate.report import GateHooks, GateReport
from .gate.run import GateRun
from .haproxy.answers import RuntimeApiError
from .judge.bake import PostResult
from .keys import POST_KEY, SECRETS_KEY, TARGET_KEY, TWINS_KEY
from .process.signals import DeferredSignals
from .report.metrics import RunMetrics, publish
from .report.verdict import verdict, write_verdict
from .settings import Settings, SettingsError

__all__ = ["GatePlugin", "hooks_for", "narrowed_by", "progress_for"]


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
        on_step=lambda step, plan: hook.pytest_bluegreen_switch_step(
            config=config, step=step, plan=plan
        ),
    )


def narrowed_by(config: pytest.Config) -> str | None:
    """The options that made the selection from the last run's state, if any."""
    found = []
    if config.getoption("lf", False):
        found.append("--lf")
    if config.getoption("stepwise", False) or config.getoption("stepwise_skip", False):
        found.append("--sw")
    if config.getoption("deselect", None):
        found.append("--deselect")
    return ", ".join(found) or None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


class GatePlugin:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.metrics = RunMetrics()  # the gate's own metrics, published once at the end
        self._collecting = ExitStack()
        self._published = False
        self.run = GateRun(
            settings,
            hooks_for(config),
            progress=progress_for(config),
            secrets=config.stash[SECRETS_KEY],
            run_post=self._run_post,
            run_twin=self._run_twin,
        )
        self.session: pytest.Session | None = None
        self.report: GateReport | None = None
        self.notes: list[str] = []  # said after the report's own lines (a verdict not written)
        self.collected: int | None = None
        self.finished: set[str] = set()
        self.interrupted: str | None = None
        self.narrowed = None if settings.run.allow_narrowed else narrowed_by(config)
        self._previous_handlers: dict[int, Any] = {}

    # -- start -------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before xdist's DSession starts the workers
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        self._terminate_as_interrupt()
        # every outcome the history records from here on counts in the gate's metrics
        self._collecting.enter_context(self.metrics.collecting())
        run = self.run
        try:
            run.start()
        except SettingsError as exc:
            raise pytest.UsageError(str(exc)) from None
        except BluegreenError as exc:  # the lock, an unfinished journal, HAProxy not ready
            self._stop(run.refused(exc, record=False))
        self.config.stash[TARGET_KEY] = run.target
        try:
            if run.settings.run.deploy is not None:
                run.deploy()
            run.before_checks()  # every HAProxy slot of the target runs the build to judge
        except BluegreenError as exc:
            report = run.refused(exc, record=True)
            run.close()
            if isinstance(exc, DeployError):  # the containers' log tail
                for line in str(exc).splitlines()[1:]:
                    run.progress(f"  {line}")
            self._stop(report)

    def _stop(self, report: GateReport) -> None:
        """End the session here. pytest calls no sessionfinish after a sessionstart that
        raised, so the verdict is written now."""
        self.report = report
        self._restore_signals()
        self._publish_metrics()
        self._write_reports(report)
        for note in self.notes:
            progress_for(self.config)(note)
        pytest.exit(f"bluegreen: {report.lines[0]}", returncode=report.exit_code)

    def _terminate_as_interrupt(self) -> None:
        """During the checks, SIGTERM and SIGHUP (a cancelled CI job, a closed terminal) end
        the session as Ctrl-C does, so the gate still decides (nothing moves) and reports."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP):
                self._previous_handlers[signum] = signal.signal(signum, _interrupt)

    def _restore_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    # -- during ------------------------------------------------------------------------------
    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """A serial run: the tests selected, after -k, -m, --env."""
        self.collected = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist: each worker's selection (every worker collects the same)."""
        self.collected = len(ids)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Runs on the controller for every report, the workers' ones included."""
        self.run.outcomes.add(report)
        if report.when == "teardown":
            self.finished.add(report.nodeid)

    @pytest.hookimpl
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C, SIGTERM, SIGHUP, or pytest.exit(...) with any return code."""
        exc = excinfo.value
        if isinstance(exc, KeyboardInterrupt):
            self.interrupted = str(exc) or "KeyboardInterrupt"
        else:
            self.interrupted = f"pytest.exit: {exc}"

    # -- the bake's post checks ----------------------------------------------------------------
    def _collected_here(self) -> None:
        """Under xdist the workers hold the run's items: the controller collects them itself,
        once, for the bake's post checks and blame's twins."""
        if POST_KEY not in self.config.stash and self.session is not None:
            self.session.perform_collect()

    def _run_post(self) -> PostResult:
        """The ``post`` checks, once, in this process, their reports kept from the session's
        (a bake interval is not a test of the run)."""
        self._collected_here()
        items = self.config.stash.get(POST_KEY, [])
        passed, failed = 0, []
        for item in items or []:
            reports = runtestprotocol(item, nextitem=None, log=False)
            if any(r.failed for r in reports):
                failed.append(item.nodeid)
            elif any(r.when == "call" and r.passed for r in reports):
                passed += 1
        return PostResult(passed=passed, failed=len(failed), failed_ids=tuple(failed))

    def _run_twin(self, nodeid: str) -> tuple[str, str] | None:
        """Blame: the failed check ``nodeid``'s twin on the other color, run once in this
        process, its reports kept from the session's. None when it has no twin."""
        self._collected_here()
        twin = self.config.stash.get(TWINS_KEY, {}).get(nodeid)
        if twin is None:
            return None
        reports = runtestprotocol(twin, nextitem=None, log=False)
        if any(r.failed for r in reports):
            return twin.nodeid, "failed"
        if any(r.when == "call" and r.passed for r in reports):
            return twin.nodeid, "passed"
        return twin.nodeid, "skipped"

    # -- finish ------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._restore_signals()
        run = self.run
        if self.report is None and run.target is not None:
            stopped = session.shouldstop  # -x/--maxfail set shouldfail: failures, not this
            facts = SessionFacts(
                exitstatus=int(exitstatus),
                interrupted=self.interrupted or (f"stopped: {stopped}" if stopped else None),
                collected=self.collected,
                finished=len(self.finished),
                narrowed=self.narrowed,
            )
            try:
                with DeferredSignals() as signals:
                    self.report = run.finish(facts, signals)
            finally:
                run.close()
            session.exitstatus = self.report.exit_code
        self._publish_metrics()
        if self.report is not None:
            self._write_reports(self.report)

    def _publish_metrics(self) -> None:
        """The gate's metrics, once: a failure is a note, never a change of the exit status."""
        self._collecting.close()
        if self._published:
            return
        self._published = True
        self.metrics.concluded(self.report, self.run.deployed)  # the finished run's
        secrets = self.run.secrets
        warnings = publish(self.run.settings, self.metrics, self.run.haproxies)
        self.notes += [secrets.redact(line) for line in warnings]

    @pytest.hookimpl
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._collecting.close()  # a session that never finished publishes nothing

    def _write_reports(self, report: GateReport) -> None:
        """verdict.json always; the gate's Allure results when Allure is on."""
        data = verdict(report)
        warning = write_verdict(self.run.settings.reports.verdict_file, data)
        if warning:
            self.notes.append(warning)
        alluredir = getattr(self.config.option, "allure_report_dir", None)
        if alluredir:
            from .report.allure import write_gate_results  # noqa: PLC0415 - the allure extra

            try:
                version: str | None = self.run.haproxies.version()
            except RuntimeApiError:
                version = None
            write_gate_results(self.run.settings, report, Path(alluredir), version)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = self.report
        if report is None:
            return
        terminalreporter.section("bluegreen gate")
        for number, line in enumerate((*report.lines, *self.notes)):
            prefix = f"bluegreen: {report.verdict_word}: " if number == 0 else "bluegreen: "
            terminalreporter.write_line(prefix + line)
        terminalreporter.write_line(f"bluegreen: exit status {int(report.exit_code)}")
