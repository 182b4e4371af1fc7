"""The ``bluegreen`` command. It calls the plugin's modules; it never re-implements them.

bluegreen status [--json]      live color, HAProxy servers, last switch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import state, switch
from .haproxy import RuntimeApi, RuntimeApiError
from .settings import Settings, SettingsError, resolve

EXIT_ERROR = 4


def _settings(args: argparse.Namespace) -> Settings:
    cli = {"config": args.config, "runtime_api": args.runtime_api}
    return resolve(cli, os.environ, {}, Path.cwd())


def collect_status(settings: Settings) -> dict[str, Any]:
    """Colors, HAProxy servers and the last history entry, as plain data."""
    api = RuntimeApi(settings.runtime_api, settings.runtime_api_timeout)
    states = api.server_states(switch.all_servers(settings))
    stats = {row.ref: row for row in api.show_stat()}
    live = switch.live_color_from(states, settings)
    history = state.read_history(settings.state_file)
    colors: dict[str, Any] = {}
    for name, cfg in settings.color.items():
        colors[name] = {
            "role": "live" if name == live else "idle",
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
    return {
        "live": live,
        "colors": colors,
        "last_switch": None if last is None else last.__dict__,
    }


def _print_status(data: dict[str, Any]) -> None:
    print(f"live color: {data['live'] or 'none (no single color takes traffic)'}")
    print(f"{'color':<8} {'role':<5} {'server':<34} {'weight':>6} {'state':<6} health")
    for name, info in data["colors"].items():
        for server in info["servers"]:
            print(
                f"{name:<8} {info['role']:<5} {server['server']:<34} {server['weight']:>6} "
                f"{server['state']:<6} {server['health']}"
            )
    last = data["last_switch"]
    if last:
        print(
            f"last switch: {last['time']} {last['from_color']} -> {last['to_color']} "
            f"{last['outcome']} (tag {last['tag'] or '-'})"
        )
    else:
        print("last switch: none recorded")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bluegreen", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="settings file (default bluegreen.toml)")
    parser.add_argument("--runtime-api", help="HAProxy Runtime API address")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="live color, HAProxy servers, last switch")
    status.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        data = collect_status(settings)
    except (SettingsError, RuntimeApiError, state.StateFileError) as exc:
        print(f"bluegreen: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_status(data)
    return 0
