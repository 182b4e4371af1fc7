"""The ``bluegreen`` command: argument parsing, and each command calling the plugin's pieces.

Settings and the user's hooks come from pytest itself: the command builds the same pytest
configuration a gated run of the check suite would (rootdir, ini, conftests, plugins,
environment, settings file), and stops before any session starts. So ``bluegreen`` and
``pytest --switch`` resolve the same settings, take the same lock and call the same hooks
(a change-freeze veto holds for ``--force`` too, unless ``--ignore-veto``, recorded).

Commands that verify run the check suite with pytest in a child process, so the plugin's gate
decides and switches. Exit codes are the plugin's (docs/exit-codes.md); 4 is a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import pytest

from pytest_bluegreen.errors import BluegreenError, ExitCode, UsageError
from pytest_bluegreen.gate import aftercare
from pytest_bluegreen.gate.run import GateRun
from pytest_bluegreen.gateplugin import hooks_for
from pytest_bluegreen.haproxy.lock import HaproxyLock, LockHeld
from pytest_bluegreen.haproxy.runtime import RuntimeApiError
from pytest_bluegreen.keys import METRICS_KEY
from pytest_bluegreen.plugin import settings_from_config
from pytest_bluegreen.process.child import run_child
from pytest_bluegreen.process.closedpipe import quiet_closed_pipes
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.record import recording, state
from pytest_bluegreen.report.metrics import RunMetrics, publish
from pytest_bluegreen.report.status import collect_export, collect_status
from pytest_bluegreen.report.statusview import export_document, status_document, status_lines
from pytest_bluegreen.settings import Settings, SettingsError, resolve
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import read_journal
from pytest_bluegreen.switch.recovery import recover

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
  bluegreen init --haproxy-config /etc/haproxy/haproxy.cfg   bluegreen.toml + checks/ from it

every command that changes something takes --dry-run: it says what it would do and changes
nothing (HAProxy, the history, the journal, the warm-window and pending-promotion records,
containers).

exit codes: 0 ok (or nothing to do: the target is already live), 1 checks failed (status:
inconsistent), 2 interrupted, 4 usage error (a bad argument too), 6 inconclusive, 7 refused
(nothing changed), 8 switch reverted, 9 deploy failed, 10 revert failed, 11 bake failed
(switched back); drill: 1 when a variant got another verdict than expected.
"""

Action = Callable[[pytest.Config, Settings], int]


class UsageProblem(UsageError):
    """Bad input on the command line: one line, exit 4, nothing changed."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (an unknown option or command, a missing argument) are usage
    errors like every other: one line, exit 4 (argparse's own 2 is "interrupted" here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE_ERROR, f"{self.prog}: error: {message} ({self.prog} --help)\n")


def _paint(text: str, code: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


# --- settings and hooks, from pytest's own configuration ------------------------------------


class _InConfig:
    """A plugin that runs one command with the fully set-up config, instead of a session."""

    def __init__(self, action: Action, *, dry_run: bool = False) -> None:
        self.action = action
        self.dry_run = dry_run
        self.code: int | None = None
        self.error: BaseException | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        try:
            settings = settings_from_config(config)
            if settings.config_file is None:
                raise UsageProblem(_no_settings_file(config))
            if self.dry_run:  # nothing locked, journaled, recorded or published
                settings = replace(settings, run=replace(settings.run, dry_run=True))
            self.code = self._counted(config, settings)
        except BaseException as exc:  # re-raised by in_config, outside pytest
            self.error = exc
            self.code = int(ExitCode.INTERNAL_ERROR)
        return self.code

    def _counted(self, config: pytest.Config, settings: Settings) -> int:
        """The action, its history entries counted in the gate's metrics and published after
        it (a pytest child it runs publishes its own); a failure to publish is a warning."""
        metrics = config.stash[METRICS_KEY] = RunMetrics()
        try:
            with metrics.collecting():
                return self.action(config, settings)
        finally:
            warnings = publish(settings, metrics)
            if warnings:
                secrets = settings.load_secrets()
                for line in warnings:
                    print(f"bluegreen: {secrets.redact(line)}", flush=True)


def _no_settings_file(config: pytest.Config) -> str:
    here = config.invocation_params.dir
    return (
        f"no settings file: no bluegreen.toml (nor [tool.bluegreen] in a pyproject.toml) in "
        f"{here} or a folder above it; run bluegreen where the deployment's settings are, "
        "or give --config FILE (bluegreen init writes one)"
    )


def _path_word(path: str) -> str:
    """A path as one argument pytest cannot read as an option (``-x`` -> ``./-x``)."""
    return f"./{path}" if path.startswith("-") else path


def _pytest_args(args: argparse.Namespace, settings: Settings | None = None) -> list[str]:
    """The check suite (its conftests hold the user's hooks) and the shared options, each
    ``--opt=value``: pytest picks its rootdir before it knows our options, and a separate
    value that names a path (a socket, a file) would count there as a test path. With
    ``settings``, the settings file they were read from, so a child reads the same one."""
    suite = args.checks if args.checks is not None else "checks"
    given: list[str] = [_path_word(suite)] if Path(suite).exists() else []
    config = settings.config_file if settings is not None else None
    if config is not None:
        given.append(f"--bluegreen-config={config}")
    elif args.config:
        given.append(f"--bluegreen-config={args.config}")
    if args.runtime_api:
        given.append(f"--runtime-api={args.runtime_api}")
    if args.allow_missing_instance:
        given.append(f"--allow-missing-instance={','.join(args.allow_missing_instance)}")
    return given


def in_config(args: argparse.Namespace, action: Action) -> int:
    runner = _InConfig(action, dry_run=getattr(args, "dry_run", False))
    code = pytest.main(
        [*_pytest_args(args), "-p", "no:cacheprovider", "--assert=plain"], plugins=[runner]
    )
    if runner.error is not None:
        raise runner.error
    return int(code) if runner.code is None else runner.code


def _color(settings: Settings, name: str) -> str:
    colors = settings.topology.colors
    if name not in colors:
        raise UsageProblem(f"unknown color {name!r} (colors: {', '.join(colors)})")
    return name


# --- reading ---------------------------------------------------------------------------------


def _json(document: object) -> str:
    return json.dumps(document, indent=2) + "\n"


def cmd_status(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def show(config: pytest.Config, settings: Settings) -> int:
        status = collect_status(settings)
        if args.json:
            text = _json(status_document(status))
        else:
            text = "\n".join(status_lines(status, _paint)) + "\n"
        # a history reason or an instance's error may quote a DSN: every secret value goes
        sys.stdout.write(settings.load_secrets().redact(text))
        return 0 if status.healthy else 1

    return in_config(args, show)


def cmd_export_state(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def export(config: pytest.Config, settings: Settings) -> int:
        secrets = settings.load_secrets()
        # every value, in every encoding it may hold a secret in (a DSN, a history reason)
        text = secrets.redact(_json(export_document(collect_export(settings, secrets))))
        if args.output and args.output != "-":
            Path(args.output).write_text(text)
            print(f"bluegreen: state written to {args.output}")
        else:
            sys.stdout.write(text)
        return 0

    return in_config(args, export)


# --- acting ----------------------------------------------------------------------------------


def run_checks(args: argparse.Namespace, settings: Settings, pytest_args: Sequence[str]) -> int:
    """The check suite under pytest, in a child process; its exit status is ours. The child
    drops its output too when our reader goes away, and runs its gate to the end. A child
    that died of a signal while a switch was under way (its journal still open) ends as a
    failed revert would: exit 10, ``bluegreen recover``."""
    if args.checks is not None and not Path(args.checks).exists():
        raise UsageProblem(f"the check suite {args.checks} does not exist (--checks)")
    given = [*_pytest_args(args, settings), "-p", "no:cacheprovider", *pytest_args]
    print(_paint(f"bluegreen: running pytest {' '.join(given)}", "36"), flush=True)
    command = [sys.executable, "-m", "pytest_bluegreen.process.closedpipe", *given]
    was_open = _journal_open(settings)  # then the child's gate refuses it, as it should
    code = run_child(command)
    if code not in (0, ExitCode.REVERT_FAILED) and not was_open and _journal_open(settings):
        print(
            "bluegreen: the check suite's gate ended during a switch (its journal is open): "
            "HAProxy may be half-switched; see bluegreen status, then bluegreen recover",
            file=sys.stderr,
            flush=True,
        )
        return int(ExitCode.REVERT_FAILED)
    return code


def _journal_open(settings: Settings) -> bool:
    if settings.run.dry_run:
        return False
    try:
        entry = read_journal(settings.state.journal_file)
    except (BluegreenError, OSError, ValueError):
        return False  # status and recover say what is wrong with it
    return entry is not None and entry.open


DRY_NOTHING = "dry run: nothing changed"


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
    deferred, revert, history; then the old color's warm window, as after a gate's switch."""
    secrets = settings.load_secrets()
    run = GateRun(
        settings,
        hooks_for(config),
        progress=_progress,
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
                _progress(line)
            moved = report.outcome in (state.Outcome.SWITCHED, state.Outcome.ROLLED_BACK)
            if moved and report.result is not None and not settings.run.dry_run:
                plan = report.result.plan
                if plan.source is not None:  # said once known (stop waits the window out)
                    for line in run.keep_warm(plan.source, plan.target):
                        _progress(secrets.redact(line))
    finally:
        run.close()
    return report.exit_code


def cmd_recover(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        to = _color(settings, args.to) if args.to else None
        report = recover(
            settings,
            to=to,
            secrets=settings.load_secrets(),
            dry_run=settings.run.dry_run,
            progress=_progress,
        )
        return _report(report.lines, report.exit_code)

    return in_config(args, act)


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
    run = GateRun(replace(settings, run=run_settings), progress=_progress, secrets=secrets)
    run.start()
    try:
        result = run.deploy()
    except BluegreenError as exc:
        prefix = "deploy failed: " if exc.exit_code == ExitCode.DEPLOY_FAILED else ""
        return _report([f"{prefix}{exc}"], exc.exit_code)
    finally:
        run.close()
    if metrics is not None:
        metrics.concluded(None, result)
    return _report([f"deployed {color} {tag} in {result.seconds:.1f}s; no checks run"], 0)


def cmd_switch_to(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        target = _color(settings, args.color)
        if args.force:
            return forced_switch(
                config, settings, target, rollback=False, ignore_veto=args.ignore_veto
            )
        if switch.live_color(settings.haproxies(), settings.topology) == target:
            return _report([f"{target} is already live; nothing to switch"], ExitCode.OK)
        flags = [f"--env={target}", "-m", "quick", "--switch", *_dry(settings)]
        return run_checks(args, settings, [*flags, *extra])

    _check_ignore_veto(args)
    return in_config(args, act)


def _dry(settings: Settings) -> list[str]:
    """The child gate's --dry-run, when this command is one."""
    return ["--dry-run"] if settings.run.dry_run else []


def _check_ignore_veto(args: argparse.Namespace) -> None:
    if getattr(args, "ignore_veto", False) and not args.force:
        raise UsageProblem("--ignore-veto only goes with --force")


def cmd_rollback(args: argparse.Namespace, extra: Sequence[str]) -> int:
    _check_ignore_veto(args)

    def act(config: pytest.Config, settings: Settings) -> int:
        live = switch.live_color(settings.haproxies(), settings.topology)
        # the window of the last switch, while it holds; the old color must still run the
        # build that served (else the checks run, as with --check)
        try:
            window = None if args.check else aftercare.current_window(settings, live)
        except state.StateFileError as exc:  # a rollback is never blocked by it: checked
            _progress(f"warning: {exc.first_line}; this rollback runs the checks")
            window = None
        if window is not None and not args.force:
            problem = aftercare.window_problem(settings, window)
            if problem is not None:
                _progress(f"{problem}: the checks run (as with --check)")
                window = None
        if not args.force and window is None:
            flags = ["--rollback", "-m", "quick", *_dry(settings)]
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
        if code == 0 and window is not None and not settings.run.dry_run:
            aftercare.end_window(settings, window)  # only once the rollback is done
        return code

    return in_config(args, act)


def cmd_promote(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        state_file = settings.state.state_file
        record = state.load_pending(state_file)
        if record is None:
            raise aftercare.NothingPending("refused: no pending promotion (pytest --switch=manual)")
        found = aftercare.untied(settings, record.target, record.image)
        problem = aftercare.pending_problem(settings, record, now_untied=found)
        if problem is not None and settings.run.dry_run:
            return _report([f"dry run: would refuse: {problem}", DRY_NOTHING], ExitCode.REFUSED)
        if problem is not None:
            warnings: list[str] = []
            if record.age() > settings.promotion.promotion_timeout:
                warnings = _end_pending(settings, record, state.Outcome.EXPIRED, problem)
            return _report([f"refused: {problem}", *warnings], ExitCode.REFUSED)
        recheck = aftercare.recheck_reason(settings, record, now_untied=found)
        if recheck is not None:
            # nothing switches on a verification that cannot be tied to what runs now
            _progress(f"{recheck}: the quick checks run again")
            flags = [f"--env={record.target}", "-m", "quick", "--switch", *_dry(settings)]
            code = run_checks(args, settings, [*flags, *extra])
        else:
            reason = (
                f"promoted {record.target} {record.tag or ''}: verified "
                f"{record.age():.0f}s ago ({record.checks_passed} check(s) passed), the same "
                "image runs"
            )
            code = forced_switch(
                config, settings, record.target, rollback=False, ignore_veto=False, reason=reason
            )
        if code == 0 and not settings.run.dry_run:
            for line in _end_pending(settings, record, None, "promoted"):
                _progress(line)
        return code

    return in_config(args, act)


def _gate_lock(settings: Settings) -> HaproxyLock:
    """The gate's lock on these HAProxy instances: a command that ends a pending promotion
    holds it too, so that no gate writes the record or the history at the same time."""
    return HaproxyLock(settings.state.lock_dir, settings.haproxies())


def _end_pending(
    settings: Settings,
    record: state.PendingPromotion,
    outcome: state.Outcome | None,
    reason: str,
) -> list[str]:
    """Under the gate lock: remove the pending promotion if it is still ``record`` (not one a
    gate wrote since), and record ``outcome`` (None: promoted, the switch recorded it). The
    warning lines; a lock held elsewhere leaves the record in place, said in one."""
    state_file = settings.state.state_file
    try:
        with _gate_lock(settings).hold():
            if state.load_pending(state_file) != record:
                return []
            if outcome is not None:  # the history that records its end, before it goes
                state.check_history(state_file, "state_file", create=True)
            state.clear_record(state_file, state.PENDING)
            if outcome is None:
                return []
            return _history(settings, record, outcome, reason, code=ExitCode.REFUSED)
    except BluegreenError as exc:
        return [f"warning: the pending promotion in {state_file} was left: {exc.first_line}"]
    except state.StateFileError as exc:
        return [f"warning: the pending promotion in {state_file} was left: {exc}"]


def cmd_drill(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415

        from .drill import drill_table, run_variants  # noqa: PLC0415

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
        if settings.run.dry_run:
            lines = [
                f"dry run: would deploy each variant to {idle} and gate it (a dry run of "
                f"-m {markers!r}), then {idle} back to {before or 'nothing (no tag known)'}:",
                *(f"  {tag}: expected {verdict}" for tag, verdict in variants.items()),
                DRY_NOTHING,
            ]
            return _report(lines, 0)

        logs = settings.reports.verdict_file.parent / "drill"
        logs.mkdir(parents=True, exist_ok=True)

        def gate(tag: str) -> tuple[int, Path]:
            """The gate on the variant, dry run; its output into reports/drill/TAG.log."""
            flags = [f"--env={idle}", "-m", markers, "--switch", "--dry-run"]
            command = [
                sys.executable,
                "-m",
                "pytest",
                *_pytest_args(args, settings),
                "-p",
                "no:cacheprovider",
            ]
            command += [*flags, f"--deployment-tag={tag}", *extra]
            log = logs / f"{tag}.log"
            with log.open("w") as out:
                code = run_child(command, stdout=out, stderr=subprocess.STDOUT)
            _progress(f"drill: {tag}: the gate's output is in {log}")
            return code, settings.reports.verdict_file

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
        state_file = settings.state.state_file
        if settings.run.dry_run:  # no lock, nothing written
            try:
                record = state.load_pending(state_file)
            except state.RecordError as exc:
                line = f"dry run: would discard the unreadable pending promotion in {exc.path}"
                return _report([f"{line} ({exc.why})", DRY_NOTHING], 0)
            if record is None:
                raise aftercare.NothingPending("refused: no pending promotion to abort")
            line = f"dry run: would discard the pending promotion of {record.target}"
            return _report([f"{line} {record.tag or ''}".rstrip(), DRY_NOTHING], 0)
        with _gate_lock(settings).hold():
            # the history that records the abort, before the record goes (one line, exit 4)
            state.check_history(state_file, "state_file", create=True)
            try:
                record = state.load_pending(state_file)
            except state.RecordError as exc:  # abort is how an unreadable one goes
                state.clear_record(state_file, state.PENDING)
                reason = (
                    f"the pending promotion in {exc.path} could not be read ({exc.why}) and "
                    "was discarded"
                )
                entry = state.HistoryEntry.now(
                    from_color=None,
                    to_color="?",
                    tag=None,
                    outcome=state.Outcome.ABORTED,
                    reason=reason,
                )
                warnings = recording.record(settings, entry, secrets=settings.load_secrets())
                return _report([reason + "; traffic unchanged", *warnings], 0)
            if record is None:
                raise aftercare.NothingPending("refused: no pending promotion to abort")
            state.clear_record(state_file, state.PENDING)
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
        from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415

        color = _color(settings, args.target_color)
        tag = args.deployment_tag or TagsFile(settings.state.tags_file).tag_of(color)
        if not tag:
            raise UsageProblem(f"deploy needs --deployment-tag ({color} has no deployed tag yet)")
        # --skip-backup, else the skip_backup setting (BLUEGREEN_SKIP_BACKUP, the ini)
        skip_backup = args.skip_backup or settings.run.skip_backup
        if settings.run.dry_run:
            return _deploy_dry_run(settings, color, tag, args, skip_backup=skip_backup)
        if args.skip_tests:
            # the seed's quick deploy: no checks; a switch then is forced (and recorded so)
            code = deploy_only(
                settings,
                color,
                tag,
                skip_backup=skip_backup,
                metrics=config.stash[METRICS_KEY],
            )
            if code == 0 and args.auto_switch:
                return forced_switch(config, settings, color, rollback=False, ignore_veto=False)
            return code
        flags = [f"--env={color}", f"--deploy={tag}"]
        flags += ["--skip-backup"] if skip_backup else []
        flags += ["--switch"] if args.auto_switch else []
        flags += ["--switch=manual"] if args.promote_later else []
        return run_checks(args, settings, [*flags, "-m", "quick", *extra])

    return in_config(args, act)


def _deploy_dry_run(
    settings: Settings, color: str, tag: str, args: argparse.Namespace, *, skip_backup: bool
) -> int:
    """What ``deploy`` would do; the deploy guard asked (HAProxy only), nothing changed."""
    from pytest_bluegreen.gate.deploy import DeployRefused, DeployStep  # noqa: PLC0415

    api = settings.haproxies()
    try:
        DeployStep(settings, api, _progress).guard(color, tag)
    except DeployRefused as exc:
        return _report([f"dry run: would refuse: {exc.first_line}", DRY_NOTHING], exc.exit_code)
    live = switch.live_color(api, settings.topology)
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
    return _report([settings.load_secrets().redact(line), DRY_NOTHING], 0)


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


def cmd_init(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """bluegreen.toml and a starter checks/ from an HAProxy configuration, then a dry run."""
    from pytest_bluegreen.haproxy.config import parse_config  # noqa: PLC0415
    from pytest_bluegreen.init import scaffold  # noqa: PLC0415 - only init reads HAProxy configurations

    source = Path(args.haproxy_config)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise scaffold.InitError(f"cannot read {source}: {exc}") from None
    config = parse_config(text, os.environ)
    maps = {
        name: _read_text(source.parent / name)
        for proxy in config.proxies
        for rule in proxy.use_backends
        for name in rule.map_files
    }
    colors = args.colors.split(",") if args.colors else None
    plan = scaffold.plan(config, source=str(source.resolve()), colors=colors, maps=maps)
    directory = Path(args.dir)
    files = {scaffold.SETTINGS_FILE: scaffold.render_settings(plan), **scaffold.starter_files()}
    written = scaffold.write(directory, files)
    names = ", ".join(str(p.relative_to(directory)) for p in written)
    _progress(f"wrote {names} in {directory.resolve()}")
    for line in plan.guessed:
        _progress(f"guessed: {line}")
    for line in plan.not_found:
        _progress(f"not found: {line}")
    try:
        settings = resolve({}, os.environ, {}, directory.resolve())
    except SettingsError as exc:
        _progress(
            f"{scaffold.SETTINGS_FILE} does not load yet: {str(exc).removeprefix('bluegreen: ')}"
        )
        return int(ExitCode.USAGE_ERROR)
    reachable = plan.runtime_api.value is not None
    idle, why = _idle_color(settings, plan.idle, ask_haproxy=reachable)
    dry_run = ["checks", f"--env={idle}", "--dry-run", "--switch"]
    _progress(f"{idle} is idle ({why})")
    if not reachable:
        _progress(
            f"dry run skipped: HAProxy has no Runtime API yet; after adding it: "
            f"pytest {' '.join(dry_run)}"
        )
        return 0
    if args.no_dry_run:
        _progress(f"next: pytest {' '.join(dry_run)}")
        return 0
    _progress(f"dry run: pytest {' '.join(dry_run)}")
    settings_file = f"--bluegreen-config={directory.resolve() / scaffold.SETTINGS_FILE}"
    command = [sys.executable, "-m", "pytest", *dry_run, settings_file, "-p", "no:cacheprovider"]
    return run_child(command, cwd=directory)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _idle_color(
    settings: Settings, configured: str | None, *, ask_haproxy: bool
) -> tuple[str, str]:
    """The color taking no traffic: as HAProxy says, else as the configuration starts it."""
    topology = settings.topology
    reason = "no Runtime API to ask"
    if ask_haproxy:
        try:
            live = switch.live_color(settings.haproxies(), topology)
        except (BluegreenError, RuntimeApiError, OSError) as exc:
            reason = f"HAProxy's Runtime API does not answer: {exc}"
        else:
            if live is not None:
                return topology.other(live), f"HAProxy sends the traffic to {live}"
            reason = "HAProxy sends traffic to neither or both colors"
    if configured is not None:
        return configured, f"as the configuration starts it; {reason}"
    return topology.colors[1], f"guessed; {reason}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bluegreen",
        description="Gate, switch and inspect blue/green deployments behind HAProxy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help="settings file (default: the nearest bluegreen.toml, or [tool.bluegreen] in "
        "pyproject.toml, here or in a folder above)",
    )
    parser.add_argument("--runtime-api", help="HAProxy Runtime API: socket path or host:port")
    parser.add_argument(
        "--checks",
        default=None,
        help="the check suite (default: ./checks if it exists, else pytest's own discovery)",
    )
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
    _add_dry_run(to)
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
    _add_dry_run(back)
    back.set_defaults(handler=cmd_rollback)

    promote = add(
        "promote",
        "switch to the pending promotion (pytest --switch=manual), re-verified when stale",
        "bluegreen promote",
    )
    _add_dry_run(promote)
    promote.set_defaults(handler=cmd_promote)

    abort = add("abort", "discard the pending promotion; traffic unchanged", "bluegreen abort")
    _add_dry_run(abort)
    abort.set_defaults(handler=cmd_abort)

    drill = add(
        "drill",
        "deploy the [drill] known-bad variants to the idle color, gate each (dry run), score",
        "bluegreen drill            # or: bluegreen drill --only v1.4.0-slow",
    )
    drill.add_argument("--only", action="append", help="run this variant only (repeatable)")
    _add_dry_run(drill)
    drill.set_defaults(handler=cmd_drill)

    rec = add(
        "recover",
        "after a switch was cut off (SIGKILL, power loss): restore HAProxy's prior states",
        "bluegreen recover            # or: bluegreen recover --to blue",
    )
    rec.add_argument("--to", help="make this color live instead of the recorded prior states")
    _add_dry_run(rec)
    rec.set_defaults(handler=cmd_recover)

    export = add(
        "export-state",
        "the full state as JSON, secrets redacted",
        "bluegreen export-state --output debug-state.json",
    )
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    export.add_argument(
        "--json", action="store_true", help="JSON (it always is: accepted as on status)"
    )
    export.set_defaults(handler=cmd_export_state)

    _add_seed_commands(add)
    _add_init(add)
    return parser


def _add_dry_run(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would happen; change nothing (HAProxy, history, journal, records)",
    )


def _add_seed_commands(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """The seed's blue-green-deploy.sh and health-checks.sh, by their own flags."""
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
    _add_dry_run(deploy)
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


def _add_init(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    init = add(
        "init",
        "write bluegreen.toml and a starter checks/ from an HAProxy configuration, then run "
        "the gate dry on the idle color",
        "bluegreen init --haproxy-config /etc/haproxy/haproxy.cfg --colors blue,green",
    )
    init.add_argument(
        "--haproxy-config",
        default="/etc/haproxy/haproxy.cfg",
        metavar="PATH",
        help="the HAProxy configuration to read (default: /etc/haproxy/haproxy.cfg)",
    )
    init.add_argument(
        "--colors",
        metavar="A,B",
        help="the two colors, as the servers' names say them (default: blue,green)",
    )
    init.add_argument("--dir", default=".", help="where to write (default: here)")
    init.add_argument(
        "--no-dry-run",
        action="store_true",
        help="write the files only; print the dry run's command",
    )
    init.set_defaults(handler=cmd_init)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_closed_pipes()  # `bluegreen status | head -3`: no traceback, nothing cut short
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
    except KeyboardInterrupt:  # a command of ours that changes HAProxy defers it itself
        print("bluegreen: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BluegreenError as exc:
        word = "refused" if isinstance(exc, LockHeld) else "error"
        message = str(exc).removeprefix("bluegreen: ")
        print(f"bluegreen: {word}: {message}", file=sys.stderr)
        return int(exc.exit_code)
    return code
