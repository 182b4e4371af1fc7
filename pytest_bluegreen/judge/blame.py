"""Environmental or the build? A failed check of the target color is run again on the other color
before the gate decides: failing there too it is *environmental* (when every failed check is,
the gate says inconclusive), passing there it is *the build*, and when it cannot tell it is
*unknown*, counted as the build. ``blame = auto|on|off``; the behaviour is described in
docs/after-the-switch.md, "Environmental or the build? (blame)".
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Blame", "Blamed", "Culprit", "TwinRun", "blame_failures", "twin_key"]


class Culprit(enum.StrEnum):
    ENVIRONMENT = "environmental"
    BUILD = "build"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Blamed:
    """One failed check of the target and what its twin on the other color did."""

    nodeid: str
    twin: str | None  # the twin's node id, None when there is none
    culprit: Culprit
    detail: str  # "fails on blue too", "passes on blue", "no such check for blue"

    def line(self, target: str) -> str:
        said = {
            Culprit.ENVIRONMENT: "environmental",
            Culprit.BUILD: f"the build of {target}",
            Culprit.UNKNOWN: f"unknown, counted as the build of {target}",
        }[self.culprit]
        return f"blame: {self.nodeid} {self.detail}: {said}"


@dataclass(frozen=True)
class Blame:
    target: str
    other: str
    checks: tuple[Blamed, ...]

    @property
    def environmental(self) -> bool:
        """Every failed check of the target fails on the other color too."""
        return bool(self.checks) and all(c.culprit is Culprit.ENVIRONMENT for c in self.checks)

    def summary(self) -> str:
        both = [c for c in self.checks if c.culprit is Culprit.ENVIRONMENT]
        if self.environmental:
            return (
                f"environmental: {len(both)} failed check(s) of {self.target} fail on "
                f"{self.other} too ({', '.join(c.nodeid for c in both)}): a shared service, "
                "the network or the check itself, not the build"
            )
        build = [c for c in self.checks if c.culprit is not Culprit.ENVIRONMENT]
        return (
            f"the build: {len(build)} failed check(s) of {self.target} pass on {self.other} "
            f"or cannot be tried there ({', '.join(c.nodeid for c in build)})"
        )

    def lines(self) -> list[str]:
        return [c.line(self.target) for c in self.checks]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "other": self.other,
            "environmental": self.environmental,
            "checks": [
                {"nodeid": c.nodeid, "twin": c.twin, "culprit": str(c.culprit), "detail": c.detail}
                for c in self.checks
            ],
        }


# a failed check's node id -> (its twin's node id, the twin's outcome: "passed", "failed",
# "skipped"), or None when the check has no twin on the other color
TwinRun = Callable[[str], tuple[str, str] | None]


def twin_key(module: str, name: str, params: Mapping[str, object]) -> tuple[str, str, str]:
    """What a check and its twin on the other color share: module, function, every parameter
    but the color."""
    rest = ",".join(f"{k}={params[k]!r}" for k in sorted(params) if k != "color")
    return module, name, rest


def blame_failures(target: str, other: str, failed: Sequence[str], run_twin: TwinRun) -> Blame:
    """Run each failed check's twin on ``other`` and say whom each failure is on."""
    checks = []
    for nodeid in dict.fromkeys(failed):  # a check failed in call and teardown: once
        ran = run_twin(nodeid)
        if ran is None:
            checks.append(Blamed(nodeid, None, Culprit.UNKNOWN, f"has no twin for {other}"))
            continue
        twin, outcome = ran
        if outcome == "failed":
            checks.append(Blamed(nodeid, twin, Culprit.ENVIRONMENT, f"fails on {other} too"))
        elif outcome == "passed":
            checks.append(Blamed(nodeid, twin, Culprit.BUILD, f"passes on {other}"))
        else:
            checks.append(Blamed(nodeid, twin, Culprit.UNKNOWN, f"was {outcome} on {other}"))
    return Blame(target, other, tuple(checks))
