"""Which build answered: every answer a check gets from a color, and every HAProxy slot of the
color, tied to the build it came from, so that the gate never judges one build and switches to
another.

An answer names where it came from in two ways: the application's version header
(``version_header``: what the build *claims*), and the server header HAProxy adds
(``server_header``, ``BACKEND/SERVER ADDR:PORT``: where HAProxy *sent* the request). The deploy
engine maps an address to the container or Swarm task that has it, and so to its image
(:meth:`~pytest_bluegreen.engines.DeployEngine.occupants`). The image decides when the engine
knows the address: a build that misreports its version is a failed check
(``test_version_is_deployed_tag``), not another build. The claimed version decides otherwise (no
server header, no Docker engine to ask, an address the engine does not know). An answer that
names neither (HAProxy's own 503 while no server is UP) is not counted; when none of the
target's answers named its build, the gate says so.

Where it happens: each process keeps an :class:`AnswerLog` (the ``http`` fixture's
``ColorSession`` adds to it); the plugin moves what a test phase heard onto its report
(``user_properties``, which pytest-xdist carries to the controller); ``outcomes.Outcomes``
counts it per color; the gate resolves it (:func:`resolve`) and ``gate.decide`` refuses, as
inconclusive, answers of the target from another build than the deployed one
(:func:`answers_problem`). Before the checks and again before the switch, every slot of the
target must run the deployed image (:func:`color_slots`, :func:`slot_problems`; the waiting is
``deploy.DeployStep.wait_slots``).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_bluegreen.engines import Occupant
    from pytest_bluegreen.haproxy.answers import ServerRef, ServerState

__all__ = [
    "HEARD_PROPERTY",
    "AnswerLog",
    "Build",
    "BuildEvidence",
    "Heard",
    "answers_problem",
    "color_slots",
    "heard_in",
    "resolve",
    "slot_problems",
]

HEARD_PROPERTY = "bluegreen_heard"  # on a report: JSON [[color, version, server, endpoint, n]]
_NO_SERVER = "<NOSRV>"  # HAProxy's %s when no server took the request


@dataclass(frozen=True)
class Heard:
    """What one answer said about where it came from; None where it said nothing."""

    version: str | None = None  # the application's version header
    server: str | None = None  # HAProxy's BACKEND/SERVER
    endpoint: str | None = None  # the server's ADDR:PORT, as HAProxy connected to it

    @classmethod
    def of(cls, headers: Mapping[str, str], *, version_header: str, server_header: str) -> Heard:
        version = (headers.get(version_header) or "").strip() or None
        server = endpoint = None
        said = (headers.get(server_header) or "").strip()
        if said:
            name, _, where = said.rpartition(" ")
            if not name:
                name, where = where, ""
            if name and _NO_SERVER not in name:
                server = name
                host, _, port = where.rpartition(":")
                endpoint = (
                    where if host.strip("[]:") and port.isascii() and port.isdigit() else None
                )
        return cls(version, server, endpoint)

    @property
    def named(self) -> bool:
        """It says something about its build: a version, or an address HAProxy sent it to."""
        return bool(self.version or self.endpoint)


class AnswerLog:
    """What the colors' answers said in this process since the last report (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heard: Counter[tuple[str, Heard]] = Counter()

    def add(self, color: str, heard: Heard) -> None:
        with self._lock:
            self._heard[(color, heard)] += 1

    def attach(self, report: pytest.TestReport) -> None:
        """Move what was heard since the last report onto this one (a string: xdist carries
        it to the controller as it is)."""
        with self._lock:
            taken, self._heard = self._heard, Counter()
        if taken:
            rows = [[c, h.version, h.server, h.endpoint, n] for (c, h), n in taken.items()]
            report.user_properties.append((HEARD_PROPERTY, json.dumps(rows)))


def heard_in(report: pytest.TestReport) -> list[tuple[str, Heard, int]]:
    """(color, what an answer said, how many answers said it) carried by a report."""
    found: list[tuple[str, Heard, int]] = []
    for name, value in report.user_properties:
        if name != HEARD_PROPERTY:
            continue
        try:
            rows: Any = json.loads(str(value))
            for color, version, server, endpoint, count in rows:
                found.append((str(color), Heard(version, server, endpoint), int(count)))
        except (TypeError, ValueError):  # not ours after all: nothing to count
            continue
    return found


@dataclass(frozen=True, order=True)
class Build:
    """The build an answer came from: its image's tag (``by`` "image") or the version it
    claimed (``by`` "version header"), and what answered (for the reason line)."""

    tag: str
    by: str
    source: str = ""


def resolve(
    heard: Mapping[Heard, int], occupants: Mapping[str, Sequence[Occupant]]
) -> Counter[Build]:
    """Each answer's build: the image of what runs at the address HAProxy sent it to, when the
    engine knows it (several images over time: all of them, which is no one build); else the
    version it claimed."""
    builds: Counter[Build] = Counter()
    for one, count in heard.items():
        via = f" via {one.server}" if one.server else ""
        found = occupants.get(one.endpoint or "", ())
        if found:
            tags = " or ".join(sorted({o.tag for o in found}))
            source = f"{'; '.join(o.describe() for o in found)} at {one.endpoint}{via}"
            builds[Build(tags, "image", source)] += count
        elif one.version:
            where = f" at {one.endpoint}" if one.endpoint else ""
            source = f"{one.server or 'answer'}{where}"
            builds[Build(one.version, "version header", source)] += count
    return builds


@dataclass(frozen=True)
class BuildEvidence:
    """What the target's answers said about their build, for ``gate.decide``."""

    expected: str | None  # --deploy TAG, else --deployment-tag, else None
    answers: Mapping[Build, int]  # the answers that named their build, by build
    # with an expected build: why nothing tied the checks to it (no answer named its build and
    # the deploy engine could not show every HAProxy slot running it), else None
    unverified: str | None = None


def answers_problem(color: str, evidence: BuildEvidence) -> str | None:
    """Why the answers of ``color`` cannot stand for the deployed build, or None.

    With an expected tag: any answer from another build, or nothing at all that ties the
    checks to it (``unverified``). Without one: answers from more than one build (one color,
    two builds: the checks judged a mixture)."""
    answers = evidence.answers
    total = sum(answers.values())
    expected = evidence.expected
    if expected is not None and evidence.unverified is not None:
        return evidence.unverified
    if not total:
        return None
    if expected is not None:
        foreign = {b: n for b, n in answers.items() if b.tag != expected}
        if not foreign:
            return None
        count = sum(foreign.values())
        return (
            f"{count} of {total} answer(s) from {color} came from another build than the "
            f"deployed {expected}: {_by_tag(foreign)}; the checks did not judge {expected} alone"
        )
    tags = {b.tag for b in answers}
    if len(tags) < 2:
        return None
    return (
        f"the {total} answers from {color} came from {len(tags)} builds: {_by_tag(answers)}; "
        "one color, several builds: the checks judged a mixture (--deploy or --deployment-tag "
        "names the build meant)"
    )


def _by_tag(builds: Mapping[Build, int]) -> str:
    """``v1.0.0 (3 answers, by image: task ... at 10.0.1.5:8000 via b/s)``, per tag."""
    counts: Counter[str] = Counter()
    sources: dict[str, list[str]] = {}
    for build, count in sorted(builds.items()):
        counts[build.tag] += count
        shown = sources.setdefault(build.tag, [])
        label = f"by {build.by}: {build.source}" if build.source else f"by {build.by}"
        if label not in shown:
            shown.append(label)
    parts = []
    for tag, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        more = len(sources[tag]) - 2
        said = "; ".join(sources[tag][:2]) + (f"; and {more} more" if more > 0 else "")
        parts.append(f"{tag} ({count} answer{'s' if count != 1 else ''}, {said})")
    return ", ".join(parts)


def color_slots(states: Iterable[ServerState], servers: Collection[ServerRef]) -> list[ServerState]:
    """The color's filled slots: its own servers (the ones a switch gives traffic to), and
    every other server HAProxy has that points where they point (the same DNS name for
    ``server-template`` slots, else the same address: the color's direct backend, where its
    checks go)."""
    every = list(states)
    mine = [s for s in every if s.ref in servers]
    names = {s.fqdn for s in mine if s.fqdn}
    endpoints = {s.endpoint for s in mine if not s.fqdn and s.endpoint}
    return [
        s
        for s in every
        if s.endpoint
        and (
            s.ref in servers
            or (s.fqdn and s.fqdn in names)
            or (not s.fqdn and s.endpoint in endpoints)
        )
    ]


def slot_problems(
    slots: Sequence[tuple[str, str]], occupants: Mapping[str, Sequence[Occupant]], tag: str
) -> list[str] | None:
    """For each (slot label, endpoint) that does not run ``tag`` now, what it runs; [] when
    every slot does; None when the engine knows none of them (it does not run this color:
    nothing to judge the slots by)."""
    if not any(occupants.get(endpoint) for _, endpoint in slots):
        return None
    problems = []
    for label, endpoint in slots:
        found = occupants.get(endpoint, ())
        running = [o for o in found if o.current]
        if running and all(o.tag == tag for o in running):
            continue
        if not found:
            problems.append(f"{label} at {endpoint}: nothing the engine knows answers there")
        else:
            shown = running or list(found)
            problems.append(f"{label} at {endpoint}: {'; '.join(o.describe() for o in shown)}")
    return problems
