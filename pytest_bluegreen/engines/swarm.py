"""Docker Swarm as the engine that runs the colors: one stack (``[swarm] stack_name``) whose
services are the colors' services (``blue-api``, ``green-api``) and the shared ones, each color's
services running ``replicas`` replicas, possibly over several nodes.

Deploying one color at a tag: the engine must be a swarm manager and the image present, optional
backup (``backup_command`` in a running task of ``backup_service`` on this node), then ``docker
service update --image`` of each of the color's services (``docker stack deploy`` the first
time, when the stack has no such service yet), and wait, with a deadline, until every replica
runs the new image and Swarm counts it running: a task with a health check is ``running`` only
once healthy. Progress is reported as the replicas come (``green: 1/2 replicas healthy``). A
rollout that fails (Swarm's own rollback on a failing update, or not healthy in time) is a
DeployError carrying the failing tasks' errors and logs, and, with ``rollback_failed_deploy``,
the service is rolled back (``docker service rollback``) to the image it ran before.

python-on-whales drives the docker CLI (stack deploy, service update/rollback/logs); the docker
SDK reads services and tasks (their full specs and states).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.extras import require
from pytest_bluegreen.settings import ComposeSettings, SwarmSettings, Topology, parsers

from .backup import run_backup
from .base import DeployResult, EngineBlind, ImageUnknown, Occupant, image_tag
from .compose import TagsFile, docker_client, endpoint_host, first_line, tag_variable

if TYPE_CHECKING:
    from python_on_whales import DockerClient, DockerException

    import docker

__all__ = [
    "Replica",
    "SwarmEngine",
    "color_replicas",
    "find_service",
    "replicas_variable",
    "swarm_problem",
    "task_occupants",
]

SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
STACK_LABEL = "com.docker.stack.namespace"
_FAILED_TASK_STATES = {"failed", "rejected", "orphaned"}
_ROLLBACK_STATES = {"rollback_started", "rollback_paused", "rollback_completed"}
_CLI_TIMEOUT = 120.0  # seconds a docker CLI command (detached: it does not wait) may take


def replicas_variable(color: str) -> str:
    """The stack file's variable that holds a color's replica count: ``GREEN_REPLICAS``."""
    return f"{color.upper().replace('-', '_')}_REPLICAS"


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
class _Spec:
    """What a service is set to run: its image (without a digest) and its replica count
    (None: not a replicated service, e.g. global)."""

    image: str
    replicas: int | None

    @classmethod
    def of(cls, svc: Any) -> _Spec:
        spec: dict[str, Any] = svc.attrs.get("Spec", {})
        container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
        replicated = (spec.get("Mode") or {}).get("Replicated")
        replicas = None if replicated is None else int(replicated.get("Replicas", 0))
        return cls(_image(str(container.get("Image", ""))), replicas)


def _image(spec_image: str) -> str:
    return spec_image.split("@", 1)[0]


def _repository(image: str) -> str:
    """``registry:5000/jarvis:v1`` -> ``registry:5000/jarvis``."""
    head, _, name = image.rpartition("/")
    return (f"{head}/" if head else "") + name.partition(":")[0]


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
                        image=_image(str(image)),
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
            image = _image(str(task.get("Spec", {}).get("ContainerSpec", {}).get("Image", "")))
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


class SwarmEngine:
    """Deploys, tears down and describes the colors of one swarm stack."""

    def __init__(
        self,
        compose: ComposeSettings,
        swarm: SwarmSettings,
        topology: Topology,
        tags_file: Path,
        *,
        progress: Callable[[str], None] = lambda line: None,
        client: DockerClient | None = None,
    ) -> None:
        whales = require("python_on_whales", "docker", "deploying with Docker Swarm")
        self.compose = compose
        self.swarm = swarm
        self.topology = topology
        self.progress = progress
        self.tags = TagsFile(tags_file)
        self._exception: type[DockerException] = whales.DockerException
        self.client: DockerClient = client or whales.DockerClient()
        self._sdk: docker.DockerClient | None = None

    @property
    def sdk(self) -> docker.DockerClient:
        if self._sdk is None:
            self._sdk = docker_client()
        return self._sdk

    # -- checks ------------------------------------------------------------------------------
    def check_engine(self) -> None:
        """The engine answers and is a manager of an active swarm; a DeployError otherwise."""
        try:
            info = self.sdk.info()
        except Exception as exc:
            raise DeployError(f"Docker engine not reachable: {exc}") from None
        problem = swarm_problem(info.get("Swarm") or {})
        if problem is not None:
            raise DeployError(problem)

    def image(self, color: str, tag: str) -> str:
        """The color's image at ``tag``: image_repository, else the service's own image name."""
        repository = self.compose.image_repository
        if repository is None:
            current = self._current_image(self.topology.color[color].services[0])
            if current is None:
                raise DeployError(
                    f"{color} has no service in stack {self.swarm.stack_name} yet and "
                    "image_repository is not set: say which image to deploy"
                )
            repository = _repository(current)
        return f"{repository}:{tag}"

    def check_image(self, image: str) -> None:
        """With pull policy ``never``, the image must be on this node (on a multi-node swarm:
        on every node, which only the nodes themselves can tell)."""
        if self.compose.pull != "never":
            return
        try:
            present = self.client.image.exists(image)
        except self._exception as exc:
            raise DeployError(f"cannot look for image {image}: {first_line(exc)}") from None
        if not present:
            raise DeployError(
                f"image {image} is not present on this node (pull policy 'never'); build it "
                "here, and on a multi-node swarm load it on every node or use a registry"
            )

    def _current_image(self, service: str) -> str | None:
        svc = find_service(self.sdk, self.swarm, service)
        if svc is None:
            return None
        spec = svc.attrs.get("Spec", {}).get("TaskTemplate", {}).get("ContainerSpec", {})
        return _image(str(spec.get("Image", ""))) or None

    def deployed_tag(self, color: str) -> str | None:
        try:
            current = self._current_image(self.topology.color[color].services[0])
        except Exception:
            current = None
        return image_tag(current) if current else self.tags.tag_of(color)

    def occupants(self, endpoints: Collection[str]) -> Mapping[str, tuple[Occupant, ...]]:
        try:
            client = self.sdk
        except Exception as exc:  # docker's DockerException, or the SDK missing
            raise EngineBlind(f"no Docker engine answers: {exc}") from None
        try:
            return task_occupants(client, self.swarm, endpoints)
        except Exception as exc:  # not a swarm manager: its tasks are not ours to read
            raise EngineBlind(f"cannot list the stack's tasks: {exc}") from None

    def image_of(self, color: str) -> str:
        """``service=image, ...``: the image every replica Swarm wants running was created
        with (its digest kept, when Swarm pinned one from a registry). Raises ImageUnknown when
        a service is missing, none of its replicas runs, or they run different images (a
        rollout under way)."""
        services = self.topology.color[color].services
        if not services:
            raise ImageUnknown(f"{color} has no services in the settings (colors.{color}.services)")
        try:
            parts = []
            for service in services:
                svc = find_service(self.sdk, self.swarm, service)
                if svc is None:
                    raise ImageUnknown(
                        f"{color}'s service {service} is not in stack {self.swarm.stack_name}"
                    )
                tasks = [t for t in svc.tasks() if t.get("DesiredState") == "running"]
                images = {
                    str(t.get("Spec", {}).get("ContainerSpec", {}).get("Image", "")) for t in tasks
                }
                if not any(t.get("Status", {}).get("State") == "running" for t in tasks):
                    raise ImageUnknown(f"no replica of {color}'s service {service} runs")
                if len(images) != 1 or "" in images:
                    raise ImageUnknown(
                        f"the replicas of {color}'s service {service} run {len(images)} "
                        "different images (a rollout under way?)"
                    )
                parts.append(f"{service}={images.pop()}")
            return ", ".join(parts)
        except ImageUnknown:
            raise
        except Exception as exc:  # no engine, not a manager, no permission
            raise ImageUnknown(
                f"cannot ask the swarm what {color} runs: {str(exc).splitlines()[0]}"
            ) from None

    # -- steps -------------------------------------------------------------------------------
    def backup(self, color: str, tag: str) -> Path | None:
        """The backup, run in a running task of ``backup_service`` on this node; None when no
        backup is configured or no task of it runs here (the very first deploy)."""
        s = self.compose
        if s.backup_service is None or not s.backup_command:
            return None
        running = [
            r
            for r in service_replicas(self.sdk, self.swarm, [s.backup_service])
            if r.healthy and r.container_id
        ]
        local = [
            r
            for r in running
            if self.sdk.containers.list(filters={"id": r.container_id}, all=False)
        ]
        if not local:
            return None
        return run_backup(s, ["docker", "exec", local[0].container_id], color, tag, self.progress)

    def check_stack_file(self, color: str, missing: list[str]) -> None:
        """The stack file, when the deploy needs it (some of the color's services are not in
        the stack yet): readable, before anything is backed up or changed."""
        path = self.swarm.stack_file
        try:
            path.read_bytes()
        except OSError as exc:
            why = "does not exist" if isinstance(exc, FileNotFoundError) else f"unreadable: {exc}"
            raise DeployError(
                f"stack file {path} {why}: deploying {color} needs it to create "
                f"{', '.join(missing)} (not in stack {self.swarm.stack_name} yet); nothing changed"
            ) from None

    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        services = list(self.topology.color[color].services)
        start = time.monotonic()
        self.check_engine()
        try:
            parsers.image_tag(tag)
        except ValueError as exc:
            raise DeployError(f"{tag!r} {exc}") from None
        image = self.image(color, tag)
        self.check_image(image)
        specs = {s: self._spec(s) for s in services}
        missing = [s for s, spec in specs.items() if spec is None]
        if missing:
            self.check_stack_file(color, missing)
        notes: list[str] = []
        saved: Path | None = None
        if backup:
            saved = self.backup(color, tag)
            if saved is None:
                notes.append("no backup: none configured, or no task of its service runs here")
        previous = self.deployed_tag(color)
        timeout = self.compose.deploy_timeout
        deadline = start + timeout
        before = {s: self._update_status(s) for s in services}
        self.progress(
            f"deploying {color} {tag} on swarm stack {self.swarm.stack_name}: "
            f"{self.swarm.replicas} replica(s) of {' '.join(services)} "
            f"(waiting up to {timeout:g}s for healthy)"
        )
        updated: list[str] = []  # the services told to update, rolled back if the next fails
        why = self._stack_deploy(color, tag) if missing else ""
        for service in [] if missing else services:
            why = self._docker(
                "service", "update", "--detach", "--quiet", "--image", image,
                "--replicas", str(self.swarm.replicas), self.swarm.service(service),
            )  # fmt: skip
            if why:
                why = f"'docker service update' of {service}: {why}"
                break
            updated.append(service)
        if why:
            restored = self._roll_back(color, updated, previous, [], specs) if updated else ""
            raise DeployError(f"deploy of {color} {tag} failed: {why}{restored}")
        self._wait_rolled_out(
            color=color,
            tag=tag,
            image=image,
            services=services,
            deadline=deadline,
            previous=previous,
            before=before,
            specs=specs,
        )
        self._remember(color, tag)
        seconds = time.monotonic() - start
        self.progress(f"{color} {tag} is healthy after {seconds:.1f}s")
        return DeployResult(
            color=color,
            tag=tag,
            services=tuple(services),
            seconds=seconds,
            backup=saved,
            previous_tag=previous,
            notes=tuple(notes),
        )

    def _spec(self, service: str) -> _Spec | None:
        """What the service is set to run now; None when the stack has no such service."""
        svc = find_service(self.sdk, self.swarm, service)
        return None if svc is None else _Spec.of(svc)

    def _stack_deploy(self, color: str, tag: str) -> str:
        """The first deploy: the stack file with every color's tag and replica count; "" when
        the engine took it, else why not."""
        variables = {}
        for name in self.topology.colors:
            known = tag if name == color else self.deployed_tag(name)
            if known:
                variables[tag_variable(name)] = known
            variables[replicas_variable(name)] = str(self.swarm.replicas)
        if self.compose.image_repository:
            variables[self.compose.image_variable] = self.compose.image_repository
        return self._docker(
            "stack", "deploy", "--resolve-image", "never",
            "--compose-file", str(self.swarm.stack_file), self.swarm.stack_name,
            env=variables,
        )  # fmt: skip

    def _remember(self, color: str, tag: str) -> None:
        with contextlib.suppress(OSError):  # the services' specs say the tag; this is a fallback
            self.tags.write({**self.tags.read(), tag_variable(color): tag})

    def _wait_rolled_out(
        self,
        *,
        color: str,
        tag: str,
        image: str,
        services: list[str],
        deadline: float,
        previous: str | None,
        before: dict[str, tuple[str | None, str | None]],
        specs: Mapping[str, _Spec | None],
    ) -> None:
        """Until every replica of every service runs ``image`` and is healthy, and Swarm's
        update is complete; a DeployError (after a rollback, where configured) otherwise."""
        wanted = self.swarm.replicas * len(services)
        said = -1
        while True:
            gone = [s for s in services if find_service(self.sdk, self.swarm, s) is None]
            replicas = service_replicas(self.sdk, self.swarm, services)
            current = [r for r in replicas if r.desired == "running"]
            healthy = [r for r in current if r.image == image and r.healthy]
            states = {s: self._update_state(s, before[s]) for s in services}
            if len(healthy) != said:
                said = len(healthy)
                self.progress(f"{color}: {said}/{wanted} replicas healthy")
            rolled_back = [s for s, st in states.items() if st in _ROLLBACK_STATES]
            done = all(st in (None, "completed") for st in states.values())
            complete = done and len(healthy) >= wanted and len(current) == wanted
            if complete and not (gone or rolled_back):
                return
            if gone or rolled_back or time.monotonic() >= deadline:
                if gone:
                    why = f"{', '.join(gone)} removed from stack {self.swarm.stack_name} meanwhile"
                elif rolled_back:
                    why = f"Swarm rolled back {', '.join(rolled_back)} (the new tasks failed)"
                else:
                    sick = self._first_health(current, image)
                    why = (
                        f"not healthy within {self.compose.deploy_timeout:g}s "
                        f"({len(healthy)}/{wanted} replicas healthy{sick})"
                    )
                detail = self._failure_detail(services, image, replicas)
                restored = self._roll_back(color, services, previous, rolled_back, specs)
                raise DeployError(f"deploy of {color} {tag} failed: {why}{restored}\n{detail}")
            time.sleep(0.25)

    def _update_status(self, service: str) -> tuple[str | None, str | None]:
        """Swarm's update of the service: its state and when it started (None: none yet)."""
        svc = find_service(self.sdk, self.swarm, service)
        status = (svc.attrs.get("UpdateStatus") or {}) if svc is not None else {}
        state, started = status.get("State"), status.get("StartedAt")
        return (str(state) if state else None, str(started) if started else None)

    def _update_state(self, service: str, before: tuple[str | None, str | None]) -> str | None:
        """The state of the update started after ``before`` was read; None while Swarm has not
        started one (an earlier update's state, such as a rollback, is not this one's)."""
        state, started = self._update_status(service)
        return None if started == before[1] else state

    def _health(self, replica: Replica) -> str:
        """The last health check of a replica's container on this node: ``health check
        exits 7: curl: (7) Failed to connect ...``; "" when it has none, or runs elsewhere."""
        if not replica.container_id:
            return ""
        try:
            attrs = self.sdk.api.inspect_container(replica.container_id)
        except Exception:  # on another node, or gone meanwhile
            return ""
        health = (attrs.get("State") or {}).get("Health") or {}
        runs = health.get("Log") or []
        if not runs:
            return f"health {health['Status']}, no check run yet" if health.get("Status") else ""
        last = runs[-1]
        output = " ".join(str(last.get("Output") or "").split())[:200]
        return f"health check exits {last.get('ExitCode')}: {output or 'no output'}"

    def _first_health(self, current: list[Replica], image: str) -> str:
        """``; blue-api.1: health check exits 7: ...`` for the first replica of ``image`` that
        is not healthy and has a health check run on this node, else ""."""
        for replica in current:
            if replica.image == image and not replica.healthy:
                said = self._health(replica)
                if said:
                    return f"; {replica.service}.{replica.slot}: {said}"
        return ""

    def _failure_detail(self, services: list[str], image: str, replicas: list[Replica]) -> str:
        failing = []
        for r in replicas:
            if r.image != image:
                continue
            starting = r.desired == "running" and not r.healthy
            if not (starting or r.state in _FAILED_TASK_STATES or r.error):
                continue
            health = self._health(r) if starting else ""
            failing.append(
                f"  {r.service}.{r.slot} on {r.node}: {r.state}"
                + (f" ({r.error})" if r.error else "")
                + (f", {health}" if health else "")
            )
        lines = ["failing tasks:", *failing[:6]] if failing else []
        for service in services:
            try:
                logs = self.client.service.logs(self.swarm.service(service), tail=20)
            except self._exception as exc:
                logs = f"(no logs: {first_line(exc)})"
            lines.append(f"=== {service} (last lines)\n{str(logs or '').rstrip()}")
        return "\n".join(lines)

    def _roll_back(
        self,
        color: str,
        services: list[str],
        previous: str | None,
        rolling: list[str],
        specs: Mapping[str, _Spec | None],
    ) -> str:
        """Swarm's own rollback of the color's services to what they ran before: the ones
        Swarm is not rolling back already are told to (``docker service rollback``); done once
        every replica runs the previous image again. When it fails, what the color is left
        with, service by service."""
        if not self.swarm.rollback_failed_deploy:
            return (
                "; not rolled back (rollback_failed_deploy = false): "
                f"{color} is left so: {self.left(services)}"
            )
        failed: list[str] = []
        before: dict[str, tuple[str | None, str | None]] = {}
        for service in services:
            spec = specs.get(service)
            if spec is None:
                failed.append(f"{service} was created by this deploy: nothing to roll back to")
            elif find_service(self.sdk, self.swarm, service) is None:
                failed.append(f"{service} is not in stack {self.swarm.stack_name} any more")
            elif service in rolling:  # the rollback is the update under way: wait for it
                before[service] = (None, None)
            else:
                seen = self._update_status(service)
                why = self._docker("service", "rollback", "--detach", self.swarm.service(service))
                if why:
                    failed.append(f"'docker service rollback' of {service} failed: {why}")
                else:
                    self.progress(f"Swarm rolls {service} back to {spec.image}")
                    before[service] = seen
        failed += self._await_rollbacks(before, specs)
        if failed:
            return (
                f"; the rollback failed ({'; '.join(failed)}): "
                f"{color} is left so: {self.left(services)}"
            )
        return f"; Swarm rolled {color} back to {previous or 'its previous image'}"

    def _await_rollbacks(
        self,
        before: dict[str, tuple[str | None, str | None]],
        specs: Mapping[str, _Spec | None],
    ) -> list[str]:
        """Until each service's rollback (started after ``before``) completed and its replicas
        run the previous image again; what failed (paused by Swarm, the service removed, not
        done within ``deploy_timeout``)."""
        failed: list[str] = []
        waiting = dict(before)
        deadline = time.monotonic() + self.compose.deploy_timeout
        while waiting:
            for service, seen in list(waiting.items()):
                svc = find_service(self.sdk, self.swarm, service)
                spec = specs[service]
                if svc is None or spec is None:
                    failed.append(
                        f"{service} was removed from stack {self.swarm.stack_name} during its "
                        "rollback"
                    )
                    del waiting[service]
                    continue
                state = self._update_state(service, seen)
                if state == "rollback_paused":
                    said = str((svc.attrs.get("UpdateStatus") or {}).get("Message") or "")
                    failed.append(f"Swarm paused the rollback of {service}: {said or 'no reason'}")
                    del waiting[service]
                elif state == "rollback_completed" and self._runs(service, spec):
                    del waiting[service]
            if waiting and time.monotonic() >= deadline:
                failed.append(
                    f"the rollback of {', '.join(waiting)} did not complete within "
                    f"{self.compose.deploy_timeout:g}s"
                )
                break
            if waiting:
                time.sleep(0.25)
        return failed

    def _docker(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """The docker CLI the client uses (its host and context), its output captured: none
        of it reaches the gate's output, and a failure says why in its own words
        (python-on-whales leaves the stderr of ``service scale`` uncaptured, and has no
        ``service rollback``). "" when it succeeded, else its last line of error."""
        command = [*map(str, self.client.client_config.docker_cmd), *args]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_CLI_TIMEOUT,
                check=False,
                env=None if env is None else {**os.environ, **env},
            )
        except subprocess.TimeoutExpired:
            return f"'docker {' '.join(args[:2])}' gave no answer within {_CLI_TIMEOUT:g}s"
        except OSError as exc:  # no docker CLI
            return f"'docker {' '.join(args[:2])}' could not run: {exc}"
        if done.returncode == 0:
            return ""
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
        return next((line for line in reversed(lines) if line), f"exit code {done.returncode}")

    def _runs(self, service: str, spec: _Spec) -> bool:
        """Every replica Swarm wants running runs ``spec``'s image and is healthy, as many as
        it says."""
        current = [
            r for r in service_replicas(self.sdk, self.swarm, [service]) if r.desired == "running"
        ]
        count = len(current) if spec.replicas is None else spec.replicas
        return len(current) == count and all(r.image == spec.image and r.healthy for r in current)

    def left(self, services: Iterable[str]) -> str:
        """What each service is set to and runs now, for an operator to act on: ``blue-api:
        set to bluegreen/jarvis:v1.0.0 x2 (Swarm's update rollback_paused), tasks: 2 v1.2.0
        starting, the last task error: No such image: ...``."""
        parts = []
        for service in services:
            try:
                parts.append(self._state_of(service))
            except Exception as exc:  # the swarm stopped answering: say so, claim nothing
                said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                parts.append(f"{service}: unknown (the swarm did not answer: {said})")
        return "; ".join(parts)

    def _state_of(self, service: str) -> str:
        svc = find_service(self.sdk, self.swarm, service)
        if svc is None:
            return f"{service}: not in stack {self.swarm.stack_name}"
        spec = _Spec.of(svc)
        state = (svc.attrs.get("UpdateStatus") or {}).get("State")
        count = "" if spec.replicas is None else f" x{spec.replicas}"
        update = f" (Swarm's update {state})" if state else ""
        replicas = service_replicas(self.sdk, self.swarm, [service])  # newest first
        tasks = Counter(f"{r.tag} {r.state}" for r in replicas if r.desired == "running")
        said = ", ".join(f"{n} {what}" for what, n in sorted(tasks.items())) or "none"
        error = next((f", the last task error: {r.error}" for r in replicas if r.error), "")
        return f"{service}: set to {spec.image}{count}{update}, tasks: {said}{error}"

    def teardown(self, color: str) -> None:
        """Scale the color's services to 0 (the stack keeps them, ready for the next deploy).
        Refused, nothing scaled, when the engine is no manager or a service cannot be scaled
        (not in the stack, not replicated); a failure half-way says what was scaled."""
        services = list(self.topology.color[color].services)
        self.check_engine()
        problems = []
        for service in services:
            try:
                svc = find_service(self.sdk, self.swarm, service)
            except Exception as exc:  # the SDK's APIError, a connection refused
                raise DeployError(
                    f"teardown of {color} failed: cannot read {service}: {exc}"
                ) from None
            if svc is None:
                problems.append(f"{service} is not in stack {self.swarm.stack_name}")
            elif _Spec.of(svc).replicas is None:
                mode = next(iter(svc.attrs.get("Spec", {}).get("Mode") or {"unknown": 0}))
                problems.append(f"{service} runs in {mode.lower()} mode: it cannot be scaled to 0")
        if problems:
            raise DeployError(f"teardown of {color} refused: {'; '.join(problems)}; nothing scaled")
        self.progress(f"tearing down {color}: {' '.join(services)} scaled to 0")
        scaled: list[str] = []
        for service in services:
            why = self._docker("service", "scale", "--detach", f"{self.swarm.service(service)}=0")
            if why:
                so_far = f"scaled to 0 already: {', '.join(scaled)}" if scaled else "nothing scaled"
                raise DeployError(f"teardown of {color} failed at {service}: {why}; {so_far}")
            scaled.append(service)
