"""What an engine is (:class:`DeployEngine`) and what it answers: a deployed color
(:class:`DeployResult`), what runs at an address (:class:`Occupant`), and why it cannot tell
(:class:`EngineBlind`, :class:`ImageUnknown`). The engines' modules build on it; the
package's ``__init__`` picks an engine."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pytest_bluegreen.errors import BluegreenError, ExitCode, Refused

__all__ = [
    "DeployEngine",
    "DeployResult",
    "EngineBlind",
    "ImageUnknown",
    "Occupant",
    "image_tag",
]


class EngineBlind(BluegreenError):
    """The engine cannot look at what runs (no Docker engine answers, the docker extra is
    missing, not a swarm manager): what answers behind HAProxy's servers is not known. Its
    callers fall back on the answers' version header; one that did not would refuse (exit 7),
    as :class:`ImageUnknown` does."""

    exit_code = ExitCode.REFUSED


def image_tag(image: str) -> str:
    """``registry:5000/jarvis:v1@sha256:...`` -> ``v1`` (``latest`` when none)."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.partition(":")[2] or "latest"


@dataclass(frozen=True)
class Occupant:
    """A container or a Swarm task that answers (or answered) at an address, and its image."""

    name: str  # sutazai-blue-backend; task bluegreen_blue-api.1.x3f2a1b9c
    image: str  # bluegreen/jarvis:v1.0.0
    current: bool = True  # running, and meant to (not a task being shut down, nor a dead one)
    state: str = ""  # what the engine says of one that is not current ("being shut down")

    @property
    def tag(self) -> str:
        return image_tag(self.image)

    def describe(self) -> str:
        said = "" if self.current else f", {self.state or 'not running any more'}"
        return f"{self.name} ({self.image}{said})"


class ImageUnknown(Refused):
    """What a color runs cannot be told now: no engine answers, no access to it, nothing of
    the color runs, or its replicas run different images (a rollout under way). Whoever
    needs the build tied to what was checked fails closed on it."""


@dataclass(frozen=True)
class DeployResult:
    """A color deployed at a tag and healthy."""

    color: str
    tag: str
    services: tuple[str, ...]
    seconds: float
    backup: Path | None = None
    previous_tag: str | None = None  # the tag the color ran before, if known
    notes: tuple[str, ...] = ()


class DeployEngine(Protocol):
    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        """Back up, bring the color up at ``tag``, wait until healthy; raise DeployError."""
        ...

    def teardown(self, color: str) -> None:
        """Stop and remove the color's containers; raise DeployError."""
        ...

    def deployed_tag(self, color: str) -> str | None:
        """The tag the color was last deployed at, if known."""
        ...

    def occupants(self, endpoints: Collection[str]) -> Mapping[str, tuple[Occupant, ...]]:
        """What runs, or ran, at each ``ADDR:PORT`` HAProxy connects to (its servers'
        addresses): the containers or tasks the engine knows there, current ones first; an
        endpoint it knows nothing of is left out. Raises EngineBlind when it cannot look."""
        ...

    def image_of(self, color: str) -> str:
        """What the color runs now, as one comparable string: each of its services and the
        image it runs (``blue-backend=sha256:...``). Raise ImageUnknown when it cannot be
        told."""
        ...
