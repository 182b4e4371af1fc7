"""Docker Compose as the engine that runs the colors (python-on-whales over the real CLI; the
docker SDK to read containers).

Deploying one color at a tag: check the engine and Compose v2 answer and the image is there,
optionally back up (``backup_command`` in ``backup_service``), ``compose up -d`` the color's
services with the tag in ``<COLOR>_TAG`` (an env file that also remembers the other color's
tag), and wait with a deadline until every container serves (:func:`wait_serving`: its own
health check, run by us until it passes -- not Docker's first run of it, a calm interval away).
Every failure is a DeployError with one clear first line; nothing is half done that was not
already running.

Also the one home of: the tags file, a color's variables (its tag's), and a color's containers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.extras import installed, require
from pytest_bluegreen.record.durable import write_durably
from pytest_bluegreen.settings import ComposeSettings, Topology, parsers

from .backup import run_backup
from .base import DeployResult, EngineBlind, ImageUnknown, Occupant
from .serving import Waited, judge_serving, wait_until_serving

if TYPE_CHECKING:
    from docker.models.containers import Container
    from python_on_whales import DockerClient, DockerException

    import docker

__all__ = [
    "FAULT_ERROR_RATE",
    "FAULT_LATENCY_MS",
    "FAULT_LATENCY_SHARE",
    "ComposeEngine",
    "TagsFile",
    "color_variable",
    "compose_containers",
    "container_occupants",
    "endpoint_host",
    "first_line",
    "injected_faults",
    "tag_variable",
    "wait_serving",
    "whales_error",
]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def color_variable(color: str, name: str) -> str:
    """A Compose variable of one color: ``GREEN_TAG``, ``GREEN_FAULT_ERROR_RATE``."""
    return f"{color.upper().replace('-', '_')}_{name}"


# the faults a color's Compose variables inject (docker/docker-compose.blue-green.yml hands
# <COLOR>_FAULT_... to Jarvis; bluegreen drill --power sets them in a deploy's environment)
FAULT_LATENCY_MS = "FAULT_LATENCY_MS"  # extra milliseconds on /api/* (0: none)
FAULT_LATENCY_SHARE = "FAULT_LATENCY_SHARE"  # the share of those requests delayed (1: all)
FAULT_ERROR_RATE = "FAULT_ERROR_RATE"  # the share of /api/* requests answering 500 (0: none)


def injected_faults(color: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The color's fault variables in ``environ`` that inject a fault (a latency or an error
    rate that is not zero; a value that is not a number counts: nothing is taken for none on
    a guess); empty: a deploy in this environment runs no fault."""
    found = {}
    for name in (FAULT_LATENCY_MS, FAULT_ERROR_RATE):
        variable = color_variable(color, name)
        value = environ.get(variable, "").strip()
        try:
            none = value == "" or float(value) == 0
        except ValueError:
            none = False
        if not none:
            found[variable] = value
    return found


def tag_variable(color: str) -> str:
    """The Compose variable that holds a color's image tag: ``GREEN_TAG``."""
    return color_variable(color, "TAG")


class TagsFile:
    """The Compose env file that remembers each color's deployed tag (``GREEN_TAG=v1.1.0``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    tags[key.strip()] = value.strip()
        return tags

    def write(self, tags: dict[str, str]) -> None:
        """Durably, through a temporary file of its own (never a fixed name beside it, which
        a symbolic link planted there would have had the gate write through, and two gates
        share)."""
        write_durably(self.path, "".join(f"{k}={v}\n" for k, v in sorted(tags.items())))

    def tag_of(self, color: str) -> str | None:
        return self.read().get(tag_variable(color))

    def tags(self, colors: Iterable[str]) -> dict[str, str | None]:
        found = self.read()
        return {c: found.get(tag_variable(c)) for c in colors}


def docker_client() -> docker.DockerClient:
    """A docker SDK client for the engine (``DOCKER_HOST`` respected); raises DockerException."""
    sdk = require("docker", "docker", "looking at containers")
    client: docker.DockerClient = sdk.from_env()
    client.ping()
    return client


def unreachable(exc: BaseException) -> str:
    """One line for an engine the docker SDK cannot reach: where it looked (``DOCKER_HOST``,
    else the default socket) and the system's reason (``No such file or directory``,
    ``Connection refused``) dug out of the SDK's nested wrappers, else the error's first line."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        one = todo.pop()
        if id(one) in seen:
            continue
        seen.add(id(one))
        if isinstance(one, OSError) and one.strerror:
            return f"Docker engine not reachable at {host}: {one.strerror}"
        nested = [one.__cause__, one.__context__, *one.args]
        todo += [n for n in nested if isinstance(n, BaseException)]
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"Docker engine not reachable at {host}: {reason}"


def compose_containers(
    client: docker.DockerClient, project: str, services: Iterable[str] | None = None
) -> list[Container]:
    """The project's containers (running or not), of the given services only when given."""
    if services is None:
        return list(
            client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        )
    found: list[Container] = []
    for service in services:
        labels = [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]
        found += client.containers.list(all=True, filters={"label": labels})
    return found


def wait_serving(
    client: docker.DockerClient, project: str, services: Iterable[str], *, timeout: float
) -> Waited:
    """Wait until every container of the project's ``services`` runs and its health check, run
    by us, passes (see :mod:`.serving`), or ``timeout`` seconds pass, or one has stopped for
    good. Then ``.serving`` says whether all do, and ``.brief()`` names what does not."""
    wanted = list(services)

    def find() -> dict[str, list[Container]]:
        return {s: compose_containers(client, project, [s]) for s in wanted}

    return wait_until_serving(find, timeout=timeout)


def first_line(exc: DockerException) -> str:
    """The line of a docker CLI error worth showing (its last non-empty one)."""
    text = (exc.stderr or exc.stdout or str(exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {exc.return_code}"


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """``10.0.1.5:8000`` -> (``10.0.1.5``, ``8000``); ``[::1]:80`` or ``::1:80`` -> (``::1``,
    ``80``)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), port


_ANY_HOST = {"", "0.0.0.0", "::"}  # noqa: S104 - what Docker writes for "every address"


def container_occupants(
    client: docker.DockerClient, endpoints: Collection[str]
) -> dict[str, tuple[Occupant, ...]]:
    """The running containers on this Docker host that answer at each endpoint: a host port
    one publishes (``127.0.0.1:8010``, also when published on every address), or its own
    address on one of its networks (HAProxy in a container on the same network)."""
    wanted = {e: endpoint_host(e) for e in endpoints}
    found: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for summary in client.api.containers():  # running ones; one call, no inspect each
        cid = str(summary.get("Id", ""))
        names[cid] = str((summary.get("Names") or [cid[:12]])[0]).lstrip("/")
        published = {
            (str(port.get("IP") or ""), str(port["PublicPort"]))
            for port in summary.get("Ports") or []
            if port.get("PublicPort")
        }
        networks: dict[str, Any] = (summary.get("NetworkSettings") or {}).get("Networks") or {}
        own = {str(n.get("IPAddress")) for n in networks.values() if n.get("IPAddress")}
        for endpoint, (host, port) in wanted.items():
            public = any(p == port and (ip == host or ip in _ANY_HOST) for ip, p in published)
            if public or host in own:
                found.setdefault(endpoint, []).append(cid)
    images: dict[str, str] = {}
    for cid in {c for ids in found.values() for c in ids}:
        # the reference it was created from, also after the tag moved on; one gone meanwhile
        # answers nothing any more
        with contextlib.suppress(Exception):
            images[cid] = str(client.api.inspect_container(cid)["Config"]["Image"])
    return {
        endpoint: tuple(Occupant(names[c], images[c]) for c in ids if c in images)
        for endpoint, ids in found.items()
        if any(c in images for c in ids)
    }


def whales_error(feature: str) -> type[DockerException]:
    """python-on-whales' DockerException (importing it, as the engines' lazy clients do)."""
    error: type[DockerException] = require("python_on_whales", "docker", feature).DockerException
    return error


_FEATURE = "deploying with Docker Compose"


class ComposeEngine:
    """Deploys, tears down and describes the colors of one Compose project."""

    def __init__(
        self,
        compose: ComposeSettings,
        topology: Topology,
        tags_file: Path,
        progress: Callable[[str], None] = lambda line: None,
        client: DockerClient | None = None,
    ) -> None:
        installed("python_on_whales", "docker", _FEATURE)
        self.compose = compose
        self.topology = topology
        self.progress = progress
        self.tags = TagsFile(tags_file)
        self._client = client

    # python-on-whales (a fifth of a second to import) loads when a Compose command first needs
    # it: a gate that only asks which build answers (the docker SDK's) never does
    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = require("python_on_whales", "docker", _FEATURE).DockerClient(
                compose_files=[self.compose.compose_file],
                compose_project_name=self.compose.project_name,
                compose_env_files=[self.tags.path],
            )
        return self._client

    @property
    def _exception(self) -> type[DockerException]:
        return whales_error(_FEATURE)

    # -- checks ------------------------------------------------------------------------------
    def check_engine(self) -> None:
        self._env_file()
        try:
            self.client.system.info()
        except self._exception as exc:
            raise DeployError(f"Docker engine not reachable: {first_line(exc)}") from None
        except Exception as exc:  # python-on-whales' ClientNotFoundError: no docker CLI
            raise DeployError(f"the docker CLI is missing: {exc}") from None
        try:
            version = self.client.compose.version()
        except self._exception as exc:
            raise DeployError(
                f"Docker Compose v2 is missing ('docker compose' failed: {first_line(exc)}); "
                "run scripts/install-docker"
            ) from None
        if "v2." not in version and " 2." not in version:
            raise DeployError(f"Docker Compose v2 is needed, found: {version.strip()}")
        if not self.compose.compose_file.is_file():
            raise DeployError(f"compose file {self.compose.compose_file} does not exist")

    def image(self, tag: str) -> str | None:
        repository = self.compose.image_repository
        return None if repository is None else f"{repository}:{tag}"

    def check_image(self, tag: str) -> None:
        try:
            parsers.image_tag(tag)
        except ValueError as exc:
            raise DeployError(f"{tag!r} {exc}") from None
        name = self.image(tag)
        if name is not None and self.compose.pull == "never" and not self.client.image.exists(name):
            raise DeployError(
                f"image {name} is not present (pull policy 'never'); build it with "
                f'scripts/build-images {tag}, or set pull = "missing" to pull it'
            )

    def deployed_tag(self, color: str) -> str | None:
        return self.tags.tag_of(color)

    def occupants(self, endpoints: Collection[str]) -> Mapping[str, tuple[Occupant, ...]]:
        try:
            client = docker_client()
        except Exception as exc:  # docker's DockerException, or the SDK missing
            raise EngineBlind(f"no Docker engine answers: {exc}") from None
        try:
            return container_occupants(client, endpoints)
        except Exception as exc:
            raise EngineBlind(f"cannot list the containers: {exc}") from None
        finally:
            client.close()

    def _env_file(self) -> None:
        """Compose refuses a missing --env-file: an empty tags file before the first command."""
        if not self.tags.path.exists():
            try:
                self.tags.write({})
            except OSError as exc:
                raise DeployError(f"cannot write {self.tags.path}: {exc}") from None

    def image_of(self, color: str) -> str:
        return running_images(self.compose, self.topology, color)

    # -- steps -------------------------------------------------------------------------------
    def backup(self, color: str, tag: str) -> Path | None:
        """The backup command's output, streamed into ``backup_dir`` (mode 0600, a temporary
        file renamed when complete), bounded by ``backup_timeout``; None when no backup is
        configured or its service does not run yet (the very first deploy)."""
        s = self.compose
        if s.backup_service is None or not s.backup_command:
            return None
        try:
            running = [c for c in self.client.compose.ps([s.backup_service]) if c.state.running]
        except self._exception as exc:
            raise DeployError(
                f"backup: cannot list {s.backup_service}: {first_line(exc)}"
            ) from None
        if not running:
            return None
        command = [
            *map(str, self.client.compose.docker_compose_cmd),
            "exec",
            "-T",
            s.backup_service,
        ]
        return run_backup(s, command, color, tag, self.progress)

    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        services = list(self.topology.color[color].services)
        start = time.monotonic()
        self.check_engine()
        self.check_image(tag)
        notes: list[str] = []
        saved: Path | None = None
        if backup:
            saved = self.backup(color, tag)
            if saved is None:
                notes.append("no backup: none configured, or its service is not running yet")
        previous = self.tags.read()
        wanted = {**previous, tag_variable(color): tag}
        if self.compose.image_repository:  # every variable Compose needs, in the env file
            wanted[self.compose.image_variable] = self.compose.image_repository
        try:
            self.tags.write(wanted)
        except OSError as exc:
            raise DeployError(f"cannot write {self.tags.path}: {exc}") from None
        timeout = self.compose.deploy_timeout
        self.progress(
            f"deploying {color} {tag}: compose up {' '.join(services)} "
            f"(waiting up to {timeout:g}s for healthy)"
        )
        try:
            # no --wait: it waits for Docker's first health check, one (calm) interval away
            self.client.compose.up(services, detach=True, pull=self.compose.pull, quiet=True)
        except self._exception as exc:
            self.tags.write(previous)
            unhealthy = self.unhealthy(services)
            detail = f"; not healthy: {', '.join(unhealthy)}" if unhealthy else ""
            raise DeployError(
                f"deploy of {color} {tag} failed: {first_line(exc)}{detail}\n"
                + self.logs_tail(services)
            ) from None
        left = max(0.0, start + timeout - time.monotonic())
        waited = self.wait_serving(services, left)
        if not waited.serving:
            self.tags.write(previous)
            stopped = any(j.final for j in waited.judged)
            why = "a container stopped" if stopped else f"not healthy within {timeout:g}s"
            raise DeployError(
                f"deploy of {color} {tag} failed: {why}: {', '.join(waited.brief())}\n"
                + self.logs_tail(services)
            )
        seconds = time.monotonic() - start
        self.progress(f"{color} {tag} is healthy after {seconds:.1f}s")
        return DeployResult(
            color=color,
            tag=tag,
            services=tuple(services),
            seconds=seconds,
            backup=saved,
            previous_tag=previous.get(tag_variable(color)),
            notes=tuple(notes),
        )

    def wait_serving(self, services: list[str], timeout: float) -> Waited:
        try:
            client = docker_client()
        except Exception as exc:  # docker's DockerException, or the SDK missing
            raise DeployError(f"cannot look at the containers: {exc}") from None
        try:
            return wait_serving(client, self.compose.project_name, services, timeout=timeout)
        finally:
            client.close()

    def unhealthy(self, services: list[str]) -> list[str]:
        """The containers that do not serve now (their health checks run now), for an error
        message; [] when they cannot be listed."""
        try:
            client = docker_client()
        except Exception:
            return []
        try:
            pairs = [
                (s, c)
                for s in services
                for c in compose_containers(client, self.compose.project_name, [s])
            ]
            return [j.brief() for j in judge_serving(pairs) if not j.serving]
        except Exception:
            return []
        finally:
            client.close()

    def logs_tail(self, services: list[str], lines: int = 20) -> str:
        try:
            text = self.client.compose.logs(services, tail=str(lines), no_log_prefix=False)
        except self._exception as exc:
            return f"(no logs: {first_line(exc)})"
        return str(text or "").rstrip()

    def teardown(self, color: str) -> None:
        services = list(self.topology.color[color].services)
        self.progress(f"tearing down {color}: {' '.join(services)}")
        self._env_file()
        try:
            self.client.compose.rm(services, stop=True)
        except self._exception as exc:
            raise DeployError(f"teardown of {color} failed: {first_line(exc)}") from None


def running_images(compose: ComposeSettings, topology: Topology, color: str) -> str:
    """``service=image id, ...`` of the color's running containers (every container of a
    service must run the same image). Raises ImageUnknown, saying why."""
    services = topology.color[color].services
    if not services:
        raise ImageUnknown(f"{color} has no services in the settings (colors.{color}.services)")
    try:
        client = docker_client()
    except Exception as exc:  # no docker extra, no engine, no permission on its socket
        raise ImageUnknown(
            f"cannot ask the Docker engine what {color} runs: {str(exc).splitlines()[0]}"
        ) from None
    try:
        parts = []
        for service in services:
            found = compose_containers(client, compose.project_name, [service])
            images = {str(c.attrs.get("Image") or "") for c in found if c.status == "running"}
            if not images or "" in images:
                raise ImageUnknown(
                    f"{color}'s service {service} has no running container in Compose project "
                    f"{compose.project_name}"
                )
            if len(images) > 1:
                raise ImageUnknown(
                    f"{color}'s service {service} runs {len(images)} different images"
                )
            parts.append(f"{service}={images.pop()}")
        return ", ".join(parts)
    except ImageUnknown:
        raise
    except Exception as exc:  # the engine went away, a container removed while read
        raise ImageUnknown(
            f"cannot read {color}'s containers: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        client.close()


def color_health(compose: ComposeSettings, topology: Topology) -> dict[str, str]:
    """color -> "3/3 healthy" from the containers' Compose labels: Docker's healthy as it is,
    and, for a container Docker has not checked yet (or calls unhealthy), its health check run
    now; "-" without an engine."""
    try:
        client = docker_client()
    except Exception:
        return dict.fromkeys(topology.colors, "-")
    out: dict[str, str] = {}
    try:
        for name, cfg in topology.color.items():
            containers = compose_containers(client, compose.project_name, cfg.services)
            judged = judge_serving((("", c) for c in containers), trust_healthy=True)
            healthy = sum(1 for j in judged if j.serving)
            out[name] = f"{healthy}/{len(cfg.services)} healthy"
    finally:
        client.close()
    return out


def container_logs(compose: ComposeSettings, topology: Topology, color: str, lines: int) -> str:
    """The last lines of each of the color's containers, or "" without an engine."""
    try:
        client = docker_client()
    except Exception:
        return ""
    parts: list[str] = []
    try:
        for container in compose_containers(
            client, compose.project_name, topology.color[color].services
        ):
            tail = container.logs(tail=lines).decode(errors="replace")
            parts.append(f"=== {container.name}\n{tail}")
    finally:
        client.close()
    return "\n".join(parts)
