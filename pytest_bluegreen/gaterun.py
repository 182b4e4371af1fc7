"""One gate run, start to finish: lock, target, decision, switch or return, history.

Used by the pytest plugin (on the xdist controller only) and by the ``bluegreen`` command, so
both take the same path. The decision itself is :func:`gate.decide`; the traffic moves in
:mod:`switch`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import state, switch
from .gate import EXIT_REFUSED, EXIT_SWITCH_REVERTED, Decision, Verdict, decide
from .haproxy import RuntimeApi, RuntimeApiError
from .load import LoadResult, run_load
from .outcomes import Outcomes
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .deploy import DeployResult

__all__ = ["DeployRefused", "GateHooks", "GateReport", "GateRun", "refused"]

EXIT_OK, EXIT_TESTS_FAILED, EXIT_NO_TESTS = 0, 1, 5


def _no_veto(plan: switch.SwitchPlan, decision: Decision) -> str | None:
    return None


def _ignore_result(result: switch.SwitchResult) -> None:
    return None


def _ignore_rollback(from_color: str | None, to_color: str, reason: str) -> None:
    return None


class DeployRefused(Exception):
    """--deploy onto the live color without --force-deploy."""


@dataclass
class GateHooks:
    before_switch: Callable[[switch.SwitchPlan, Decision], str | None] = _no_veto
    after_switch: Callable[[switch.SwitchResult], None] = _ignore_result
    after_rollback: Callable[[str | None, str, str], None] = _ignore_rollback


@dataclass
class GateReport:
    """What the gate did, for the terminal summary, the exit status and later reports."""

    decision: Decision | None
    exit_code: int
    lines: list[str] = field(default_factory=list)
    result: switch.SwitchResult | None = None
    traffic_on: str | None = None
    rolled_back: bool = False
    stat_before: str = ""  # HAProxy show stat around a switch, for the report
    stat_after: str = ""
    probe: dict[str, Any] | None = None  # the zero-downtime probe's counts, when one ran


class GateRun:
    def __init__(
        self,
        settings: Settings,
        hooks: GateHooks | None = None,
        api: RuntimeApi | None = None,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.hooks = hooks or GateHooks()
        self.api = api or RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
        self.lock = state.GateLock(settings.lock_file)
        self.target: str | None = settings.target
        self.outcomes = Outcomes()
        self.report: GateReport | None = None
        self.deployed: DeployResult | None = None
        self.forced = False  # a switch without checks (bluegreen switch-to --force)

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lock (unless a dry run) and settle the target.

        Raises state.LockHeld, RuntimeApiError (unreachable, not admin, unknown server), or
        SettingsError (a --rollback target that cannot be worked out or contradicts --env).
        """
        if not self.settings.dry_run:
            self.lock.acquire()
        try:
            # fail fast, before any check runs: HAProxy answers, at admin level, and knows
            # every server the settings name
            if not self.settings.dry_run:
                self.api.require_admin()
            self.api.server_states(switch.all_servers(self.settings))
            if self.settings.rollback:
                self.target = self._rollback_target()
        except BaseException:
            self.lock.release()
            raise

    def _rollback_target(self) -> str:
        live = switch.live_color(self.api, self.settings)
        if live is None:
            raise SettingsError(
                "bluegreen: --rollback: HAProxy shows no single live color to roll back from"
            )
        previous = self.settings.other(live)
        if self.settings.target is not None and self.settings.target != previous:
            raise SettingsError(
                f"bluegreen: --rollback returns traffic to {previous} ({live} is live), "
                f"but --env {self.settings.target} was given"
            )
        return previous

    def close(self) -> None:
        self.lock.release()

    # -- deploy ------------------------------------------------------------------------------
    def deploy(self, progress: Callable[[str], None]) -> DeployResult:
        """``--deploy TAG``: refuse the live color unless forced, then compose up at TAG.

        Raises DeployRefused (nothing changed) or DeployError.
        """
        settings, target, tag = self.settings, self.target, self.settings.deploy
        assert target is not None
        assert tag is not None
        live = switch.live_color(self.api, settings)
        serving = live == target and not switch.down_servers(self.api, settings, target)
        if serving and not settings.force_deploy:
            raise DeployRefused(
                f"refused: {target} is live; deploying {tag} over it would change what users get "
                "without a gate (--force-deploy to do it anyway)"
            )
        from .deploy import (  # noqa: PLC0415 - Docker clients load only to deploy
            ComposeDeployer,
            DeployError,
        )

        deployer = ComposeDeployer(settings, progress)
        self.deployed = deployer.deploy(target, tag, backup=not settings.skip_backup)
        # healthy for Docker is not yet UP for HAProxy (rise x inter): the checks would meet
        # HAProxy's 503 on the direct port. Wait, within what is left of deploy_timeout.
        deadline = time.monotonic() + max(1.0, settings.deploy_timeout - self.deployed.seconds)
        while down := switch.down_servers(self.api, settings, target):
            if time.monotonic() >= deadline:
                raise DeployError(f"{target} {tag} is healthy but HAProxy reports {down}")
            time.sleep(0.2)
        return self.deployed

    def _after_failed_gate(self, report: GateReport) -> None:
        """After --deploy, when the target did not become live: keep, tear down or restore it."""
        deployed = self.deployed
        if deployed is None or report.traffic_on == deployed.color:
            return
        from .deploy import ComposeDeployer, DeployError  # noqa: PLC0415 - see deploy()

        policy, color, previous = (
            self.settings.on_failed_gate,
            deployed.color,
            deployed.previous_tag,
        )
        try:
            if policy == "teardown":
                ComposeDeployer(self.settings).teardown(color)
                report.lines.append(f"{color} torn down (on_failed_gate = teardown)")
            elif policy == "restore" and previous:
                ComposeDeployer(self.settings).deploy(color, previous, backup=False)
                report.lines.append(
                    f"{color} restored to {previous}, its tag before this deploy "
                    "(on_failed_gate = restore)"
                )
            else:
                report.lines.append(
                    f"{color} {deployed.tag} kept running for debugging (on_failed_gate = {policy})"
                )
        except DeployError as exc:
            report.lines.append(f"warning: {str(exc).splitlines()[0]}")

    def switch_forced(self, target: str, reason: str, *, rollback: bool = False) -> GateReport:
        """Switch without running checks (an operator's ``--force``), recorded as forced.

        The target must still be UP in HAProxy and not live already; the switch takes the same
        drain / verify / revert path as the gate.
        """
        self.forced = True
        live = switch.live_color(self.api, self.settings)
        if live == target:
            decision = Decision(Verdict.NOOP, f"{target} is already live", target, live)
            return GateReport(decision, EXIT_REFUSED, [decision.reason], traffic_on=live)
        down = switch.down_servers(self.api, self.settings, target)
        if down:
            servers = ", ".join(f"{k} {v}" for k, v in sorted(down.items()))
            decision = Decision(
                Verdict.REFUSED, f"HAProxy does not report {target} UP: {servers}", target, live
            )
            return self.record(GateReport(decision, EXIT_REFUSED, [decision.reason]))
        decision = Decision(Verdict.SWITCH, reason, target, live)
        return self._switch(decision, rollback=rollback)

    # -- finish ------------------------------------------------------------------------------
    def finish(self, exitstatus: int) -> GateReport:
        assert self.target is not None, "finish() needs a target color"
        if exitstatus not in (EXIT_OK, EXIT_TESTS_FAILED, EXIT_NO_TESTS):
            self.report = GateReport(
                None, exitstatus, [f"session ended with status {exitstatus}: nothing changed"]
            )
        elif not (self.settings.switch or self.settings.rollback):
            self.report = self._deploy_only(self.target, exitstatus)
        else:
            # "no tests collected" is a session with no check for the target: inconclusive
            status = EXIT_OK if exitstatus == EXIT_NO_TESTS else exitstatus
            self.report = self._finish(self.target, status)
        if self.report.exit_code != 0:
            self._after_failed_gate(self.report)
        return self.report

    def _deploy_only(self, target: str, exitstatus: int) -> GateReport:
        counts = self.outcomes[target]
        verdict = "passed" if exitstatus == 0 and counts.passed else "did not pass"
        lines = [
            f"deployed {target} {self.settings.deploy}; its checks {verdict} "
            f"({counts.summary()}); no --switch: traffic unchanged"
        ]
        return GateReport(None, exitstatus, lines)

    def _finish(self, target: str, exitstatus: int) -> GateReport:
        settings = self.settings
        try:
            live = switch.live_color(self.api, settings)
            down = switch.down_servers(self.api, settings, target)
        except RuntimeApiError as exc:
            if exitstatus != 0:
                return GateReport(
                    None,
                    exitstatus,
                    [f"checks failed; HAProxy unreachable, nothing changed: {exc}"],
                )
            decision = Decision(Verdict.REFUSED, f"cannot read HAProxy: {exc}", target, None)
            return self.record(GateReport(decision, EXIT_REFUSED, [decision.reason]))

        decision = decide(
            target=target,
            live=live,
            exitstatus=exitstatus,
            outcomes=self.outcomes.as_dict(),
            target_down=down,
        )
        if decision.verdict is Verdict.FAILED:
            return self._after_failure(decision, exitstatus)
        if decision.verdict is not Verdict.SWITCH:
            return self.record(
                GateReport(decision, decision.exit_code, [decision.reason], traffic_on=live)
            )
        return self._switch(decision, rollback=self.settings.rollback)

    def _after_failure(self, decision: Decision, exitstatus: int) -> GateReport:
        """Checks failed: keep traffic where it is, or return it when the failing target is live."""
        target, live = decision.target, decision.live
        code = exitstatus
        if live != target or self.settings.rollback:
            where = live or "no color"
            return self.record(
                GateReport(
                    decision, code, [decision.reason, f"traffic stays on {where}"], None, live
                )
            )
        previous = self.settings.other(target)
        try:
            down = switch.down_servers(self.api, self.settings, previous)
        except RuntimeApiError as exc:
            down = {"Runtime API": str(exc)}
        if down:
            lines = [
                decision.reason,
                f"{target} is live and failing, but {previous} is not UP to take traffic back "
                f"({', '.join(f'{k} {v}' for k, v in down.items())}): traffic stays on {target}",
            ]
            return self.record(GateReport(decision, code, lines, None, live))
        back = Decision(Verdict.SWITCH, f"return traffic: {decision.reason}", previous, live)
        report = self._switch(back, rollback=True)
        report.exit_code = code if report.exit_code == 0 else report.exit_code
        report.decision = decision
        report.lines.insert(0, decision.reason)
        return report

    def _switch(self, decision: Decision, *, rollback: bool) -> GateReport:
        settings, target = self.settings, decision.target
        verb = "roll back" if rollback else "switch"
        try:
            plan = switch.plan(self.api, settings, target)
        except RuntimeApiError as exc:
            refused = Decision(Verdict.REFUSED, f"cannot {verb}: {exc}", target, decision.live)
            return self.record(GateReport(refused, EXIT_REFUSED, [refused.reason]))
        if settings.dry_run:
            lines = [
                f"dry run: would {verb} because {decision.reason}",
                *plan.describe(),
                "dry run: nothing changed",
            ]
            return GateReport(decision, decision.exit_code, lines, None, decision.live)
        veto = self.hooks.before_switch(plan, decision)
        if veto:
            vetoed = decision.vetoed(veto)
            return self.record(GateReport(vetoed, EXIT_REFUSED, [vetoed.reason], None, plan.source))
        stat_before = self._show_stat()
        probe = Probe(settings) if settings.probe_requests else None
        try:
            try:
                result = switch.apply(self.api, plan, settings, progress=self.progress)
            finally:
                probe_counts = probe.finish() if probe else None
        except switch.SwitchError as exc:
            failed = Decision(Verdict.REFUSED, str(exc), target, plan.source)
            report = GateReport(failed, EXIT_SWITCH_REVERTED, [str(exc)], None, plan.source)
            report.stat_before, report.stat_after = stat_before, self._show_stat()
            report.probe = probe_counts
            return self.record(report, outcome="reverted" if exc.reverted else "revert-failed")
        lines = [
            f"{'rolled back' if rollback else 'switched'} {plan.source or '(none)'} -> {target}: "
            f"{decision.reason}",
            f"verified through {settings.routed_api_url}{settings.verify_path}: first answer from "
            f"{target} {result.latency_ms:.1f} ms after the switch began"
            + (f", version {result.version}" if result.version else ""),
            *result.notes,
        ]
        if probe_counts is not None:
            lines.append(
                f"probe through {settings.routed_api_url}: {probe_counts['requests']} requests "
                f"during the switch, {probe_counts['failed']} failed"
            )
        report = GateReport(decision, 0, lines, result, target, rolled_back=rollback)
        report.stat_before, report.stat_after = stat_before, self._show_stat()
        report.probe = probe_counts
        self.record(report, outcome="rolled-back" if rollback else "switched")
        if rollback:
            self.hooks.after_rollback(plan.source, target, decision.reason)
        else:
            self.hooks.after_switch(result)
        return report

    def _show_stat(self) -> str:
        try:
            return self.api.execute("show stat")
        except RuntimeApiError as exc:
            return f"(show stat failed: {exc})"

    def record(
        self, report: GateReport, outcome: str | None = None, *, forced: bool = False
    ) -> GateReport:
        decision = report.decision
        if decision is None or self.settings.dry_run:
            return report
        tag = (
            self.settings.deploy
            or self.settings.deployment_tag
            or (report.result.version if report.result else None)
        )
        entry = state.HistoryEntry.now(
            from_color=decision.live,
            to_color=decision.target,
            tag=tag,
            outcome=outcome or decision.verdict.value,
            reason=decision.reason,
            forced=forced or self.forced,
        )
        try:
            state.append(self.settings.state_file, entry)
        except (OSError, state.StateFileError) as exc:
            report.lines.append(
                f"warning: history not written to {self.settings.state_file}: {exc}"
            )
        return report


class Probe:
    """A bounded load on the routed URL while traffic moves: the switch's own zero-downtime
    evidence (``probe_requests`` > 0). Stops when the switch ends, or by its own bounds."""

    def __init__(self, settings: Settings) -> None:
        self.stop = threading.Event()
        self.result: LoadResult | None = None
        url = settings.routed_api_url + settings.verify_path
        bound = settings.drain_timeout + settings.verify_timeout + 5

        def run() -> None:
            self.result = run_load(
                url,
                total=settings.probe_requests,
                duration=bound,
                concurrency=2,
                stop=self.stop,
                color_header=settings.color_header,
            )

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join(60)
        result = self.result
        if result is None:
            return {"requests": 0, "failed": 0, "colors": {}}
        return {
            "requests": result.count,
            "failed": len(result.failed),
            "colors": {str(k): v for k, v in result.colors().items()},
            "p99_ms": round(result.latency_ms(99), 2),
        }


def refused(reason: str, target: str | None) -> GateReport:
    """A gate that could not start (lock held, Runtime API down at start)."""
    decision = Decision(Verdict.REFUSED, reason, target or "?", None)
    return GateReport(decision, EXIT_REFUSED, [reason])
