"""The ``bluegreen`` command: argument parsing, and each command calling the plugin's pieces.

Settings and the user's hooks come from pytest itself: the command builds the same pytest
configuration a gated run of the check suite would (rootdir, ini, conftests, plugins,
environment, settings file), and stops before any session starts. So ``bluegreen`` and
``pytest --switch`` resolve the same settings, take the same lock and call the same hooks
(a change-freeze veto holds for ``--force`` too, unless ``--ignore-veto``, recorded).

Commands that verify run the check suite with pytest in a child process, so the plugin's gate
decides and switches. Exit codes are the plugin's (README, "Exit codes"); 4 is a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from . import aftercare, recording, state, switch
from .errors import BluegreenError, ExitCode, UsageError
from .gateplugin import hooks_for
from .gaterun import GateRun
from .plugin import settings_from_config
from .recovery import recover
from .settings import Settings
from .signals import DeferredSignals
from .state import LockHeld
from .status import Status, collect_status, export_state

EPILOG = """\
examples:
  bluegreen status                          live color, servers, tags, last switch
  bluegreen status --json
  bluegreen check --environment green --quick
  bluegreen deploy --target-color green --deployment-tag v1.1.0 --auto-switch
  bluegreen switch-to green                 quick checks of green, then switch
  bluegreen switch-to green --force         switch without checks (recorded as forced)
  bluegreen rollback                        back to the previous color, verified
  bluegreen export-state --output state.json
  bluegreen recover                         after a cut-off switch: prior states back
  bluegreen promote                         switch to what pytest --switch=manual verified
  bluegreen drill                           known-bad builds on the idle color: caught?

exit codes: 0 ok, 1 checks failed (status: inconsistent), 4 usage error, 6 inconclusive,
7 refused (nothing changed), 8 switch reverted, 9 deploy failed, 10 revert failed, 11 bake
failed (switched back); drill: 1 when a variant got another verdict than expected.
"""

Action = Callable[[pytest.Config, Settings], int]


class UsageProblem(UsageError):
    """Bad input on the command line: one line, exit 4, nothing changed."""


def _paint(text: str, code: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


# --- settings and hooks, from pytest's own configuration ------------------------------------


class _InConfig:
    """A plugin that runs one command with the fully set-up config, instead of a session."""

    def __init__(self, action: Action) -> None:
        self.action = action
        self.code: int | None = None
        self.error: BaseException | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        try:
            self.code = self.action(config, settings_from_config(config))
        except BaseException as exc:  # re-raised by in_config, outside pytest
            self.error = exc
            self.code = int(ExitCode.INTERNAL_ERROR)
        return self.code


def _pytest_args(args: argparse.Namespace) -> list[str]:
    """The check suite (its conftests hold the user's hooks) and the shared options."""
    given: list[str] = [args.checks] if Path(args.checks).exists() else []
    if args.config:
        given += ["--bluegreen-config", args.config]
    if args.runtime_api:
        given += ["--runtime-api", args.runtime_api]
    if args.allow_missing_instance:
        given += ["--allow-missing-instance", ",".join(args.allow_missing_instance)]
    return given


def in_config(args: argparse.Namespace, action: Action) -> int:
    runner = _InConfig(action)
    code = pytest.main([*_pytest_args(args), "-p", "no:cacheprovider"], plugins=[runner])
    if runner.error is not None:
        raise runner.error
    return int(code) if runner.code is None else runner.code


def _color(settings: Settings, name: str) -> str:
    colors = settings.topology.colors
    if name not in colors:
        raise UsageProblem(f"unknown color {name!r} (colors: {', '.join(colors)})")
    return name


# --- reading ---------------------------------------------------------------------------------


def _print_status(status: Status) -> None:
    live = status.live
    print(f"live color: {_paint(live, '1;32') if live else 'none (no single color takes traffic)'}")
    print(
        f"{'color':<8} {'role':<5} {'tag':<16} {'containers':<12} "
        f"{'server':<34} {'weight':>6} {'state':<6} health"
    )
    for color in status.colors:
        for server in color.servers:
            health = server.health
            shown = _paint(health, "32") if health.startswith("UP") else _paint(health, "31")
            print(
                f"{color.name:<8} {color.role:<5} {color.tag or '-':<16} {color.containers:<12} "
                f"{server.server:<34} {server.weight:>6} {server.state:<6} {shown}"
            )
    if len(status.instances) > 1:
        _print_instances(status)
    last = status.last_switch
    if last:
        forced = " FORCED" if last.forced else ""
        print(
            f"last switch: {last.time} {last.from_color} -> {last.to_color} "
            f"{last.outcome}{forced} (tag {last.tag or '-'})"
        )
    else:
        print("last switch: none recorded")
    if status.unfinished is not None:
        entry = status.unfinished
        steps = ", ".join(s["step"] for s in entry.steps) or "none"
        print(
            _paint(
                f"UNFINISHED SWITCH: {entry.source or '(none)'} -> {entry.target} started "
                f"{entry.started} (steps done: {steps}); run 'bluegreen recover'",
                "1;31",
            )
        )
    for problem in status.problems:
        print(_paint(f"INCONSISTENT: {problem}", "1;31"))
    if status.warm is not None:
        w = status.warm
        print(
            f"warm window: {w.old} kept warm for {w.remaining():.0f}s more (until "
            f"{aftercare.when(w.until)}), then {w.action}; bluegreen rollback needs no checks"
        )
    if status.pending is not None:
        p = status.pending
        state_word = "EXPIRED" if status.pending_expired else "pending"
        print(
            f"promotion {state_word}: {p.target} {p.tag or ''} verified {p.age():.0f}s ago "
            f"({p.checks_passed} check(s) passed); bluegreen promote | bluegreen abort"
        )


def _print_instances(status: Status) -> None:
    print(f"{'instance':<12} {'runtime api':<34} {'live':<8} servers (weight state)")
    for one in status.instances:
        if not one.reachable:
            print(f"{one.name:<12} {one.address:<34} {_paint('UNREACHABLE', '1;31')} {one.error}")
            continue
        weights = ", ".join(f"{s.split('/')[-1]} {w} {a}" for s, w, a in one.weights)
        print(f"{one.name:<12} {one.address:<34} {one.live or 'none':<8} {weights}")


def cmd_status(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def show(config: pytest.Config, settings: Settings) -> int:
        status = collect_status(settings)
        if args.json:
            print(json.dumps(status.to_json(), indent=2))
        else:
            _print_status(status)
        return 0 if status.healthy else 1

    return in_config(args, show)


def cmd_export_state(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def export(config: pytest.Config, settings: Settings) -> int:
        secrets = settings.load_secrets()
        # every value, in every encoding it may hold a secret in (a DSN, a history reason)
        text = secrets.redact(json.dumps(export_state(settings, secrets), indent=2)) + "\n"
        if args.output and args.output != "-":
            Path(args.output).write_text(text)
            print(f"bluegreen: state written to {args.output}")
        else:
            sys.stdout.write(text)
        return 0

    return in_config(args, export)


# --- acting ----------------------------------------------------------------------------------


def run_checks(args: argparse.Namespace, pytest_args: Sequence[str]) -> int:
    """The check suite under pytest, in a child process; its exit status is ours."""
    command = [sys.executable, "-m", "pytest", *_pytest_args(args), "-p", "no:cacheprovider"]
    command += list(pytest_args)
    print(_paint(f"bluegreen: running {' '.join(command[2:])}", "36"), flush=True)
    return subprocess.run(command, check=False).returncode


def _report(lines: Sequence[str], code: int) -> int:
    for line in lines:
        print(f"bluegreen: {line}")
    return code


def _progress(line: str) -> None:
    print(f"bluegreen: {line}", flush=True)


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
    deferred, revert, history."""
    secrets = settings.load_secrets()
    run = GateRun(settings, hooks_for(config), progress=_progress, secrets=secrets)
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
    finally:
        run.close()
    return _report(report.lines, report.exit_code)


def cmd_recover(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        to = _color(settings, args.to) if args.to else None
        report = recover(settings, to=to, secrets=settings.load_secrets())
        return _report(report.lines, report.exit_code)

    return in_config(args, act)


def deploy_only(settings: Settings, color: str, tag: str, *, skip_backup: bool) -> int:
    """The plugin's deploy step (lock, live-color guard, backup, up, wait healthy)."""
    run_settings = replace(settings.run, env=color, deploy=tag, skip_backup=skip_backup)
    secrets = settings.load_secrets()
    run = GateRun(replace(settings, run=run_settings), progress=_progress, secrets=secrets)
    run.start()
    try:
        result = run.deploy()
    except BluegreenError as exc:
        prefix = "deploy failed: " if exc.exit_code == ExitCode.DEPLOY_FAILED else ""
        return _report([f"{prefix}{exc}"], exc.exit_code)
    finally:
        run.close()
    return _report([f"deployed {color} {tag} in {result.seconds:.1f}s; no checks run"], 0)


def cmd_switch_to(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        target = _color(settings, args.color)
        if args.force:
            return forced_switch(
                config, settings, target, rollback=False, ignore_veto=args.ignore_veto
            )
        if switch.live_color(settings.haproxies(), settings.topology) == target:
            return _report([f"refused: {target} is already live; nothing to switch"], 7)
        flags = ["--env", target, "-m", "quick", "--switch"]
        flags += ["--dry-run"] if args.dry_run else []
        return run_checks(args, [*flags, *extra])

    _check_ignore_veto(args)
    return in_config(args, act)


def _check_ignore_veto(args: argparse.Namespace) -> None:
    if getattr(args, "ignore_veto", False) and not args.force:
        raise UsageProblem("--ignore-veto only goes with --force")


def cmd_rollback(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _check_ignore_veto(args)

    def act(config: pytest.Config, settings: Settings) -> int:
        live = switch.live_color(settings.haproxies(), settings.topology)
        window = state.load_warm(settings.state.state_file)
        warm = (
            window is not None and window.remaining() > 0 and window.new == live and not args.check
        )
        if not args.force and not warm:
            return run_checks(args, ["--rollback", "-m", "quick", *extra])
        if live is None:
            raise UsageProblem("no single color is live; nothing to roll back from")
        target = settings.topology.other(live)
        if warm:
            assert window is not None
            state.clear_record(settings.state.state_file, state.WARM)  # cancels what follows
            reason = (
                f"rollback to {target} inside its warm window (until {aftercare.when(window.until)}"
                f"): checks skipped, {target} served until the switch a moment ago"
            )
        else:
            reason = f"rollback {target} forced by the operator; checks skipped"
        return forced_switch(
            config, settings, target, rollback=True, ignore_veto=args.ignore_veto, reason=reason
        )

    return in_config(args, act)


def cmd_promote(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        state_file = settings.state.state_file
        record = state.load_pending(state_file)
        if record is None:
            raise aftercare.NothingPending("refused: no pending promotion (pytest --switch=manual)")
        problem = aftercare.pending_problem(settings, record)
        if problem is not None:
            warnings: list[str] = []
            if record.age() > settings.promotion.promotion_timeout:
                state.clear_record(state_file, state.PENDING)
                warnings = _history(
                    settings, record, state.Outcome.EXPIRED, problem, code=ExitCode.REFUSED
                )
            return _report([f"refused: {problem}", *warnings], ExitCode.REFUSED)
        age = record.age()
        if age > settings.promotion.max_verification_age:
            print(
                f"bluegreen: verified {age:.0f}s ago (max_verification_age "
                f"{settings.promotion.max_verification_age:g}s): the quick checks run again"
            )
            code = run_checks(args, ["--env", record.target, "-m", "quick", "--switch", *extra])
        else:
            reason = (
                f"promoted {record.target} {record.tag or ''}: verified "
                f"{age:.0f}s ago ({record.checks_passed} check(s) passed)"
            )
            code = forced_switch(
                config, settings, record.target, rollback=False, ignore_veto=False, reason=reason
            )
        if code == 0:
            state.clear_record(state_file, state.PENDING)
        return code

    return in_config(args, act)


def cmd_drill(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        from .drill import drill_table, run_variants  # noqa: PLC0415
        from .engines.compose import TagsFile  # noqa: PLC0415

        variants = dict(settings.drill.variants)
        if args.only:
            unknown = [tag for tag in args.only if tag not in variants]
            if unknown:
                raise UsageProblem(f"not a drill variant: {', '.join(unknown)} ([drill] table)")
            variants = {tag: variants[tag] for tag in args.only}
        if not variants:
            raise UsageProblem('no drill variants: add a [drill] table ("TAG" = "failed")')
        live = switch.live_color(settings.haproxies(), settings.topology)
        if live is None:
            raise UsageProblem("no single color is live: the drill needs an idle color")
        idle = settings.topology.other(live)
        before = TagsFile(settings.state.tags_file).tag_of(idle)
        markers = settings.drill.drill_markers

        logs = settings.reports.verdict_file.parent / "drill"
        logs.mkdir(parents=True, exist_ok=True)

        def gate(tag: str) -> tuple[int, Path]:
            """The gate on the variant, dry run; its output into reports/drill/TAG.log."""
            flags = ["--env", idle, "-m", markers, "--switch", "--dry-run"]
            command = [
                sys.executable,
                "-m",
                "pytest",
                *_pytest_args(args),
                "-p",
                "no:cacheprovider",
            ]
            command += [*flags, "--deployment-tag", tag, *extra]
            log = logs / f"{tag}.log"
            with log.open("w") as out:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
            _progress(f"drill: {tag}: the gate's output is in {log}")
            return code.returncode, settings.reports.verdict_file

        try:
            rows = run_variants(
                variants,
                idle,
                deploy=lambda tag: deploy_only(settings, idle, tag, skip_backup=True),
                gate=gate,
                progress=_progress,
            )
        finally:
            if before is not None:
                _progress(f"drill: {idle} back to {before}")
                deploy_only(settings, idle, before, skip_backup=True)
        for line in drill_table(rows):
            print(line)
        return 0 if all(row.ok for row in rows) else ExitCode.CHECKS_FAILED

    return in_config(args, act)


def cmd_abort(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        record = state.load_pending(settings.state.state_file)
        if record is None:
            raise aftercare.NothingPending("refused: no pending promotion to abort")
        state.clear_record(settings.state.state_file, state.PENDING)
        reason = f"the pending promotion of {record.target} {record.tag or ''} was discarded"
        warnings = _history(settings, record, state.Outcome.ABORTED, reason, code=0)
        return _report([reason + "; traffic unchanged", *warnings], 0)

    return in_config(args, act)


def _history(
    settings: Settings,
    record: state.PendingPromotion,
    outcome: state.Outcome,
    reason: str,
    *,
    code: int,
) -> list[str]:
    """A pending promotion's end (aborted, expired), recorded and notified; the warnings."""
    entry = state.HistoryEntry.now(
        from_color=record.source,
        to_color=record.target,
        tag=record.tag,
        outcome=outcome,
        reason=reason,
    )
    return recording.record(settings, entry, secrets=settings.load_secrets(), exit_code=code)


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
        from .engines.compose import TagsFile  # noqa: PLC0415

        color = _color(settings, args.target_color)
        tag = args.deployment_tag or TagsFile(settings.state.tags_file).tag_of(color)
        if not tag:
            raise UsageProblem(f"deploy needs --deployment-tag ({color} has no deployed tag yet)")
        if args.skip_tests:
            # the seed's quick deploy: no checks; a switch then is forced (and recorded so)
            code = deploy_only(settings, color, tag, skip_backup=args.skip_backup)
            if code == 0 and args.auto_switch:
                return forced_switch(config, settings, color, rollback=False, ignore_veto=False)
            return code
        flags = ["--env", color, "--deploy", tag]
        flags += ["--skip-backup"] if args.skip_backup else []
        flags += ["--switch"] if args.auto_switch else []
        flags += ["--switch=manual"] if args.promote_later else []
        return run_checks(args, [*flags, "-m", "quick", *extra])

    return in_config(args, act)


def cmd_check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        env = args.environment
        allowed = (*settings.topology.colors, "all", "shared")
        if env not in allowed:
            raise UsageProblem(f"unknown environment {env!r} (one of {', '.join(allowed)})")
        flags = ["--env", env]
        if args.quick:
            flags += ["-m", "quick"]
        if args.verbose or os.environ.get("VERBOSE", "").lower() == "true":
            flags += ["-v", "-rA"]
        return run_checks(args, [*flags, *extra])

    return in_config(args, act)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bluegreen",
        description="Gate, switch and inspect blue/green deployments behind HAProxy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="settings file (default: bluegreen.toml)")
    parser.add_argument("--runtime-api", help="HAProxy Runtime API: socket path or host:port")
    parser.add_argument("--checks", default="checks", help="the check suite (default: checks)")
    parser.add_argument(
        "--allow-missing-instance",
        action="append",
        metavar="NAME",
        help="switch the other HAProxy instances when NAME does not answer; NAME is recorded "
        "to be brought in line when it returns (repeatable)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    status = add(
        "status", "live color, servers, tags, containers, last switch", "bluegreen status --json"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)

    to = add(
        "switch-to",
        "run COLOR's quick checks, then switch traffic to it",
        "bluegreen switch-to green",
    )
    to.add_argument("color")
    to.add_argument("--force", action="store_true", help="skip the checks (recorded as forced)")
    to.add_argument(
        "--ignore-veto",
        action="store_true",
        help="with --force: switch even if a before_switch hook vetoes (recorded)",
    )
    to.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    to.set_defaults(handler=cmd_switch_to)

    back = add(
        "rollback",
        "return traffic to the previous color, verified (inside its warm window: at once)",
        "bluegreen rollback",
    )
    back.add_argument("--force", action="store_true", help="skip the checks (recorded as forced)")
    back.add_argument(
        "--check",
        action="store_true",
        help="run the checks even inside the old color's warm window",
    )
    back.add_argument(
        "--ignore-veto",
        action="store_true",
        help="with --force: roll back even if a before_switch hook vetoes (recorded)",
    )
    back.set_defaults(handler=cmd_rollback)

    promote = add(
        "promote",
        "switch to the pending promotion (pytest --switch=manual), re-verified when stale",
        "bluegreen promote",
    )
    promote.set_defaults(handler=cmd_promote)

    abort = add("abort", "discard the pending promotion; traffic unchanged", "bluegreen abort")
    abort.set_defaults(handler=cmd_abort)

    drill = add(
        "drill",
        "deploy the [drill] known-bad variants to the idle color, gate each (dry run), score",
        "bluegreen drill            # or: bluegreen drill --only v1.4.0-slow",
    )
    drill.add_argument("--only", action="append", help="run this variant only (repeatable)")
    drill.set_defaults(handler=cmd_drill)

    rec = add(
        "recover",
        "after a switch was cut off (SIGKILL, power loss): restore HAProxy's prior states",
        "bluegreen recover            # or: bluegreen recover --to blue",
    )
    rec.add_argument("--to", help="make this color live instead of the recorded prior states")
    rec.set_defaults(handler=cmd_recover)

    export = add(
        "export-state",
        "the full state as JSON, secrets redacted",
        "bluegreen export-state --output debug-state.json",
    )
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    export.set_defaults(handler=cmd_export_state)

    deploy = add(
        "deploy",
        "deploy a color at a tag, verify, optionally switch",
        "bluegreen deploy --target-color green --deployment-tag v1.1.0 --auto-switch",
    )
    deploy.add_argument("--target-color")
    deploy.add_argument("--deployment-tag")
    deploy.add_argument("--auto-switch", action="store_true", help="switch when the checks pass")
    deploy.add_argument("--skip-tests", action="store_true", help="deploy without checks")
    deploy.add_argument("--skip-backup", action="store_true", help="no backup first")
    deploy.add_argument("--skip-switch", action="store_true", help="never switch traffic")
    deploy.add_argument(
        "--promote-later",
        action="store_true",
        help="verify now, record a pending promotion for bluegreen promote; switch nothing",
    )
    deploy.add_argument("--rollback", action="store_true", help="roll back instead")
    deploy.set_defaults(handler=cmd_deploy)

    check = add(
        "check",
        "run the check suite for an environment",
        "bluegreen check --environment green --quick",
    )
    check.add_argument("--environment", required=True, help="blue|green|all|shared")
    check.add_argument("--quick", action="store_true", help="only the quick checks")
    check.add_argument("--verbose", action="store_true", help="verbose pytest output")
    check.set_defaults(handler=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in {
        "check",
        "switch-to",
        "deploy",
        "rollback",
        "promote",
        "drill",
    }:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and extra[0] == "--":
        extra = extra[1:]
    try:
        code: int = args.handler(args, extra)
    except BluegreenError as exc:
        word = "refused" if isinstance(exc, LockHeld) else "error"
        message = str(exc).removeprefix("bluegreen: ")
        print(f"bluegreen: {word}: {message}", file=sys.stderr)
        return int(exc.exit_code)
    return code
