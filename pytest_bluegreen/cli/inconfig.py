"""What every ``bluegreen`` command shares: settings and hooks from pytest's own configuration,
the check suite run as a pytest child, and the command's output lines.

Settings and the user's hooks come from pytest itself: a command builds the same pytest
configuration a gated run of the check suite would (rootdir, ini, conftests, plugins,
environment, settings file), and stops before any session starts. So ``bluegreen`` and
``pytest --switch`` resolve the same settings, take the same lock and call the same hooks.
Commands that verify run the check suite with pytest in a child process, so the plugin's gate
decides and switches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_bluegreen.errors import BluegreenError, ExitCode, UsageError
from pytest_bluegreen.keys import METRICS_KEY
from pytest_bluegreen.plugin import settings_from_config
from pytest_bluegreen.process.child import run_child
from pytest_bluegreen.report.metrics import RunMetrics, publish, require_client
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.journal import read_journal

__all__ = [
    "DRY_NOTHING",
    "Action",
    "InConfig",
    "UsageProblem",
    "checked_color",
    "dry_flags",
    "in_config",
    "json_text",
    "paint",
    "progress",
    "report_lines",
    "run_checks",
    "suite_args",
]

Action = Callable[[pytest.Config, Settings], int]


class UsageProblem(UsageError):
    """Bad input on the command line: one line, exit 4, nothing changed."""


def paint(text: str, code: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


class InConfig:
    """A plugin that runs one command with the fully set-up config, instead of a session."""

    def __init__(self, action: Action, *, dry_run: bool = False, records: bool = True) -> None:
        self.action = action
        self.dry_run = dry_run
        self.records = records
        self.code: int | None = None
        self.error: BaseException | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        try:
            settings = settings_from_config(config)
            if settings.config_file is None:
                raise UsageProblem(no_settings_file(config))
            if self.records:  # a command that may record an outcome publishes the metrics
                require_client(settings.metrics)
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


def no_settings_file(config: pytest.Config) -> str:
    here = config.invocation_params.dir
    return (
        f"no settings file: no bluegreen.toml (nor [tool.bluegreen] in a pyproject.toml) in "
        f"{here} or a folder above it; run bluegreen where the deployment's settings are, "
        "or give --config FILE (bluegreen init writes one)"
    )


def path_word(path: str) -> str:
    """A path as one argument pytest cannot read as an option (``-x`` -> ``./-x``)."""
    return f"./{path}" if path.startswith("-") else path


def suite_args(args: argparse.Namespace, settings: Settings | None = None) -> list[str]:
    """The check suite (its conftests hold the user's hooks) and the shared options, each
    ``--opt=value``: pytest picks its rootdir before it knows our options, and a separate
    value that names a path (a socket, a file) would count there as a test path. With
    ``settings``, the settings file they were read from, so a child reads the same one."""
    suite = args.checks if args.checks is not None else "checks"
    given: list[str] = [path_word(suite)] if Path(suite).exists() else []
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


def in_config(args: argparse.Namespace, action: Action, *, records: bool = True) -> int:
    """Run ``action`` with the fully set-up config; ``records=False``: a command that only
    reads, which publishes nothing and so needs no ``metrics`` extra."""
    runner = InConfig(action, dry_run=getattr(args, "dry_run", False), records=records)
    code = pytest.main(
        [*suite_args(args), "-p", "no:cacheprovider", "--assert=plain"], plugins=[runner]
    )
    if runner.error is not None:
        raise runner.error
    return int(code) if runner.code is None else runner.code


def checked_color(settings: Settings, name: str) -> str:
    colors = settings.topology.colors
    if name not in colors:
        raise UsageProblem(f"unknown color {name!r} (colors: {', '.join(colors)})")
    return name


def json_text(document: object) -> str:
    return json.dumps(document, indent=2) + "\n"


def run_checks(args: argparse.Namespace, settings: Settings, pytest_args: Sequence[str]) -> int:
    """The check suite under pytest, in a child process; its exit status is ours. The child
    drops its output too when our reader goes away, and runs its gate to the end. A child
    that died of a signal while a switch was under way (its journal still open) ends as a
    failed revert would: exit 10, ``bluegreen recover``."""
    if args.checks is not None and not Path(args.checks).exists():
        raise UsageProblem(f"the check suite {args.checks} does not exist (--checks)")
    given = [*suite_args(args, settings), "-p", "no:cacheprovider", *pytest_args]
    print(paint(f"bluegreen: running pytest {' '.join(given)}", "36"), flush=True)
    command = [sys.executable, "-m", "pytest_bluegreen.process.closedpipe", *given]
    was_open = journal_open(settings)  # then the child's gate refuses it, as it should
    code = run_child(command)
    if (
        code not in (ExitCode.OK, ExitCode.REVERT_FAILED)
        and not was_open
        and journal_open(settings)
    ):
        print(
            "bluegreen: the check suite's gate ended during a switch (its journal is open): "
            "HAProxy may be half-switched; see bluegreen status, then bluegreen recover",
            file=sys.stderr,
            flush=True,
        )
        return int(ExitCode.REVERT_FAILED)
    return code


def journal_open(settings: Settings) -> bool:
    if settings.run.dry_run:
        return False
    try:
        entry = read_journal(settings.state.journal_file)
    except (BluegreenError, OSError, ValueError):
        return False  # status and recover say what is wrong with it
    return entry is not None and entry.open


DRY_NOTHING = "dry run: nothing changed"


def report_lines(lines: Sequence[str], code: int) -> int:
    for line in lines:
        print(f"bluegreen: {line}")
    return code


def dry_flags(settings: Settings) -> list[str]:
    """The child gate's --dry-run, when this command is one."""
    return ["--dry-run"] if settings.run.dry_run else []


def progress(line: str) -> None:
    print(f"bluegreen: {line}", flush=True)
