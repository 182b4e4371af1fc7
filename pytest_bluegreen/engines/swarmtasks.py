"""A swarm stack as Swarm reports it: its services (:func:`find_service`), what each is set to
run (:class:`ServiceSpec`), their tasks (:class:`Replica`, :func:`service_replicas`), which task
had an address (:func:`task_occupants`), and whether this Docker engine can deploy to its swarm
(:func:`swarm_problem`). Read with the docker SDK; nothing here changes the swarm.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.settings import SwarmSettings, Topology

from .base import Occupant, image_tag
from .compose import docker_client, endpoint_host

if TYPE_CHECKING:
    import docker

__all__ = [
    "SERVICE_NAME_LABEL",
    "STACK_LABEL",
    "Replica",
    "ServiceSpec",
    "color_replicas",
    "find_service",
    "service_replicas",
    "swarm_problem",
    "task_occupants",
    "without_digest",
]

SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
STACK_LABEL = "com.docker.stack.namespace"


@dataclass(frozen=True)
class Replica:
    """One task of a color's service, as Swarm reports it."""

    service: str  # the stack's service name (green-api)
    slot: int
    node: str  # the node's hostname
    state: str  # Swarm's task state: running, starting, failed, ...
    desired: str  # the state Swarm wants: running, shutdown
    image: str  # without a digest
    error: str
    container_id: str

    @property
    def tag(self) -> str:
        return image_tag(self.image)

    @property
    def healthy(self) -> bool:
        """Swarm counts a task with a health check ``running`` only once it is healthy."""
        return self.state == "running" and self.desired == "running"


@dataclass(frozen=True)
class ServiceSpec:
    """What a service is set to run: its image (without a digest) and its replica count
    (None: not a replicated service, e.g. global)."""

    image: str
    replicas: int | None

    @classmethod
    def of(cls, svc: Any) -> ServiceSpec:
        spec: dict[str, Any] = svc.attrs.get("Spec", {})
        container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
        replicated = (spec.get("Mode") or {}).get("Replicated")
        replicas = None if replicated is None else int(replicated.get("Replicas", 0))
        return cls(without_digest(str(container.get("Image", ""))), replicas)


def without_digest(spec_image: str) -> str:
    return spec_image.split("@", 1)[0]


def _nodes(client: docker.DockerClient) -> dict[str, str]:
    return {
        str(node.id): str(node.attrs.get("Description", {}).get("Hostname", node.id))
        for node in client.nodes.list()
    }


def find_service(client: docker.DockerClient, swarm: SwarmSettings, service: str) -> Any:
    """The swarm service of one of the stack's services (its exact name), or None."""
    name = swarm.service(service)
    return next((s for s in client.services.list(filters={"name": name}) if s.name == name), None)


def service_replicas(
    client: docker.DockerClient, swarm: SwarmSettings, services: Iterable[str]
) -> list[Replica]:
    """Every task Swarm keeps for these services (by their stack names), newest first; a
    service not in the stack (removed, also while it is read) has none."""
    from docker.errors import NotFound  # noqa: PLC0415 - the SDK is there: client is one of it

    nodes = _nodes(client)
    found: list[Replica] = []
    for service in services:
        svc = find_service(client, swarm, service)
        if svc is not None:
            try:
                every: list[dict[str, Any]] = svc.tasks()
            except NotFound:
                continue
            tasks = sorted(every, key=lambda t: str(t.get("UpdatedAt", "")), reverse=True)
            for task in tasks:
                status: dict[str, Any] = task.get("Status", {})
                image = task.get("Spec", {}).get("ContainerSpec", {}).get("Image", "")
                found.append(
                    Replica(
                        service=service,
                        slot=int(task.get("Slot", 0)),
                        node=nodes.get(str(task.get("NodeID", "")), str(task.get("NodeID", "-"))),
                        state=str(status.get("State", "")),
                        desired=str(task.get("DesiredState", "")),
                        image=without_digest(str(image)),
                        error=str(status.get("Err", "")),
                        container_id=str(
                            status.get("ContainerStatus", {}).get("ContainerID", "") or ""
                        ),
                    )
                )
    return found


def task_occupants(
    client: docker.DockerClient, swarm: SwarmSettings, endpoints: Collection[str]
) -> dict[str, tuple[Occupant, ...]]:
    """The stack's tasks that have, or had, each endpoint's address on one of their networks
    (Swarm keeps a task's addresses in its history after it stopped), running ones first. The
    port is the container's own: a task's address is its alone."""
    hosts: dict[str, list[str]] = {}
    for endpoint in endpoints:
        hosts.setdefault(endpoint_host(endpoint)[0], []).append(endpoint)
    found: dict[str, list[Occupant]] = {}
    stack = f"{STACK_LABEL}={swarm.stack_name}"
    services: list[Any] = client.services.list(filters={"label": stack})
    for svc in services:
        tasks: list[dict[str, Any]] = svc.tasks()
        for task in tasks:
            status: dict[str, Any] = task.get("Status", {})
            state, desired = str(status.get("State", "")), str(task.get("DesiredState", ""))
            running = desired == "running" and state == "running"
            said = f"{state}, desired {desired}" if state == "running" else state
            image = without_digest(
                str(task.get("Spec", {}).get("ContainerSpec", {}).get("Image", ""))
            )
            name = f"task {svc.name}.{task.get('Slot', '-')}.{str(task.get('ID', ''))[:10]}"
            occupant = Occupant(name, image, running, "" if running else said)
            for attachment in task.get("NetworksAttachments") or []:
                for address in attachment.get("Addresses") or []:
                    for endpoint in hosts.get(str(address).partition("/")[0], []):
                        found.setdefault(endpoint, []).append(occupant)
    return {e: tuple(sorted(o, key=lambda x: not x.current)) for e, o in found.items()}


def swarm_problem(facts: Mapping[str, Any]) -> str | None:
    """Why an engine cannot deploy to a swarm, from ``docker info``'s Swarm facts
    (``LocalNodeState``, ``ControlAvailable``, ``Error``, ``RemoteManagers``); None for a
    manager of an active swarm."""
    state = str(facts.get("LocalNodeState") or "inactive")
    error = str(facts.get("Error") or "").strip()
    if state == "inactive":
        return (
            'this Docker engine is not part of a swarm (deploy_engine = "swarm"): run '
            "'docker swarm init', or point DOCKER_HOST at a manager of your swarm"
        )
    if state == "locked":
        return (
            "this Docker engine's swarm is locked (autolock, after a restart): run 'docker "
            "swarm unlock' with the unlock key, then deploy"
        )
    if state == "pending":
        return (
            "this Docker engine is still joining its swarm (state pending): deploy once "
            "'docker info' says the swarm is active"
        )
    if state != "active":
        said = f": {error}" if error else ""
        return f"this Docker engine's swarm is in state {state!r}{said}; deploys need it active"
    if not facts.get("ControlAvailable"):
        managers = [str(m.get("Addr")) for m in facts.get("RemoteManagers") or () if m.get("Addr")]
        known = f"; its managers: {', '.join(managers)}" if managers else ""
        return (
            "this Docker engine is a swarm worker: deploys need a manager (point DOCKER_HOST "
            f"at one){known}"
        )
    return None


def color_replicas(swarm: SwarmSettings, topology: Topology) -> dict[str, list[Replica]] | None:
    """color -> its replicas that Swarm wants running; None without an engine or a swarm."""
    try:
        client = docker_client()
    except Exception:
        return None
    try:
        return {
            color: [
                r for r in service_replicas(client, swarm, cfg.services) if r.desired == "running"
            ]
            for color, cfg in topology.color.items()
        }
    except Exception:  # not a swarm manager: nothing to say
        return None
    finally:
        client.close()
