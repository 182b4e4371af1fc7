"""Deploy engines: what runs the colors. The gate, the checks and the switch do not care which.

An engine deploys a color at a tag (backup first, then up, then wait until healthy), tears a
color down, and says which tag and which image a color runs. :func:`engine_for` picks the
engine the settings name (what an engine is: ``base.py``); each engine's module imports its
Docker clients only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .base import DeployEngine, DeployResult, EngineBlind, ImageUnknown, Occupant, image_tag

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
        from .swarmtasks import SERVICE_NAME_LABEL, STACK_LABEL  # noqa: PLC0415

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
