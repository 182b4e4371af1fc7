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
through: a control against false alarms), ``canary-failed`` (the checks pass it; only real
users' traffic shows the fault). A ``canary-failed`` variant is gated for real, ``--switch
--canary`` (``drill_canary``), while the drill itself sends a bounded users' load through the
routed URL: the canary must catch it (every weight back on the live color), and its row says in
which step and what share of the users' requests reached it. Should a canary let it through,
the drill switches traffic back to the color that was live.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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

__all__ = ["DrillRow", "caught_by", "cmd_drill", "drill_table", "gate_command", "read_outcome"]


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


CAUGHT_IN_CANARY = re.compile(
    r"canary step (\d+/\d+ \(\d+%\)) failed.*?; (\S+ answered [\d,]+ of [\d,]+ routed request\(s\) "
    r"\([\d.]+%\))"
)
USERS_AT_MOST = 20_000  # the drill's users' load during a canary-failed variant: requests ...
USERS_SECONDS = 600.0  # ... and seconds, at most; ...
USERS_PAUSE = 0.05  # ... each of its two users waiting this long after an answer: about 35
# requests a second from one address, under the shipped haproxy.cfg's rate limit (100 a
# second a client, BG_RATE_LIMIT 1000 in 10 s), which the gate's own checks share


def read_outcome(verdict_file: Path, exit_code: int) -> tuple[str, dict[str, Any]]:
    """The gate's verdict word for the drill and the verdict's data (``canary-failed`` for a
    gate whose canary caught the build)."""
    try:
        data: dict[str, Any] = json.loads(verdict_file.read_text())
    except (OSError, ValueError, RecursionError):
        return f"no verdict (exit {exit_code})", {}
    verdict = str(data.get("verdict") or f"exit {exit_code}")
    if verdict == "failed" and CAUGHT_IN_CANARY.search(str(data.get("reason", ""))):
        verdict = "canary-failed"
    return verdict, data


def caught_in_canary(data: dict[str, Any]) -> str:
    """``canary step 1/3 (5%): blue answered 98 of 2,038 routed request(s) (4.8%)``"""
    found = CAUGHT_IN_CANARY.search(str(data.get("reason", "")))
    return f"canary step {found.group(1)}: {found.group(2)}" if found else ""


def run_variants(
    variants: dict[str, str],
    color: str,
    *,
    deploy: Callable[[str], int],
    gate: Callable[[str], tuple[int, Path]],
    progress: Callable[[str], None],
) -> list[DrillRow]:
    """Deploy each variant to ``color`` and gate it; ``deploy(tag)`` returns an exit code,
    ``gate(tag)`` the gate's exit code and its verdict file (it knows each variant's expected
    verdict: a canary-failed one is gated through a real canary)."""
    rows = []
    for tag, expected in variants.items():
        progress(f"drill: {tag} on {color} (expected: {expected})")
        started = time.monotonic()
        if deploy(tag) != ExitCode.OK:
            actual, by = "deploy-failed", "the deploy"
        else:
            code, verdict_file = gate(tag)
            actual, data = read_outcome(verdict_file, code)
            by = caught_in_canary(data) or caught_by(data, color)
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


@contextlib.contextmanager
def users(settings: Settings, *, enabled: bool) -> Iterator[Callable[[], int] | None]:
    """A bounded users' load through the routed URL while a canary-failed variant is gated
    (what a canary judges on); yields how many requests it sent so far (None: no load)."""
    if not enabled:
        yield None
        return
    from pytest_bluegreen.judge.load import run_load  # noqa: PLC0415 - a canary variant's only

    stop = threading.Event()
    sent = itertools.count()
    counted = [0]

    def count(sample: object) -> None:
        counted[0] = next(sent) + 1

    url = settings.switching.routed_api_url + settings.drill.drill_load_path
    thread = threading.Thread(
        target=run_load,
        args=(url,),
        kwargs={
            "total": USERS_AT_MOST,
            "duration": USERS_SECONDS,
            "concurrency": 2,
            "pause": USERS_PAUSE,
            "kinds": ("keepalive-get",),
            "stop": stop,
            "on_sample": count,
            "color_header": settings.topology.color_header,
        },
        daemon=True,
    )
    thread.start()
    try:
        yield lambda: counted[0]
    finally:
        stop.set()
        thread.join(30)


def back_to_live(config: pytest.Config, settings: Settings, live: str, tag: str) -> None:
    """After a canary-failed variant: the color that was live takes traffic again (a canary
    that let the build through switched to it: the drill does not leave it there)."""
    from .switching import forced_switch  # noqa: PLC0415 - only after a canary let a build through

    now = live_color(settings.haproxies(), settings.topology)
    if now == live:
        return
    progress(f"drill: {tag}: the canary let it through ({now} live): back to {live}")
    forced_switch(
        config,
        settings,
        live,
        rollback=True,
        ignore_veto=True,
        reason=f"drill: {tag} was let through by its canary; traffic back to {live}",
    )


def gate_command(
    args: argparse.Namespace,
    settings: Settings,
    flags: Sequence[str],
    tag: str,
    extra: Sequence[str],
) -> list[str]:
    """The check suite gating the build ``tag`` in a child pytest, as the drill does;
    ``flags``: the color, the markers, ``--switch`` with ``--dry-run`` or ``--canary``;
    ``extra``: the command's own arguments for pytest."""
    return [
        *(sys.executable, "-m", "pytest", *suite_args(args, settings)),
        *("-p", "no:cacheprovider", *flags, f"--deployment-tag={tag}", *extra),
    ]


@dataclass(frozen=True)
class VariantGate:
    """Gates one variant deployed to ``idle``: a dry run of the checks, or for a canary-failed
    one a real canary under the drill's users' load; its output into reports/drill/TAG.log."""

    config: pytest.Config
    args: argparse.Namespace
    settings: Settings
    extra: Sequence[str]
    live: str
    idle: str
    variants: dict[str, str]
    logs: Path

    def __call__(self, tag: str) -> tuple[int, Path]:
        settings = self.settings
        canary = self.variants[tag] == "canary-failed"
        flags = [f"--env={self.idle}", "-m", settings.drill.drill_markers, "--switch"]
        env = dict(os.environ)
        if canary:
            flags.append("--canary=" + ",".join(map(str, settings.drill.drill_canary)))
            env["BLUEGREEN_CANARY_STEP_SECONDS"] = f"{settings.drill.drill_canary_seconds:g}"
        else:
            flags.append("--dry-run")
        command = gate_command(self.args, settings, flags, tag, self.extra)
        log = self.logs / f"{tag}.log"
        with log.open("w") as out, users(settings, enabled=canary) as load:
            code = run_child(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        if load is not None:
            progress(f"drill: {tag}: the users' load sent {load()} request(s) during it")
        progress(f"drill: {tag}: the gate's output is in {log}")
        if canary:
            back_to_live(self.config, settings, self.live, tag)
        return code, settings.reports.verdict_file


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
        if settings.run.dry_run:
            markers = settings.drill.drill_markers
            lines = [
                f"dry run: would deploy each variant to {idle} and gate it (a dry run of "
                f"-m {markers!r}), then {idle} back to {before or 'nothing (no tag known)'}:",
                *(
                    f"  {tag}: expected {verdict}"
                    + (
                        f" (gated by a real canary {settings.drill.drill_canary} under the "
                        "drill's users' load)"
                        if verdict == "canary-failed"
                        else ""
                    )
                    for tag, verdict in variants.items()
                ),
                DRY_NOTHING,
            ]
            return report_lines(lines, ExitCode.OK)

        logs = settings.reports.verdict_file.parent / "drill"
        logs.mkdir(parents=True, exist_ok=True)

        gate = VariantGate(config, args, settings, extra, live, idle, variants, logs)
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
