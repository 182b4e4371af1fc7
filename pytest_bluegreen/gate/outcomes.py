"""Per-color outcomes, collected on the controller from test reports (works under xdist).

Workers tag each report with its color through ``user_properties`` (serialised by xdist), so the
controller never needs ``session.items``; what the color's answers said about their build
travels the same way (``builds.HEARD_PROPERTY``) and is counted here per answering color.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the plugin reads this module's names in every session; a gate counts
    from .builds import Heard

__all__ = [
    "COLOR_PROPERTY",
    "FAILURE_PROPERTY",
    "SHARED",
    "UNREACHABLE_PROPERTY",
    "ColorOutcomes",
    "Outcomes",
    "color_of",
]

COLOR_PROPERTY = "bluegreen_color"
FAILURE_PROPERTY = "bluegreen_failure"  # "infrastructure" or "check", set on failed reports
UNREACHABLE_PROPERTY = "bluegreen_unreachable"  # the part an infrastructure failure names
SHARED = "shared"


@dataclass
class ColorOutcomes:
    """Counts for one color (or for the shared checks)."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    unreachable: int = 0  # failures and errors caused by infrastructure (refused, timeout, ...)
    failed_ids: list[str] = field(default_factory=list)
    # what the color's answers said about their build (version, HAProxy server), counted
    heard: Counter[Heard] = field(default_factory=Counter)

    @property
    def ran(self) -> int:
        return self.passed + self.failed + self.errors + self.xpassed

    def summary(self) -> str:
        parts = [
            f"{n} {label}"
            for n, label in (
                (self.passed, "passed"),
                (self.failed, "failed"),
                (self.errors, "errors"),
                (self.skipped, "skipped"),
                (self.xfailed, "xfailed"),
                (self.xpassed, "xpassed"),
            )
            if n
        ]
        if self.unreachable:
            parts.append(f"{self.unreachable} of them unreachable (infrastructure)")
        return ", ".join(parts) or "none selected"


class Outcomes:
    """Counts by color key: a color name, ``shared``, or ``None`` for untagged tests."""

    def __init__(self) -> None:
        self._by_key: defaultdict[str | None, ColorOutcomes] = defaultdict(ColorOutcomes)

    def __getitem__(self, key: str | None) -> ColorOutcomes:
        return self._by_key[key]

    def as_dict(self) -> dict[str | None, ColorOutcomes]:
        return dict(self._by_key)

    def add(self, report: pytest.TestReport) -> None:
        self._count_heard(report)
        key = color_of(report)
        counts = self._by_key[key]
        if report.failed and (FAILURE_PROPERTY, "infrastructure") in report.user_properties:
            counts.unreachable += 1
        if report.when == "call":
            _count_call(counts, report)
        else:
            _count_setup_or_teardown(counts, report)

    def _count_heard(self, report: pytest.TestReport) -> None:
        """What the answers of any phase said about their build (fixtures ask too), counted for
        the color that answered."""
        from .builds import heard_in  # noqa: PLC0415 - a gate's, not every session's

        for color, heard, count in heard_in(report):
            self._by_key[color].heard[heard] += count


def _count_call(counts: ColorOutcomes, report: pytest.TestReport) -> None:
    """The test's own outcome: passed, failed, skipped, or an xfail's xfailed/xpassed."""
    if hasattr(report, "wasxfail"):
        if report.skipped:
            counts.xfailed += 1
        else:
            counts.xpassed += 1
    elif report.passed:
        counts.passed += 1
    elif report.failed:
        counts.failed += 1
        counts.failed_ids.append(report.nodeid)
    elif report.skipped:
        counts.skipped += 1


def _count_setup_or_teardown(counts: ColorOutcomes, report: pytest.TestReport) -> None:
    """A failing setup or teardown is an error; a skip in setup (``skip``/``xfail`` marks, a
    fixture that skips) counts as the test's outcome."""
    if report.failed:
        counts.errors += 1
        counts.failed_ids.append(report.nodeid)
    elif report.skipped and report.when == "setup":
        if hasattr(report, "wasxfail"):
            counts.xfailed += 1
        else:
            counts.skipped += 1


def color_of(report: pytest.TestReport) -> str | None:
    for name, value in report.user_properties:
        if name == COLOR_PROPERTY:
            return str(value)
    return None
