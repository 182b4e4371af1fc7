"""The ``bluegreen`` command: its parser (the epilog's exit codes from the exit-code table,
``errors.EXIT_CODES``) and the dispatch to the commands, one module per family:
:mod:`.reading` (status, export-state), :mod:`.switching` (switch-to, rollback, recover),
:mod:`.promotion` (promote, abort), :mod:`.deploying` (deploy, check), :mod:`.drill` (and
:mod:`.powerdrill`, ``drill --power``), :mod:`.init`, :mod:`.dashboard`; what they share
(settings from pytest's own configuration, the pytest child) is :mod:`.inconfig`. A
change-freeze veto holds for ``--force`` too, unless ``--ignore-veto`` (recorded). Exit codes
are the plugin's (docs/exit-codes.md).

The module keeps its name (not ``cli/main.py``): ``pytest_bluegreen.cli.main`` is the old
module's ``main()``, handed on for one release, and the console script is
``pytest_bluegreen.cli.command:main``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import NoReturn

from pytest_bluegreen.errors import EXIT_CODES, BluegreenError, ExitCode
from pytest_bluegreen.haproxy.lockfile import LockHeld
from pytest_bluegreen.process.closedpipe import quiet_closed_pipes
from pytest_bluegreen.report.dashboard import DEFAULT_LISTEN

Handler = Callable[[argparse.Namespace, Sequence[str]], int]


def _lazy(module: str, name: str) -> Handler:
    """The command ``name`` of ``.module``, imported when it runs: a command loads its own
    family only (the dashboard's server, the drills, the Docker engines: a tenth of a second
    or more each, of every ``bluegreen status``)."""

    def handler(args: argparse.Namespace, extra: Sequence[str]) -> int:
        command: Handler = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return command(args, extra)

    handler.__name__ = handler.__qualname__ = name
    return handler


cmd_dashboard = _lazy("dashboard", "cmd_dashboard")
cmd_check = _lazy("deploying", "cmd_check")
cmd_deploy = _lazy("deploying", "cmd_deploy")
cmd_drill = _lazy("drill", "cmd_drill")
cmd_init = _lazy("init", "cmd_init")
cmd_power = _lazy("powerdrill", "cmd_power")
cmd_abort = _lazy("promotion", "cmd_abort")
cmd_promote = _lazy("promotion", "cmd_promote")
cmd_export_state = _lazy("reading", "cmd_export_state")
cmd_status = _lazy("reading", "cmd_status")
cmd_recover = _lazy("switching", "cmd_recover")
cmd_rollback = _lazy("switching", "cmd_rollback")
cmd_switch_to = _lazy("switching", "cmd_switch_to")

__all__ = ["EPILOG", "build_parser", "exit_code_lines", "main"]

EXAMPLES = """\
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
  bluegreen drill --power                   the smallest injected fault the gate catches
  bluegreen init --haproxy-config /etc/haproxy/haproxy.cfg   bluegreen.toml + checks/ from it
  bluegreen dashboard                       the charts on http://127.0.0.1:10201/

every command that changes something takes --dry-run: it says what it would do and changes
nothing (HAProxy, the history, the journal, the warm-window and pending-promotion records,
containers).

"""
# what some commands add to the table's meaning of a code
EXIT_CODE_NOTES = {
    ExitCode.OK: "or nothing to do: the target is already live",
    ExitCode.CHECKS_FAILED: "status: inconsistent; drill: a variant got another verdict than "
    "expected",
    ExitCode.DEPLOY_FAILED: "drill --power: a fault could not be deployed",
    ExitCode.USAGE_ERROR: "a bad argument too",
    ExitCode.REFUSED: "nothing changed",
}


def exit_code_lines(width: int = 79) -> list[str]:
    """The exit codes, each with the first words of its meaning in ``errors.EXIT_CODES`` (up to
    its first colon, semicolon or parenthesis) and what the commands add to it."""
    parts = []
    for code, meaning in EXIT_CODES.items():
        words = re.split(r":|;| \(", meaning, maxsplit=1)[0].strip()
        note = EXIT_CODE_NOTES.get(code)
        parts.append(f"{int(code)} {words}" + (f" ({note})" if note else ""))
    return textwrap.wrap("exit codes: " + ", ".join(parts) + ".", width)


EPILOG = EXAMPLES + "\n".join(exit_code_lines()) + "\n"

EXTRA_ARGS = {"check", "switch-to", "deploy", "rollback", "promote", "drill"}  # passed to pytest


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (an unknown option or command, a missing argument) are usage
    errors like every other: one line, exit 4 (argparse's own 2 is "interrupted" here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE_ERROR, f"{self.prog}: error: {message} ({self.prog} --help)\n")


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
        "deploy the [drill] known-bad variants to the idle color, gate each (dry run), score; "
        "--power: how sensitive the gate is, on a ladder of injected faults",
        "bluegreen drill            # or: bluegreen drill --only v1.4.0-slow; bluegreen drill "
        "--power",
    )
    drill.add_argument("--only", action="append", help="run this variant only (repeatable)")
    drill.add_argument(
        "--power",
        action="store_true",
        help="deploy the live color's build to the idle color with each fault of the "
        "drill_power_* ladders (latency, errors) and a zero-fault control, gate each up to "
        "drill_power_runs times: the smallest fault caught in 90%% of runs, the false alarms",
    )
    _add_dry_run(drill)
    drill.set_defaults(handler=drill_command)

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
    _add_dashboard(add)
    return parser


def drill_command(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """``bluegreen drill``, or with ``--power`` its measure of the gate's sensitivity."""
    return cmd_power(args, extra) if args.power else cmd_drill(args, extra)


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


def _add_dashboard(add: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    dashboard = add(
        "dashboard",
        "serve the charts of both colors (requests, 5xx, p95 latency, HAProxy's servers) and "
        "the gate runs, drawn from Prometheus, until Ctrl-C",
        "bluegreen dashboard --listen 127.0.0.1:10201 --prometheus http://127.0.0.1:10200",
    )
    dashboard.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="ADDR",
        help=f"HOST:PORT to serve the page on (default: {DEFAULT_LISTEN})",
    )
    dashboard.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus' HTTP API to draw from (default: prometheus_url)",
    )
    dashboard.set_defaults(handler=cmd_dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_closed_pipes()  # `bluegreen status | head -3`: no traceback, nothing cut short
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in EXTRA_ARGS:
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
