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
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.extras import installed
from pytest_bluegreen.settings import ComposeSettings, SwarmSettings, Topology, parsers

from .backup import run_backup
from .base import DeployResult, EngineBlind, ImageUnknown, Occupant, image_tag
from .compose import TagsFile, first_line, tag_variable, unreachable
from .swarmrollout import FEATURE, SwarmRollout
from .swarmtasks import (
    SERVICE_NAME_LABEL,
    STACK_LABEL,
    Replica,
    ServiceSpec,
    color_replicas,
    find_service,
    service_replicas,
    swarm_problem,
    task_occupants,
    without_digest,
)

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    import docker

__all__ = [
    "SERVICE_NAME_LABEL",
    "STACK_LABEL",
    "Replica",
    "SwarmEngine",
    "color_replicas",
    "find_service",
    "replicas_variable",
    "service_replicas",
    "swarm_problem",
    "task_occupants",
]


def replicas_variable(color: str) -> str:
    """The stack file's variable that holds a color's replica count: ``GREEN_REPLICAS``."""
    return f"{color.upper().replace('-', '_')}_REPLICAS"


def _repository(image: str) -> str:
    """``registry:5000/jarvis:v1`` -> ``registry:5000/jarvis``."""
    head, _, name = image.rpartition("/")
    return (f"{head}/" if head else "") + name.partition(":")[0]


class SwarmEngine(SwarmRollout):
    """Deploys, tears down and describes the colors of one swarm stack (its rollout:
    :class:`~.swarmrollout.SwarmRollout`)."""

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
        installed("python_on_whales", "docker", FEATURE)
        self.compose = compose
        self.swarm = swarm
        self.topology = topology
        self.progress = progress
        self.tags = TagsFile(tags_file)
        self._client = client
        self._sdk: docker.DockerClient | None = None

    # -- checks ------------------------------------------------------------------------------
    def check_engine(self) -> None:
        """The engine answers and is a manager of an active swarm; a DeployError otherwise."""
        try:
            info = self.sdk.info()
        except Exception as exc:
            raise DeployError(unreachable(exc)) from None
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
        return without_digest(str(spec.get("Image", ""))) or None

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

    def _spec(self, service: str) -> ServiceSpec | None:
        """What the service is set to run now; None when the stack has no such service."""
        svc = find_service(self.sdk, self.swarm, service)
        return None if svc is None else ServiceSpec.of(svc)

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
            elif ServiceSpec.of(svc).replicas is None:
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
