"""``bluegreen switch-to``, ``rollback`` and ``recover``: traffic moved by the operator, with
the checks (a pytest child's gate) or forced through the gate's own path, and a cut-off switch
recovered."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.gate import aftercare
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.gateplugin import hooks_for
from pytest_bluegreen.keys import METRICS_KEY
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.record import faults, history
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.reading import live_color
from pytest_bluegreen.switch.recovery import recover

from .inconfig import (
    UsageProblem,
    checked_color,
    dry_flags,
    in_config,
    progress,
    report_lines,
    run_checks,
)

__all__ = ["check_ignore_veto", "cmd_recover", "cmd_rollback", "cmd_switch_to", "forced_switch"]


def forced_switch(
    config: pytest.Config,
    settings: Settings,
    target: str,
    *,
    rollback: bool,
    ignore_veto: bool,
    reason: str | None = None,
) -> int:
    """Switch without checks through the gate's own path: lock, journal, hooks, signals
    deferred, revert, history; then the old color's warm window, as after a gate's switch.
    Refused first, nothing changed, when the target may run a power drill's fault."""
    faults.require_none(settings.state.state_file, target, dry_run=False)
    secrets = settings.load_secrets()
    run = GateRun(
        settings,
        hooks_for(config),
        progress=progress,
        secrets=secrets,
    )
    run.start()
    try:
        verb = "rollback" if rollback else "switch-to"
        with DeferredSignals() as signals:
            report = run.switch_forced(
                target,
                reason or f"{verb} {target} forced by the operator; checks skipped",
                rollback=rollback,
                ignore_veto=ignore_veto,
                signals=signals,
            )
            metrics = config.stash.get(METRICS_KEY, None)
            if metrics is not None:
                metrics.concluded(report, None)
            for line in report.lines:
                progress(line)
            moved = report.outcome in (history.Outcome.SWITCHED, history.Outcome.ROLLED_BACK)
            if moved and report.result is not None and not settings.run.dry_run:
                plan = report.result.plan
                if plan.source is not None:  # said once known (stop waits the window out)
                    for line in run.keep_warm(plan.source, plan.target):
                        progress(secrets.redact(line))
    finally:
        run.close()
    return report.exit_code


def cmd_recover(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        to = checked_color(settings, args.to) if args.to else None
        report = recover(
            settings,
            to=to,
            secrets=settings.load_secrets(),
            dry_run=settings.run.dry_run,
            progress=progress,
        )
        return report_lines(report.lines, report.exit_code)

    return in_config(args, act)


def cmd_switch_to(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        target = checked_color(settings, args.color)
        if args.force:
            return forced_switch(
                config, settings, target, rollback=False, ignore_veto=args.ignore_veto
            )
        if live_color(settings.haproxies(), settings.topology) == target:
            return report_lines([f"{target} is already live; nothing to switch"], ExitCode.OK)
        flags = [f"--env={target}", "-m", "quick", "--switch", *dry_flags(settings)]
        return run_checks(args, settings, [*flags, *extra])

    check_ignore_veto(args)
    return in_config(args, act)


def check_ignore_veto(args: argparse.Namespace) -> None:
    if getattr(args, "ignore_veto", False) and not args.force:
        raise UsageProblem("--ignore-veto only goes with --force")


def cmd_rollback(args: argparse.Namespace, extra: Sequence[str]) -> int:
    check_ignore_veto(args)

    def act(config: pytest.Config, settings: Settings) -> int:
        live = live_color(settings.haproxies(), settings.topology)
        # the window of the last switch, while it holds; the old color must still run the
        # build that served (else the checks run, as with --check)
        try:
            window = None if args.check else aftercare.current_window(settings, live)
        except history.StateFileError as exc:  # a rollback is never blocked by it: checked
            progress(f"warning: {exc.first_line}; this rollback runs the checks")
            window = None
        if window is not None and not args.force:
            problem = aftercare.window_problem(settings, window)
            if problem is not None:
                progress(f"{problem}: the checks run (as with --check)")
                window = None
        if not args.force and window is None:
            flags = ["--rollback", "-m", "quick", *dry_flags(settings)]
            return run_checks(args, settings, [*flags, *extra])
        if live is None:
            raise UsageProblem("no single color is live; nothing to roll back from")
        target = settings.topology.other(live)
        if window is not None:
            reason = (
                f"rollback to {target} inside its warm window (until {aftercare.when(window.until)}"
                f"): checks skipped, {target} {window.old_tag or ''} served until the switch a "
                "moment ago"
            ).replace("  ", " ")
        else:
            reason = f"rollback {target} forced by the operator; checks skipped"
        code = forced_switch(
            config, settings, target, rollback=True, ignore_veto=args.ignore_veto, reason=reason
        )
        if code == ExitCode.OK and window is not None and not settings.run.dry_run:
            aftercare.end_window(settings, window)  # only once the rollback is done
        return code

    return in_config(args, act)
