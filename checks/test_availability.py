"""Service availability: the containers exist, run and are healthy; inside them the expected
processes run and listen.

    pytest checks --env green -k test_availability

Containers are found by their engine's labels with the docker SDK (one inspect per container,
quick): Compose's project and service labels (``compose_project``, ``colors.<c>.services``), or,
with ``deploy_engine = "swarm"``, Swarm's stack namespace and service name (every replica running
on this host; ``bluegreen status`` lists a swarm's replicas on every node). A container is
healthy when its own health check, run now (one ``docker exec`` per container, all at once),
passes: Docker's verdict can be a whole interval old (the compose file's checks run every 30 s;
right after a deploy Docker says ``starting``), and is only quoted. Processes and listening
ports are looked at with testinfra over ``docker://``: each probe is a ``docker exec`` (100 ms
to 1 s), so those checks are not ``quick``. The shared services' containers are the stack's
containers that belong to no color.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.testing import (
    RuntimeApi,
    Settings,
    judge_serving,
    stack_containers,
    supported_version,
)

if TYPE_CHECKING:
    from docker.models.containers import Container

    import docker


class Inside(NamedTuple):
    """What must run in a container: a process (testinfra ``process.filter`` arguments) and the
    TCP port it listens on, on all addresses (None: a worker that listens on nothing)."""

    process: dict[str, str]
    port: int | None


# per color: Compose service without the "<color>-" prefix -> what runs in it
COLOR_SERVICES = {
    "backend": Inside({"comm": "jarvis-api"}, 8000),
    "frontend": Inside({"comm": "jarvis-frontend"}, 3000),
    "agents": Inside({"comm": "jarvis-agents"}, None),
}
# shared: Compose service -> what runs in it (neo4j and ollama are stand-ins here: a Python
# process; with the real images use {"comm": "java"} and {"comm": "ollama"})
SHARED_SERVICES = {
    "postgres": Inside({"comm": "postgres"}, 5432),
    "redis": Inside({"comm": "redis-server"}, 6379),
    "neo4j": Inside({"args": "python3 -m standins neo4j"}, 7474),
    "ollama": Inside({"args": "python3 -m standins ollama"}, 11434),
}
# the shared services the settings name, by the setting that configures each
SHARED_SETTING = {
    "postgres": "postgres_url",
    "redis": "redis_url",
    "neo4j": "neo4j_url",
    "ollama": "ollama_url",
}


# --- fixtures of this file -----------------------------------------------------------------


@pytest.fixture(scope="session")
def compose_stack(bluegreen_settings: Settings) -> Settings:
    """The settings, when the deployment is a Docker stack (Compose, or a swarm stack); skips
    otherwise."""
    if bluegreen_settings.compose.deploy_engine == "swarm":
        return bluegreen_settings
    compose_file = bluegreen_settings.compose.compose_file
    if not compose_file.is_file():
        pytest.skip(f"no Compose stack is configured (compose_file {compose_file} does not exist)")
    return bluegreen_settings


def stack_label(settings: Settings) -> str:
    if settings.compose.deploy_engine == "swarm":
        return f"swarm stack {settings.swarm.stack_name}"
    return f"Compose project {settings.compose.project_name}"


@pytest.fixture(scope="session")
def shared_containers(
    compose_stack: Settings, docker_client: docker.DockerClient
) -> dict[str, Container]:
    """The stack's containers that belong to no color, by service name (a running one)."""
    color_services = {s for c in compose_stack.topology.color.values() for s in c.services}
    found: dict[str, Container] = {}
    pairs = stack_containers(docker_client, compose_stack)
    for service, container in sorted(pairs, key=lambda p: p[1].status != "running"):
        if service not in color_services:
            found.setdefault(service, container)
    return found


def expected_shared(services: ServiceSettings) -> list[str]:
    """Every shared service the settings configure."""
    return [name for name, key in SHARED_SETTING.items() if getattr(services, key) is not None]


# --- containers (docker SDK) ---------------------------------------------------------------


def assert_serving(containers: dict[str, Container]) -> None:
    """Every container runs and its health check, run now, passes."""
    for container in containers.values():
        container.reload()
    judged = judge_serving(containers.items())
    problems = [p for j in judged if (p := j.problem()) is not None]
    assert not problems, "; ".join(problems)


@pytest.mark.quick
def test_containers_are_healthy(
    color: str,
    compose_stack: Settings,
    color_containers: dict[str, Container],
    docker_client: docker.DockerClient,
) -> None:
    services = compose_stack.topology.color[color].services
    missing = [s for s in services if s not in color_containers]
    assert not missing, (
        f"{color} has no container for {', '.join(missing)} ({stack_label(compose_stack)})"
    )
    if compose_stack.compose.deploy_engine == "swarm":  # every replica Swarm wants running here
        every = {
            str(c.name): c
            for _, c in stack_containers(docker_client, compose_stack, services)
            if c.status == "running" or c.attrs["State"].get("Restarting")
        }
        assert_serving(every)
    else:
        assert_serving(color_containers)


@pytest.mark.quick
@pytest.mark.shared
def test_shared_containers_are_healthy(
    compose_stack: Settings,
    bluegreen_services: ServiceSettings,
    shared_containers: dict[str, Container],
) -> None:
    missing = [s for s in expected_shared(bluegreen_services) if s not in shared_containers]
    assert not missing, (
        f"no container for the shared service(s) {', '.join(missing)} "
        f"({stack_label(compose_stack)})"
    )
    assert_serving(shared_containers)


# --- processes and ports inside (testinfra) ------------------------------------------------


def inside_problems(host: Any, service: str, expected: Inside) -> list[str]:
    problems = []
    if not host.process.filter(**expected.process):
        seen = sorted({p.comm for p in host.process.filter()} - {"ps", "sh"})
        wanted = " ".join(f"{k}={v!r}" for k, v in expected.process.items())
        problems.append(f"{service} runs no process {wanted} (it runs: {', '.join(seen)})")
    if expected.port is not None and not host.socket(f"tcp://0.0.0.0:{expected.port}").is_listening:
        listening = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp://")]
        problems.append(
            f"{service} does not listen on tcp port {expected.port} "
            f"(it listens on: {', '.join(listening) or 'nothing'})"
        )
    return problems


@pytest.mark.parametrize("role", COLOR_SERVICES)
def test_processes_and_ports(
    role: str,
    color: str,
    compose_stack: Settings,
    color_containers: dict[str, Container],
    container_host: Callable[[str], Any],
) -> None:
    service = f"{color}-{role}"
    if service not in compose_stack.topology.color[color].services:
        pytest.skip(f"{service} is not one of {color}'s services (colors.{color}.services)")
    assert service in color_containers, f"{color} has no container for {service}"
    expected = COLOR_SERVICES[role]
    container = color_containers[service]
    assert container.attrs["State"].get("Running"), f"{service} ({container.name}) is not running"
    problems = inside_problems(container_host(str(container.name)), service, expected)
    assert not problems, "; ".join(problems)


@pytest.mark.shared
@pytest.mark.parametrize("service", SHARED_SERVICES)
def test_shared_processes_and_ports(
    service: str,
    compose_stack: Settings,
    shared_containers: dict[str, Container],
    container_host: Callable[[str], Any],
) -> None:
    if service not in shared_containers:
        pytest.skip(f"{service} does not run in {stack_label(compose_stack)}")
    expected = SHARED_SERVICES[service]
    container = shared_containers[service]
    assert container.attrs["State"].get("Running"), f"{service} ({container.name}) is not running"
    problems = inside_problems(container_host(str(container.name)), service, expected)
    assert not problems, "; ".join(problems)


# --- HAProxy --------------------------------------------------------------------------------


@pytest.mark.quick
@pytest.mark.shared
def test_haproxy_answers(haproxy: RuntimeApi) -> None:
    info = haproxy.show_info()
    assert supported_version(info["Version"]), f"HAProxy {info['Version']}: 2.6 or later is needed"
