"""The suite's durations, by module and by fixture set-up: the tables of CONTRIBUTING.md.

    scripts/test --durations=0 2>&1 | tee /tmp/suite.log
    .venv/bin/python -m benchmarks.durations /tmp/suite.log

Reads pytest's ``--durations=0`` lines (``12.34s call     tests/gate/test_x.py::test_y[p]``) and
prints three Markdown tables: the seconds of each xdist group (one worker runs a group's tests
one after the other: the largest group is a floor of the wall time, the sum over the workers
another), each module's seconds (set-up, call and teardown summed, its share of the total, its
tests, its group), and the slowest set-ups (a set-up that takes seconds is a module or session
fixture: the first test to use it pays for it).

    .venv/bin/python -m benchmarks.durations --slow 2 /tmp/suite.log > tests/slow.txt

writes the fast tier's list instead: every test outside the Docker groups whose set-up, call and
teardown took ``2`` seconds or more in that (full) run, which ``tests/conftest.py`` marks
``slow`` (``scripts/test --fast`` leaves them to the full run).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

LINE = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S+?)::(\S+)\s*$")
SLOWEST_SETUPS = 15
# under xdist a grouped test's id ends with its group (tests/conftest.py): ``@docker``,
# ``@machine``, ``@quiet``
GROUP = re.compile(r"@(\w+)\]?$")


@dataclass
class Module:
    setup: float = 0.0
    call: float = 0.0
    teardown: float = 0.0
    tests: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)

    @property
    def total(self) -> float:
        return self.setup + self.call + self.teardown


def read(lines: Iterable[str]) -> tuple[dict[str, Module], list[tuple[float, str, str]]]:
    modules: dict[str, Module] = defaultdict(Module)
    setups: list[tuple[float, str, str]] = []
    for line in lines:
        found = LINE.match(line)
        if found is None:
            continue
        seconds, phase, module, test = float(found[1]), found[2], found[3], found[4]
        entry = modules[module]
        setattr(entry, phase, getattr(entry, phase) + seconds)
        entry.tests.add(test)
        if group := GROUP.search(test):
            entry.groups.add(group[1])
        if phase == "setup":
            setups.append((seconds, module, test))
    return dict(modules), sorted(setups, reverse=True)[:SLOWEST_SETUPS]


def by_group(lines: Iterable[str]) -> dict[str, float]:
    """Seconds per xdist group ("spread": the tests of none). A group runs on one worker, one
    test after the other: the largest is the least the wall time can be, whatever the workers;
    the sum over the workers is the other bound."""
    seconds: dict[str, float] = defaultdict(float)
    for line in lines:
        found = LINE.match(line)
        if found is not None:
            group = GROUP.search(found[4])
            seconds[group[1] if group else "spread"] += float(found[1])
    return dict(seconds)


# the groups whose tests need Docker: marked ``docker`` by their fixtures, never in the fast tier
DOCKER_GROUPS = ("docker", "machine")
SLOW_HEADER = """\
# The fast tier leaves these to the full run: each took {seconds:g} s or more (set-up, call and
# teardown) in a full run of the suite on the 2-core development machine. tests/conftest.py
# marks them ``slow``; scripts/test --fast runs -m "not docker and not slow". Written by
#   .venv/bin/python -m benchmarks.durations --slow {seconds:g} LOG > tests/slow.txt
# from a full run's ``scripts/test --durations=0`` output (CONTRIBUTING.md, the tiers).
"""


def slow_list(lines: Iterable[str], seconds: float) -> list[str]:
    """The ids (``module::test[params]``, without an xdist group's ``@GROUP``) of the tests
    outside the Docker groups that took ``seconds`` or more, sorted."""
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        found = LINE.match(line)
        if found is None:
            continue
        group = GROUP.search(found[4])
        if group is not None and group[1] in DOCKER_GROUPS:
            continue
        test = found[4][: group.start()] if group is not None else found[4]
        totals[f"{found[3]}::{test}"] += float(found[1])
    return sorted(test for test, total in totals.items() if total >= seconds)


def tables(modules: dict[str, Module], setups: list[tuple[float, str, str]]) -> str:
    total = sum(m.total for m in modules.values()) or 1.0
    rows = [
        "| module (xdist group) | tests | set-up s | call s | teardown s | total s | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in sorted(modules.items(), key=lambda item: -item[1].total):
        groups = f" ({', '.join(sorted(m.groups))})" if m.groups else ""
        rows.append(
            f"| `{name}`{groups} | {len(m.tests)} | {m.setup:.0f} | {m.call:.0f} | "
            f"{m.teardown:.0f} | {m.total:.0f} | {100 * m.total / total:.1f}% |"
        )
    rows.append(f"| all | {sum(len(m.tests) for m in modules.values())} | | | | {total:.0f} | |")
    rows += ["", "| set-up s | the test that paid for it |", "|---:|---|"]
    rows += [f"| {seconds:.1f} | `{module}::{test}` |" for seconds, module, test in setups]
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    slow: float | None = None
    if len(argv) == 3 and argv[0] == "--slow":
        slow, argv = float(argv[1]), argv[2:]
    if len(argv) != 1:
        usage = "usage: python -m benchmarks.durations [--slow SECONDS] PYTEST_OUTPUT"
        print(usage, file=sys.stderr)
        return 2
    lines = Path(argv[0]).read_text(errors="replace").splitlines()
    if slow is not None:
        found = slow_list(lines, slow)
        if not found:
            print(f"no --durations=0 lines of {slow:g} s or more in {argv[0]}", file=sys.stderr)
            return 1
        print(SLOW_HEADER.format(seconds=slow) + "\n".join(found))
        return 0
    modules, setups = read(lines)
    if not modules:
        print(f"no --durations=0 lines in {argv[0]}", file=sys.stderr)
        return 1
    groups = by_group(lines)
    print("| xdist group | seconds | share |\n|---|---:|---:|")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"| {group} | {seconds:.0f} | {100 * seconds / sum(groups.values()):.1f}% |")
    print()
    print(tables(modules, setups))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
