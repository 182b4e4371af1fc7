"""Deploy engines: what runs the colors. The gate, the checks and the switch do not care which.

An engine deploys a color at a tag (backup first, then up, then wait until healthy), tears a
color down, and says which tag and which image a color runs. :func:`engine_for` picks the
engine the settings name; each engine's module imports its Docker clients only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_bluegreen.errors import Refused

if TYPE_CHECKING:
    from docker.models.containers import Container

    import docker
    from pytest_bluegreen.settings import Settings

__all__ = [
    "DeployEngine",
    "DeployResult",
    "EngineBlind",
    "ImageUnknown",
    "Occupant",
    "engine_for",
    "image_tag",
    "stack_containers",
]


class EngineBlind(Exception):
    """The engine cannot look at what runs (no Docker engine answers, the docker extra is
    missing, not a swarm manager): what answers behind HAProxy's servers is not known."""


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


def engine_for(settings: Settings, progress: Callable[[str], None]) -> DeployEngine:
    """The engine ``deploy_engine`` names: Compose (one host) or Swarm (replicas on nodes)."""
    if settings.compose.deploy_engine == "swarm":
        from .swarm import SwarmEngine  # noqa: PLC0415 - Docker clients load only to deploy

        return SwarmEngine(
            settings.compose,
            settings.swarm,
            settings.topology,
            settings.state.tags_file,
            progress=progress,
        )
    from .compose import ComposeEngine  # noqa: PLC0415

    return ComposeEngine(settings.compose, settings.topology, settings.state.tags_file, progress)


def stack_containers(
    client: docker.DockerClient, settings: Settings, services: Iterable[str] | None = None
) -> list[tuple[str, Container]]:
    """(service, container) of the stack on this Docker host, of the given services only when
    given, found by the engine's labels: Compose's project and service labels, or Swarm's stack
    namespace and service name (every replica running here; a swarm's other nodes' replicas
    are Swarm's to report, see ``bluegreen status``)."""
    if settings.compose.deploy_engine == "swarm":
        from .swarm import SERVICE_NAME_LABEL, STACK_LABEL  # noqa: PLC0415

        stack = settings.swarm.stack_name
        found = client.containers.list(all=True, filters={"label": f"{STACK_LABEL}={stack}"})
        wanted = None if services is None else set(services)
        pairs = []
        for container in found:
            service = str(container.labels.get(SERVICE_NAME_LABEL, "")).removeprefix(f"{stack}_")
            if wanted is None or service in wanted:
                pairs.append((service, container))
        return pairs
    from .compose import SERVICE_LABEL, compose_containers  # noqa: PLC0415

    return [
        (str(c.labels.get(SERVICE_LABEL, c.name)), c)
        for c in compose_containers(client, settings.compose.project_name, services)
    ]
