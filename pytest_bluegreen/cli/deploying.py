"""``bluegreen deploy`` and ``bluegreen check``: the seed's ``blue-green-deploy.sh`` and
``health-checks.sh``, by their own flags; a deploy without checks (``deploy_only``), which the
drill uses too."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from dataclasses import replace

import pytest

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.keys import METRICS_KEY
from pytest_bluegreen.report.metrics import RunMetrics
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.reading import live_color

from .inconfig import (
    DRY_NOTHING,
    UsageProblem,
    checked_color,
    in_config,
    progress,
    report_lines,
    run_checks,
)
from .switching import cmd_rollback, forced_switch

__all__ = ["cmd_check", "cmd_deploy", "deploy_only"]


def deploy_only(
    settings: Settings,
    color: str,
    tag: str,
    *,
    skip_backup: bool,
    metrics: RunMetrics | None = None,
) -> int:
    """The plugin's deploy step (lock, live-color guard, backup, up, wait healthy);
    ``metrics``: the command's, to which the deploy's duration is added."""
    run_settings = replace(settings.run, env=color, deploy=tag, skip_backup=skip_backup)
    secrets = settings.load_secrets()
    run = GateRun(replace(settings, run=run_settings), progress=progress, secrets=secrets)
    run.start()
    try:
        result = run.deploy()
    except BluegreenError as exc:
        prefix = "deploy failed: " if exc.exit_code == ExitCode.DEPLOY_FAILED else ""
        return report_lines([f"{prefix}{exc}"], exc.exit_code)
    finally:
        run.close()
    if metrics is not None:
        metrics.concluded(None, result)
    return report_lines(
        [f"deployed {color} {tag} in {result.seconds:.1f}s; no checks run"], ExitCode.OK
    )


def cmd_deploy(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.rollback:
        back = argparse.Namespace(
            **{**vars(args), "force": False, "ignore_veto": False, "check": False}
        )
        return cmd_rollback(back, extra)
    if not args.target_color:
        raise UsageProblem("deploy needs --target-color (or --rollback)")
    if sum((args.auto_switch, args.skip_switch, args.promote_later)) > 1:
        raise UsageProblem("--auto-switch, --skip-switch and --promote-later exclude each other")
    if args.promote_later and args.skip_tests:
        raise UsageProblem(
            "--promote-later records what the checks verified; not with --skip-tests"
        )

    def act(config: pytest.Config, settings: Settings) -> int:
        from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415

        color = checked_color(settings, args.target_color)
        tag = args.deployment_tag or TagsFile(settings.state.tags_file).tag_of(color)
        if not tag:
            raise UsageProblem(f"deploy needs --deployment-tag ({color} has no deployed tag yet)")
        # --skip-backup, else the skip_backup setting (BLUEGREEN_SKIP_BACKUP, the ini)
        skip_backup = args.skip_backup or settings.run.skip_backup
        if settings.run.dry_run:
            return deploy_dry_run(settings, color, tag, args, skip_backup=skip_backup)
        if args.skip_tests:
            # the seed's quick deploy: no checks; a switch then is forced (and recorded so)
            code = deploy_only(
                settings,
                color,
                tag,
                skip_backup=skip_backup,
                metrics=config.stash[METRICS_KEY],
            )
            if code == ExitCode.OK and args.auto_switch:
                return forced_switch(config, settings, color, rollback=False, ignore_veto=False)
            return code
        flags = [f"--env={color}", f"--deploy={tag}"]
        flags += ["--skip-backup"] if skip_backup else []
        flags += ["--switch"] if args.auto_switch else []
        flags += ["--switch=manual"] if args.promote_later else []
        return run_checks(args, settings, [*flags, "-m", "quick", *extra])

    return in_config(args, act)


def deploy_dry_run(
    settings: Settings, color: str, tag: str, args: argparse.Namespace, *, skip_backup: bool
) -> int:
    """What ``deploy`` would do; the deploy guard asked (HAProxy only), nothing changed."""
    from pytest_bluegreen.gate.deploy import DeployRefused, DeployStep  # noqa: PLC0415

    haproxies = settings.haproxies()
    try:
        DeployStep(settings, haproxies, progress).guard(color, tag)
    except DeployRefused as exc:
        return report_lines(
            [f"dry run: would refuse: {exc.first_line}", DRY_NOTHING], exc.exit_code
        )
    live = live_color(haproxies, settings.topology)
    compose = settings.compose
    if skip_backup:
        backup = "no backup first (skip_backup)"
    elif compose.backup_service is None or not compose.backup_command:
        backup = "no backup first: backup_service and backup_command are not both set"
    else:
        command = shlex.join(compose.backup_command)
        backup = f"a backup first: {command} in {compose.backup_service}"
    checks = "no checks" if args.skip_tests else f"{color}'s quick checks"
    if args.auto_switch:
        how = " (forced: no checks)" if args.skip_tests else " if they pass"
        then = f"switch to {color}{how}"
    elif args.promote_later:
        then = f"record a pending promotion of {color} for bluegreen promote"
    else:
        then = f"leave traffic on {live or 'the color that has it'}"
    line = f"dry run: would deploy {color} at {tag} ({backup}), run {checks}, then {then}"
    return report_lines([settings.load_secrets().redact(line), DRY_NOTHING], ExitCode.OK)


def cmd_check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        env = args.environment
        allowed = (*settings.topology.colors, "all", "shared")
        if env not in allowed:
            raise UsageProblem(f"unknown environment {env!r} (one of {', '.join(allowed)})")
        flags = [f"--env={env}"]
        if args.quick:
            flags += ["-m", "quick"]
        if args.verbose or os.environ.get("VERBOSE", "").lower() == "true":
            flags += ["-v", "-rA"]
        return run_checks(args, settings, [*flags, *extra])

    return in_config(args, act)
