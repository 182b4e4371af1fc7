"""The README is what a newcomer reads (issue 23): short, the plugin's first use on its first
screen, the two set-up commands of this repository and no other, and a link to every page that
holds the rest."""

from __future__ import annotations

import re

from tests.docs.test_examples import FENCE, _commands, _console
from tests.support.stack import ROOT

README = ROOT / "README.md"
MAX_LINES = 300
FIRST_SCREEN = 60  # lines
SET_UP = ["scripts/demo", "scripts/test"]
# what the README shows of the plugin's own use; any other command is one of this repository's
USAGE = re.compile(r"^(pip install (pytest-bluegreen|'pytest-bluegreen\[)|pytest |bluegreen )")


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line of the block, command) for every command of a ```bash/```sh/```console block."""
    found = []
    for block in FENCE.finditer(text):
        line = text[: block.start()].count("\n") + 1
        language, body = block.group(1), block.group(2)
        if language == "console":
            found += [(line, example.command) for example in _console("", body)]
        elif language in {"bash", "sh", "shell"}:
            found += [(line, command) for command in _commands(body)]
    return found


def set_up_commands(text: str) -> list[str]:
    return [command for _, command in shell_commands(text) if not USAGE.match(command)]


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"


def test_the_readme_has_exactly_the_two_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert set_up_commands(text) == SET_UP
    [(line, _)] = [(n, c) for n, c in shell_commands(text) if c == "scripts/demo"]
    assert line <= FIRST_SCREEN, f"the set-up commands start at line {line}"


def test_the_first_screen_shows_the_first_use() -> None:
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    commands = [command for _, command in shell_commands(first)]
    assert "pip install pytest-bluegreen" in commands
    assert any(command.startswith("bluegreen init ") for command in commands)
    assert "pytest checks --env green -m quick --switch" in commands
    picture = [b.group(2) for b in FENCE.finditer(first) if b.group(1) == "text"]
    assert picture, "the four-step picture"
    steps = [picture[0].find(step) for step in ("checks", "decision", "journaled switch", "bake")]
    assert -1 not in steps, "checks, decision, journaled switch, bake"
    assert steps == sorted(steps), "checks -> decision -> journaled switch -> bake"


def test_every_page_is_linked_from_the_readme() -> None:
    links = set(re.findall(r"\]\(([^)#\s]+)", README.read_text(encoding="utf-8")))
    pages = {"CONTRIBUTING.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))}
    assert pages - links == set()


def test_a_set_up_command_is_told_from_the_plugins_use() -> None:
    """The rule above on the README this test was written against: commands of the repository
    beside the two (a benchmark, a script) were shown to every reader."""
    old = (
        "```bash\nscripts/demo    # the main job\nscripts/test\n```\n"
        "```bash\npytest checks --env green -m quick --switch\nbluegreen status\n"
        "pip install 'pytest-bluegreen[docker]'\n```\n"
        "```bash\n.venv/bin/python -m benchmarks.cycle   # set-up, deploy->verify->switch\n```\n"
    )
    assert set_up_commands(old) == [*SET_UP, ".venv/bin/python -m benchmarks.cycle"]
