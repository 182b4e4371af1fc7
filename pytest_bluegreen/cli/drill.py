"""``bluegreen drill``: score the gate itself on known-bad builds.

Each variant of the ``[drill]`` table (``"v1.4.0-slow" = "failed"``: an image tag and the
verdict the gate must give it) is deployed to the idle color in turn, and the check suite gates
it with ``--switch --dry-run`` (``-m`` ``drill_markers``, default ``quick or perf``): nothing
ever takes traffic. The drill prints one row per variant -- expected verdict, actual verdict,
the check that caught it -- and fails (exit 1) when any variant got another verdict than
expected: a bad build the suite lets through is a hole in the gate. Afterwards the idle color
is deployed back at the tag it ran before.

Verdicts: ``failed`` (a check failed), ``inconclusive``, ``refused``, ``deploy-failed`` (the
deploy itself caught it: not healthy in time, ...), ``switch`` (a good build the gate must let
through: a control against false alarms).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.process.child import run_child
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.reading import live_color

from .deploying import deploy_only
from .inconfig import DRY_NOTHING, UsageProblem, in_config, progress, report_lines, suite_args

__all__ = ["DrillRow", "caught_by", "cmd_drill", "drill_table", "read_outcome"]


@dataclass(frozen=True)
class DrillRow:
    tag: str
    expected: str
    actual: str
    caught_by: str  # the first failed check, "the deploy", or "" when nothing caught it
    seconds: float

    @property
    def ok(self) -> bool:
        return self.actual == self.expected


def caught_by(verdict: dict[str, Any], color: str) -> str:
    """The first failed check of the color (else of any key), short (``file::name[params]``),
    and how many more failed."""
    failed: dict[str, list[str]] = verdict.get("failed_checks") or {}
    ordered = [*failed.get(color, []), *(i for k, ids in failed.items() if k != color for i in ids)]
    ordered = list(dict.fromkeys(ordered))
    if not ordered:
        return ""
    path, _, rest = ordered[0].partition("::")
    first = f"{Path(path).name}::{rest}" if rest else Path(path).name
    return first + (f" (+{len(ordered) - 1} more)" if len(ordered) > 1 else "")


def read_outcome(verdict_file: Path, exit_code: int) -> tuple[str, dict[str, Any]]:
    """The gate's verdict word for the drill and the verdict's data."""
    try:
        data: dict[str, Any] = json.loads(verdict_file.read_text())
    except (OSError, ValueError, RecursionError):
        return f"no verdict (exit {exit_code})", {}
    return str(data.get("verdict") or f"exit {exit_code}"), data


def run_variants(
    variants: dict[str, str],
    color: str,
    *,
    deploy: Callable[[str], int],
    gate: Callable[[str], tuple[int, Path]],
    progress: Callable[[str], None],
) -> list[DrillRow]:
    """Deploy each variant to ``color`` and gate it; ``deploy(tag)`` returns an exit code,
    ``gate(tag)`` the gate's exit code and its verdict file."""
    rows = []
    for tag, expected in variants.items():
        progress(f"drill: {tag} on {color} (expected: {expected})")
        started = time.monotonic()
        if deploy(tag) != ExitCode.OK:
            actual, by = "deploy-failed", "the deploy"
        else:
            code, verdict_file = gate(tag)
            actual, data = read_outcome(verdict_file, code)
            by = caught_by(data, color)
            if actual == "inconclusive" and (data.get("blame") or {}).get("environmental"):
                by = f"environmental ({by})" if by else "environmental"
        rows.append(DrillRow(tag, expected, actual, by, time.monotonic() - started))
        progress(f"drill: {tag}: {actual}" + (f" (caught by {by})" if by else ""))
    return rows


def drill_table(rows: Sequence[DrillRow]) -> list[str]:
    """The drill's table and its last line."""
    header = ("variant", "expected", "actual", "caught by", "")
    cells = [
        (r.tag, r.expected, r.actual, r.caught_by or "-", "ok" if r.ok else "MISSED") for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]  # fmt: skip
    good = sum(r.ok for r in rows)
    lines.append(
        f"drill: {good} of {len(rows)} variant(s) got the expected verdict "
        f"in {sum(r.seconds for r in rows):.0f}s"
        + ("" if good == len(rows) else " -- the gate has a hole: see MISSED")
    )
    return lines


def cmd_drill(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        from pytest_bluegreen.engines.compose import TagsFile  # noqa: PLC0415

        variants = dict(settings.drill.variants)
        if args.only:
            unknown = [tag for tag in args.only if tag not in variants]
            if unknown:
                raise UsageProblem(f"not a drill variant: {', '.join(unknown)} ([drill] table)")
            variants = {tag: variants[tag] for tag in args.only}
        if not variants:
            raise UsageProblem('no drill variants: add a [drill] table ("TAG" = "failed")')
        live = live_color(settings.haproxies(), settings.topology)
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
            return report_lines(lines, ExitCode.OK)

        logs = settings.reports.verdict_file.parent / "drill"
        logs.mkdir(parents=True, exist_ok=True)

        def gate(tag: str) -> tuple[int, Path]:
            """The gate on the variant, dry run; its output into reports/drill/TAG.log."""
            flags = [f"--env={idle}", "-m", markers, "--switch", "--dry-run"]
            command = [
                sys.executable,
                "-m",
                "pytest",
                *suite_args(args, settings),
                "-p",
                "no:cacheprovider",
            ]
            command += [*flags, f"--deployment-tag={tag}", *extra]
            log = logs / f"{tag}.log"
            with log.open("w") as out:
                code = run_child(command, stdout=out, stderr=subprocess.STDOUT)
            progress(f"drill: {tag}: the gate's output is in {log}")
            return code, settings.reports.verdict_file

        try:
            rows = run_variants(
                variants,
                idle,
                deploy=lambda tag: deploy_only(settings, idle, tag, skip_backup=True),
                gate=gate,
                progress=progress,
            )
        finally:
            if before is not None:
                progress(f"drill: {idle} back to {before}")
                deploy_only(settings, idle, before, skip_backup=True)
        for line in drill_table(rows):
            print(line)
        return ExitCode.OK if all(row.ok for row in rows) else ExitCode.CHECKS_FAILED

    return in_config(args, act)
