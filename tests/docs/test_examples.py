"""The README's and the docs' examples are what they say: no merge conflict left in a page,
every shell command shown either runs here (and prints what the page shows) or is marked as
needing what this test does not have (the Docker stack, a package index, minutes), and a
settings example that speaks of defaults quotes the real ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.judge.thresholds import DEFAULT_BAKE_THRESHOLDS
from pytest_bluegreen.settings import Option, all_options
from tests.support.stack import ROOT


def pages() -> list[Path]:
    """Every Markdown page of the repository (tracked or new), and haproxy.cfg's comments."""
    found = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(ROOT / name for name in found if (ROOT / name).is_file())


PAGES = pages()
MERGE_MARKER = re.compile(r"^(<{7}|={7}|>{7})(\s|$)")
INLINE_COMMAND = re.compile(r"`((?:\S+=\S+ )*haproxy -c [^`]+)`")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def test_no_page_keeps_a_merge_marker() -> None:
    left = [
        f"{page.relative_to(ROOT)}:{number}: {line}"
        for page in PAGES
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if MERGE_MARKER.match(line)
    ]
    assert not left, "a merge conflict left in the docs:\n" + "\n".join(left)


# --- shell examples --------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    where: str  # page:line
    command: str
    shown: tuple[str, ...]  # the output the page shows after it ("..." skips lines)


def examples() -> list[Example]:
    """Commands of ```bash/```sh blocks, ``$ `` lines of ```console blocks (with the output
    shown under them), and the "Validate with:" line of haproxy/haproxy.cfg."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            language, body = block.group(1), block.group(2)
            line = text[: block.start()].count("\n") + 2
            where = f"{page.relative_to(ROOT)}:{line}"
            if language == "console":
                found += _console(where, body)
            elif language in {"bash", "sh", "shell"}:
                found += [Example(where, c, ()) for c in _commands(body)]
        prose = FENCE.sub("", text)  # commands given inline: "validate it with `haproxy -c ...`"
        for span in INLINE_COMMAND.finditer(prose):
            found.append(Example(f"{page.relative_to(ROOT)} (inline)", span.group(1), ()))
    cfg = ROOT / "haproxy" / "haproxy.cfg"
    for number, comment in enumerate(cfg.read_text().splitlines(), start=1):
        if "Validate with:" in comment:
            command = comment.split(":", 1)[1].strip()
            found.append(Example(f"haproxy/haproxy.cfg:{number}", command, ()))
    return found


def _commands(body: str) -> list[str]:
    commands, current = [], ""
    for raw in body.splitlines():
        line = raw.split("  #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return [c for c in commands if c]


def _console(where: str, body: str) -> list[Example]:
    found: list[Example] = []
    command: str | None = None
    shown: list[str] = []
    for line in [*body.splitlines(), "$ "]:
        if line.startswith("$ "):
            if command:
                found.append(Example(where, command, tuple(shown)))
            command, shown = line[2:].split("  #", 1)[0].strip(), []
        else:
            shown.append(line)
    return found


# Each command shown is run here, or says why not; a new example must be put in one of them.
RUNS_HERE = (re.compile(r"^BG_TLS_CERT=\S+ haproxy -c -f haproxy/haproxy\.cfg$"),)
NOT_HERE = {
    re.compile(
        r"^(pytest checks"
        r"|bluegreen (status|switch-to|rollback|export-state|recover|deploy|check|drill)"
        r"|scripts/(demo|report|build-images)\b|python scripts/local_stack\.py|docker )"
    ): "needs the Docker stack (tests/stack/test_workflow.py, test_docker_stack.py and the demo "
    "run it)",
    re.compile(r"^(cd \S+ && )?bluegreen init "): "needs an HAProxy in front of two backends "
    "(tests/init/test_init.py runs init on a real one)",
    re.compile(r"^scripts/test\b"): "the whole test suite",
    re.compile(r"^pip install "): "a package index",
    re.compile(r"^\.venv/bin/python -m benchmarks\."): "a benchmark: minutes, some need Docker",
    re.compile(r"^bluegreen dashboard\b"): "a server until Ctrl-C (tests/report/test_dashboard.py "
    "loads it in a browser)",
}


def _kind(example: Example) -> str | None:
    """ "run", or why it does not run here; None for a command in neither list."""
    if any(p.match(example.command) for p in RUNS_HERE):
        return "run"
    reasons = [why for p, why in NOT_HERE.items() if p.match(example.command)]
    if reasons:
        return reasons[0]
    if "haproxy -c" in example.command:  # the class this test was written for: it must run
        return "run"
    return None


EXAMPLES = examples()


def test_every_shell_example_is_run_or_marked() -> None:
    unmarked = [f"{e.where}: `{e.command}`" for e in EXAMPLES if _kind(e) is None]
    assert not unmarked, (
        "neither run by this test nor marked as needing something it lacks (add each to "
        "RUNS_HERE or NOT_HERE):\n" + "\n".join(unmarked)
    )
    assert any(_kind(e) == "run" for e in EXAMPLES)
    assert len({e.command for e in EXAMPLES}) > 30  # the pages were read


@pytest.mark.parametrize(
    "example",
    [e for e in EXAMPLES if _kind(e) == "run"],
    ids=lambda e: e.where,
)
def test_a_shell_example_runs_and_prints_what_the_page_shows(
    example: Example, haproxy_available: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BG_", "BLUEGREEN_"))}
    done = subprocess.run(
        ["bash", "-c", example.command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, f"{example.where}: `{example.command}` failed:\n" + "\n".join(
        output
    )
    at = 0
    for line in (s for s in example.shown if s.strip() and s.strip() != "..."):
        assert line in output[at:], f"{example.where}: {line!r} not printed:\n" + "\n".join(output)
        at = output.index(line, at) + 1


# --- settings examples that speak of defaults --------------------------------------------------


OPTIONS: dict[str, Option] = {o.key: o for o in all_options([ServiceSettings])}
TABLE_DEFAULTS: dict[tuple[str, str], Any] = {
    ("bake_thresholds", "haproxy"): DEFAULT_BAKE_THRESHOLDS["haproxy"],
}
SPEAKS = re.compile(r"\bthe default\b|\bdefault \S")  # a comment about defaults
SAYS_DEFAULT = re.compile(r"\bdefault (?P<value>[^\s:;,)]+)")


def _value(key: str, raw: Any) -> Any:
    option = OPTIONS[key]
    try:
        return option.parse(raw)
    except (TypeError, ValueError):
        return raw


def stale_defaults(text: str, where: str) -> list[str]:
    """In a TOML block whose comments speak of defaults, each setting shown at another value
    than its default must say its real default (``# default 0``); one that says the default
    must show it."""
    wrong = []
    for block in FENCE.finditer(text):
        comments = [line.partition("#")[2] for line in block.group(2).splitlines()]
        if block.group(1) != "toml" or not any(SPEAKS.search(c) for c in comments):
            continue
        table = ""
        for line in block.group(2).splitlines():
            content, _, comment = line.partition("#")
            if content.strip().startswith("["):
                table = content.strip().strip("[]")
                continue
            key, sep, raw = content.partition("=")
            key = key.strip().strip('"')
            if not sep or not raw.strip():
                continue
            try:
                value = tomllib.loads(f"v = {raw.strip()}")["v"]
            except tomllib.TOMLDecodeError:
                continue
            if table:
                default = TABLE_DEFAULTS.get((table, key), ...)
                if default is not ... and "default" in comment and value != default:
                    wrong.append(
                        f"{where}: [{table}] {key} = {raw.strip()}: the default is {default}"
                    )
                continue
            if key not in OPTIONS:
                continue
            real = OPTIONS[key].default
            said = SAYS_DEFAULT.search(comment)
            if said and said["value"] not in {"is", "for", "of", "when", "in"}:
                quoted = _value(key, tomllib.loads(f"v = {said['value']}")["v"])
                if quoted != real:
                    wrong.append(f"{where}: {key}: says default {said['value']}, it is {real!r}")
            elif _value(key, value) != real:
                wrong.append(
                    f"{where}: {key} = {raw.strip()} beside defaults, but its default is "
                    f"{real!r}: say `# default {real!r}` or show the default"
                )
    return wrong


def test_settings_examples_quote_the_real_defaults() -> None:
    wrong = [
        line
        for page in PAGES
        for line in stale_defaults(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    ]
    assert not wrong, "\n".join(wrong)


def test_a_stale_default_is_caught() -> None:
    """The rule above on the block the README had: 50 shown beside "the default" while the
    default is 0."""
    old = (
        "```toml\n"
        "bake_min_requests = 50          # fewer routed requests in an interval: inconclusive\n"
        "[bake_thresholds]\n"
        'haproxy = ["http_5xx_rate<0.01", "eresp<1", "econ<1"]  # the default\n'
        "```\n"
    )
    [line] = stale_defaults(old, "old")
    assert line.startswith("old: bake_min_requests = 50 beside defaults, but its default is 0")
