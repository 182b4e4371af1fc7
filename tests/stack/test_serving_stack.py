"""Health checks at a calm interval, on the real Docker stack: nobody waits for Docker's first
check. The tests' stack runs with HEALTHCHECK_INTERVAL at an hour (``docker_stack``) -- longer
than the deploy's deadline -- so a deploy that succeeds, while Docker still says ``starting``,
can only have been judged by its containers' own health checks run by us (and ``bluegreen
status`` counts them healthy too); a health check that fails is reported with its output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import docker
from pytest_bluegreen.engines.compose import ComposeEngine, color_health, compose_containers
from pytest_bluegreen.engines.serving import health_of
from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.settings.resolve import resolve
from tests.support.docker_stack import (
    COMPOSE_FILE,
    HEALTHCHECK_INTERVAL,
    SHARED,
    ComposeProject,
    fresh_colors,
)
from tests.support.stack import ROOT

GREEN = ["green-backend", "green-frontend", "green-agents"]


@pytest.fixture(scope="module")
def calm_stack(compose_project: ComposeProject) -> Iterator[docker.DockerClient]:
    """The shared services up at the calm interval, judged healthy by their own checks (as
    scripts/local_stack.py up waits), no color running."""
    assert HEALTHCHECK_INTERVAL == "3600s"  # Docker's first check: long after any deadline
    fresh_colors(compose_project)
    client = docker.from_env()
    try:
        with compose_project.environment():  # for every compose call of the module
            shared = compose_containers(client, compose_project.name, SHARED)
            assert len(shared) == len(SHARED)
            yield client
    finally:
        client.close()


@pytest.fixture
def project(compose_project: ComposeProject, calm_stack: docker.DockerClient) -> ComposeProject:
    return compose_project


def settings(
    folder: Path,
    project: ComposeProject,
    compose_file: Path = COMPOSE_FILE,
    deploy_timeout: int = 60,
) -> Settings:
    (folder / "bluegreen.toml").write_text(
        f'compose_file = "{compose_file}"\n'
        f'compose_project = "{project.name}"\n'
        'image_repository = "bluegreen/jarvis"\n'
        'image_variable = "JARVIS_IMAGE"\n'
        'pull = "never"\n'
        f"deploy_timeout = {deploy_timeout}\n"
        f'state_file = "{folder / "state.json"}"\n'
    )
    return resolve({}, {}, {}, folder)


def engine(s: Settings) -> ComposeEngine:
    return ComposeEngine(s.compose, s.topology, s.state.tags_file)


def test_a_deploy_is_healthy_before_dockers_first_check(
    calm_stack: docker.DockerClient, project: ComposeProject, tmp_path: Path
) -> None:
    s = settings(tmp_path, project)
    result = engine(s).deploy("green", "v1.1.0", backup=False)
    assert result.services == tuple(GREEN)
    containers = compose_containers(calm_stack, project.name, GREEN)
    assert len(containers) == len(GREEN)
    for container in containers:
        assert container.status == "running", container.name
        assert health_of(container) == "starting", container.name  # not Docker's verdict
    answer = requests.get(f"http://{project.api_address('green')}/health", timeout=5)  # serves
    assert (answer.status_code, answer.json()["checks"]) == (200, {"postgres": "ok", "redis": "ok"})
    # bluegreen status counts them healthy too: their checks, run now, pass
    assert color_health(s.compose, s.topology)["green"] == "3/3 healthy"


def test_a_failing_health_check_is_reported_with_its_output(
    project: ComposeProject, tmp_path: Path
) -> None:
    # green's backend with a health check that fails, through the container's shell
    text = COMPOSE_FILE.read_text()
    marker = 'test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]'
    head, sep, tail = text.rpartition(marker)  # the last one is green-backend's
    assert sep
    failing = 'test: ["CMD-SHELL", "echo the database is on fire >&2; exit 3"]'
    broken = tmp_path / "compose-failing-check.yml"
    broken.write_text((head + failing + tail).replace("../config/", f"{ROOT}/config/"))
    s = settings(tmp_path, project, compose_file=broken, deploy_timeout=8)
    with pytest.raises(DeployError) as failed:
        engine(s).deploy("green", "v1.0.0", backup=False)
    first, _, logs = str(failed.value).partition("\n")
    assert first.startswith("deploy of green v1.0.0 failed: not healthy within 8s: "), first
    assert (
        f"{project.container('green-backend')} (starting; its health check: exit 3: the database "
        "is on fire)"
    ) in first
    assert "green-backend" in logs  # the log tail follows
    assert s.state.tags_file.read_text() == ""  # the tag it did not reach is not recorded
