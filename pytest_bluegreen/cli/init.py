"""``bluegreen init``: ``bluegreen.toml`` and a starter ``checks/`` from an HAProxy
configuration (:mod:`..init.scaffold`), then the gate's dry run on the idle color."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.process.child import run_child
from pytest_bluegreen.settings import SettingsError, resolve

from .inconfig import progress

__all__ = ["cmd_init"]


def cmd_init(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """bluegreen.toml and a starter checks/ from an HAProxy configuration, then a dry run."""
    from pytest_bluegreen.haproxy.config import parse_config  # noqa: PLC0415
    from pytest_bluegreen.init import scaffold  # noqa: PLC0415 - only init reads HAProxy configurations
    from pytest_bluegreen.init.idle import idle_color  # noqa: PLC0415

    source = Path(args.haproxy_config)
    try:
        text = _as_written(source)
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
    plan = scaffold.plan(config, text=text, source=str(source.resolve()), colors=colors, maps=maps)
    directory = Path(args.dir)
    files = {
        scaffold.SETTINGS_FILE: scaffold.render_settings(plan),
        **scaffold.proposed_files(plan),
        **scaffold.starter_files(),
    }
    written = scaffold.write(directory, files)
    names = ", ".join(str(p.relative_to(directory)) for p in written)
    progress(f"wrote {names} in {directory.resolve()}")
    for line in plan.guessed:
        progress(f"guessed: {line}")
    for line in plan.not_found:
        progress(f"not found: {line}")
    try:
        settings = resolve({}, os.environ, {}, directory.resolve())
    except SettingsError as exc:
        progress(
            f"{scaffold.SETTINGS_FILE} does not load yet: {str(exc).removeprefix('bluegreen: ')}"
        )
        return int(ExitCode.USAGE_ERROR)
    reachable = plan.runtime_api.value is not None
    idle, why = idle_color(settings, plan.idle, ask_haproxy=reachable)
    dry_run = ["checks", f"--env={idle}", "--dry-run", "--switch"]
    progress(f"{idle} is idle ({why})")
    if not reachable:
        progress(
            f"dry run skipped: HAProxy has no Runtime API yet; after adding it: "
            f"pytest {' '.join(dry_run)}"
        )
        return int(ExitCode.OK)
    if args.no_dry_run:
        progress(f"next: pytest {' '.join(dry_run)}")
        return int(ExitCode.OK)
    progress(f"dry run: pytest {' '.join(dry_run)}")
    settings_file = f"--bluegreen-config={directory.resolve() / scaffold.SETTINGS_FILE}"
    command = [sys.executable, "-m", "pytest", *dry_run, settings_file, "-p", "no:cacheprovider"]
    return run_child(command, cwd=directory)


def _as_written(path: Path) -> str:
    """The file's text with its line ends as written (``read_text`` makes every carriage
    return a new line; HAProxy ends a line at a newline only)."""
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


def _read_text(path: Path) -> str | None:
    try:
        return _as_written(path)
    except (OSError, UnicodeDecodeError):
        return None
