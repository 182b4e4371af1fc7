"""The ``bluegreen`` command: the seed's scripts' powers on top of the plugin, one code path.

Commands that verify run the check suite with pytest (so the gate in the plugin decides and
switches); ``--force`` paths call the same switch procedure directly. Exit codes are the
plugin's (README, "Exit codes"); 4 is a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import state, switch
from .gate import EXIT_DEPLOY_FAILED, EXIT_REFUSED
from .gaterun import GateRun
from .haproxy import RuntimeApi, RuntimeApiError
from .settings import Settings, SettingsError, resolve

EXIT_USAGE = 4
REDACTED = "***"

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

exit codes: 0 ok, 1 checks failed, 4 usage error, 6 inconclusive, 7 refused (nothing
changed), 8 switch reverted, 9 deploy failed; see the README.
"""


class UsageProblem(Exception):
    """Bad input: one line, exit 4, nothing changed."""


def _paint(text: str, code: str) -> str:
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return f"\033[{code}m{text}\033[0m"
    return text


def _settings(args: argparse.Namespace) -> Settings:
    cli = {"config": args.config, "runtime_api": args.runtime_api}
    return resolve(cli, os.environ, {}, Path.cwd())


def _color(settings: Settings, name: str) -> str:
    if name not in settings.colors:
        raise UsageProblem(f"unknown color {name!r} (colors: {', '.join(settings.colors)})")
    return name


# --- reading ---------------------------------------------------------------------------------


def _deployed_tags(settings: Settings) -> dict[str, str | None]:
    path = settings.state_file.with_name("compose-tags.env")
    tags: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                tags[key.strip()] = value.strip()
    return {c: tags.get(f"{c.upper().replace('-', '_')}_TAG") for c in settings.colors}


def _containers(settings: Settings) -> dict[str, str]:
    """color -> "3/3 healthy" (or why not), from the Compose labels; "-" without an engine."""
    try:
        import docker  # noqa: PLC0415 - status works without Docker too

        client = docker.from_env()
        client.ping()
    except Exception:
        return dict.fromkeys(settings.colors, "-")
    out = {}
    for name, cfg in settings.color.items():
        healthy = 0
        for service in cfg.services:
            labels = [
                f"com.docker.compose.project={settings.compose_project}",
                f"com.docker.compose.service={service}",
            ]
            for c in client.containers.list(filters={"label": labels}):
                if c.attrs.get("State", {}).get("Health", {}).get("Status") == "healthy":
                    healthy += 1
        out[name] = f"{healthy}/{len(cfg.services)} healthy"
    client.close()
    return out


def collect_status(settings: Settings) -> dict[str, Any]:
    """Colors, HAProxy servers, deployed tags, containers and the last switch, as plain data."""
    api = RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
    states = api.server_states(switch.all_servers(settings))
    stats = {row.ref: row for row in api.show_stat()}
    live = switch.live_color_from(states, settings)
    history = state.read_history(settings.state_file)
    tags = _deployed_tags(settings)
    containers = _containers(settings)
    colors: dict[str, Any] = {}
    for name, cfg in settings.color.items():
        colors[name] = {
            "role": "live" if name == live else "idle",
            "tag": tags[name],
            "containers": containers[name],
            "api_url": cfg.api_url,
            "servers": [
                {
                    "server": str(ref),
                    "weight": states[ref].uweight,
                    "state": states[ref].admin.value,
                    "health": stats[ref].status if ref in stats else "missing",
                }
                for ref in cfg.servers
            ],
        }
    last = history[-1] if history else None
    return {"live": live, "colors": colors, "last_switch": None if last is None else asdict(last)}


def _print_status(data: dict[str, Any]) -> None:
    live = data["live"]
    print(f"live color: {_paint(live, '1;32') if live else 'none (no single color takes traffic)'}")
    print(
        f"{'color':<8} {'role':<5} {'tag':<16} {'containers':<12} "
        f"{'server':<34} {'weight':>6} {'state':<6} health"
    )
    for name, info in data["colors"].items():
        for server in info["servers"]:
            health = server["health"]
            shown = _paint(health, "32") if health.startswith("UP") else _paint(health, "31")
            print(
                f"{name:<8} {info['role']:<5} {info['tag'] or '-':<16} {info['containers']:<12} "
                f"{server['server']:<34} {server['weight']:>6} {server['state']:<6} {shown}"
            )
    last = data["last_switch"]
    if last:
        forced = " FORCED" if last.get("forced") else ""
        print(
            f"last switch: {last['time']} {last['from_color']} -> {last['to_color']} "
            f"{last['outcome']}{forced} (tag {last['tag'] or '-'})"
        )
    else:
        print("last switch: none recorded")


def export_state(settings: Settings) -> dict[str, Any]:
    """Everything known, as JSON-ready data; secret values are replaced by ***."""
    api = RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
    status = collect_status(settings)
    secrets = settings.env_files.secrets_values()
    secret_values = {v for v in secrets.values() if v}

    def redact(value: str) -> str:
        for secret in secret_values:
            value = value.replace(secret, REDACTED)
        return value

    return {
        "live": status["live"],
        "colors": {
            name: {
                **info,
                "variables": {k: redact(v) for k, v in settings.env_files.variables(name).items()},
            }
            for name, info in status["colors"].items()
        },
        "haproxy": {
            "version": api.version(),
            "servers": [
                {
                    "backend": s.backend,
                    "server": s.server,
                    "weight": s.uweight,
                    "configured_weight": s.iweight,
                    "admin": s.admin.value,
                }
                for s in api.servers_state()
            ],
        },
        "secrets": dict.fromkeys(sorted(secrets), REDACTED),
        "history": [asdict(e) for e in state.read_history(settings.state_file)],
    }


# --- acting ----------------------------------------------------------------------------------


def run_checks(args: argparse.Namespace, pytest_args: Sequence[str]) -> int:
    """The check suite under pytest, in a child process; its exit status is ours."""
    command = [sys.executable, "-m", "pytest", args.checks, "-p", "no:cacheprovider"]
    if args.config:
        command += ["--bluegreen-config", args.config]
    if args.runtime_api:
        command += ["--runtime-api", args.runtime_api]
    command += list(pytest_args)
    print(_paint(f"bluegreen: running {' '.join(command[2:])}", "36"), flush=True)
    return subprocess.run(command, check=False).returncode


def _report(lines: list[str], code: int) -> int:
    for line in lines:
        print(f"bluegreen: {line}")
    return code


def _progress(line: str) -> None:
    print(f"bluegreen: {line}", flush=True)


def forced_switch(settings: Settings, target: str, *, rollback: bool) -> int:
    run = GateRun(settings, progress=_progress)
    try:
        run.start()
        verb = "rollback" if rollback else "switch-to"
        report = run.switch_forced(
            target, f"{verb} {target} forced by the operator; checks skipped", rollback=rollback
        )
    finally:
        run.close()
    return _report(report.lines, report.exit_code)


def deploy_only(settings: Settings, color: str, tag: str, *, skip_backup: bool) -> int:
    """The plugin's deploy step (lock, live-color guard, backup, compose up, wait healthy)."""
    from .deploy import DeployError  # noqa: PLC0415 - Docker clients load only to deploy
    from .gaterun import DeployRefused  # noqa: PLC0415

    run = GateRun(
        replace(settings, env=color, deploy=tag, skip_backup=skip_backup), progress=_progress
    )
    try:
        run.start()
        result = run.deploy(_progress)
    except DeployRefused as exc:
        return _report([str(exc)], EXIT_REFUSED)
    except DeployError as exc:
        return _report([f"deploy failed: {exc}"], EXIT_DEPLOY_FAILED)
    finally:
        run.close()
    return _report([f"deployed {color} {tag} in {result.seconds:.1f}s; no checks run"], 0)


def cmd_switch_to(args: argparse.Namespace, extra: Sequence[str]) -> int:
    settings = _settings(args)
    target = _color(settings, args.color)
    if args.force:
        return forced_switch(settings, target, rollback=False)
    api = RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
    if switch.live_color(api, settings) == target:
        return _report([f"refused: {target} is already live; nothing to switch"], EXIT_REFUSED)
    flags = ["--env", target, "-m", "quick", "--switch", *(["--dry-run"] if args.dry_run else [])]
    return run_checks(args, [*flags, *extra])


def cmd_rollback(args: argparse.Namespace, extra: Sequence[str]) -> int:
    settings = _settings(args)
    if args.force:
        api = RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
        live = switch.live_color(api, settings)
        if live is None:
            raise UsageProblem("no single color is live; nothing to roll back from")
        return forced_switch(settings, settings.other(live), rollback=True)
    return run_checks(args, ["--rollback", "-m", "quick", *extra])


def cmd_deploy(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.rollback:
        return cmd_rollback(argparse.Namespace(**{**vars(args), "force": False}), extra)
    if not args.target_color:
        raise UsageProblem("deploy needs --target-color (or --rollback)")
    settings = _settings(args)
    color = _color(settings, args.target_color)
    tag = args.deployment_tag or _deployed_tags(settings)[color]
    if not tag:
        raise UsageProblem(f"deploy needs --deployment-tag ({color} has no deployed tag yet)")
    if args.auto_switch and args.skip_switch:
        raise UsageProblem("--auto-switch and --skip-switch contradict each other")
    flags = ["--env", color, "--deploy", tag]
    if args.skip_backup:
        flags.append("--skip-backup")
    if args.skip_tests:
        # the seed's quick deploy: no checks; a switch then is forced (and recorded so)
        code = deploy_only(settings, color, tag, skip_backup=args.skip_backup)
        if code == 0 and args.auto_switch:
            return forced_switch(settings, color, rollback=False)
        return code
    if args.auto_switch:
        flags.append("--switch")
    return run_checks(args, [*flags, "-m", "quick", *extra])


def cmd_check(args: argparse.Namespace, extra: Sequence[str]) -> int:
    settings = _settings(args)
    env = args.environment
    if env not in (*settings.colors, "all", "shared"):
        raise UsageProblem(
            f"unknown environment {env!r} (one of {', '.join((*settings.colors, 'all', 'shared'))})"
        )
    flags = ["--env", env]
    if args.quick:
        flags += ["-m", "quick"]
    if args.verbose or os.environ.get("VERBOSE", "").lower() == "true":
        flags += ["-v", "-rA"]
    return run_checks(args, [*flags, *extra])


def cmd_status(args: argparse.Namespace, extra: Sequence[str]) -> int:
    data = collect_status(_settings(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_status(data)
    return 0


def cmd_export_state(args: argparse.Namespace, extra: Sequence[str]) -> int:
    text = json.dumps(export_state(_settings(args)), indent=2) + "\n"
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
        print(f"bluegreen: state written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


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
    to.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    to.set_defaults(handler=cmd_switch_to)

    back = add("rollback", "return traffic to the previous color, verified", "bluegreen rollback")
    back.add_argument("--force", action="store_true", help="skip the checks (recorded as forced)")
    back.set_defaults(handler=cmd_rollback)

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
    deploy.add_argument("--skip-backup", action="store_true", help="no pg_dump first")
    deploy.add_argument("--skip-switch", action="store_true", help="never switch traffic")
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
    if extra and args.command not in {"check", "switch-to", "deploy", "rollback"}:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra and extra[0] == "--":
        extra = extra[1:]
    try:
        code: int = args.handler(args, extra)
    except (SettingsError, UsageProblem) as exc:
        print(f"bluegreen: error: {str(exc).removeprefix('bluegreen: ')}", file=sys.stderr)
        return EXIT_USAGE
    except state.LockHeld as exc:
        print(f"bluegreen: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (RuntimeApiError, state.StateFileError) as exc:
        print(f"bluegreen: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, state.StateFileError) else EXIT_REFUSED
    return code
