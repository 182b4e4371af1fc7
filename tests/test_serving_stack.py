"""Health checks at a calm interval, on the real Docker stack: nobody waits for Docker's first
check. The stack runs with HEALTHCHECK_INTERVAL=600s here -- longer than the deploy's deadline
-- so a deploy that succeeds, while Docker still says ``starting``, can only have been judged by
its containers' own health checks run by us (and ``bluegreen status`` counts them healthy too);
a health check that fails is reported with its output.
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
    PROJECT,
    SHARED,
    compose,
    docker_problem,
    up_serving,
)
from tests.support.infra import require_infra
from tests.support.stack import ROOT

pytestmark = pytest.mark.infra

INTERVAL = "600s"  # Docker's first health check comes long after any deadline here
GREEN = ["green-backend", "green-frontend", "green-agents"]


@pytest.fixture(scope="module")
def calm_stack(pytestconfig: pytest.Config) -> Iterator[docker.DockerClient]:
    """The shared services up at the calm interval, judged healthy by their own checks."""
    problem = docker_problem()
    require_infra(pytestconfig, problem is None, problem or "")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HEALTHCHECK_INTERVAL", INTERVAL)  # for every compose call of the module
        dc = compose()
        dc.compose.down(volumes=True, remove_orphans=True, quiet=True)
        client = docker.from_env()
        try:
            up_serving(dc, SHARED)  # as scripts/local_stack.py up waits
            shared = compose_containers(client, PROJECT, SHARED)
            assert len(shared) == len(SHARED)
            assert {health_of(c) for c in shared} == {"starting"}  # Docker has not looked
            yield client
        finally:
            client.close()
            dc.compose.down(volumes=True, remove_orphans=True, quiet=True)


def settings(folder: Path, compose_file: Path = COMPOSE_FILE, deploy_timeout: int = 60) -> Settings:
    (folder / "bluegreen.toml").write_text(
        f'compose_file = "{compose_file}"\n'
        f'compose_project = "{PROJECT}"\n'
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
    calm_stack: docker.DockerClient, tmp_path: Path
) -> None:
    s = settings(tmp_path)
    result = engine(s).deploy("green", "v1.1.0", backup=False)
    assert result.services == tuple(GREEN)
    containers = compose_containers(calm_stack, PROJECT, GREEN)
    assert len(containers) == len(GREEN)
    for container in containers:
        assert container.status == "running", container.name
        assert health_of(container) == "starting", container.name  # not Docker's verdict
    answer = requests.get("http://127.0.0.1:8011/health", timeout=5)  # it does serve
    assert (answer.status_code, answer.json()["checks"]) == (200, {"postgres": "ok", "redis": "ok"})
    # bluegreen status counts them healthy too: their checks, run now, pass
    assert color_health(s.compose, s.topology)["green"] == "3/3 healthy"


def test_a_failing_health_check_is_reported_with_its_output(
    calm_stack: docker.DockerClient, tmp_path: Path
) -> None:
    # green's backend with a health check that fails, through the container's shell
    text = COMPOSE_FILE.read_text()
    marker = 'test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]'
    head, sep, tail = text.rpartition(marker)  # the last one is green-backend's
    assert sep
    failing = 'test: ["CMD-SHELL", "echo the database is on fire >&2; exit 3"]'
    broken = tmp_path / "compose-failing-check.yml"
    broken.write_text((head + failing + tail).replace("../config/", f"{ROOT}/config/"))
    s = settings(tmp_path, compose_file=broken, deploy_timeout=8)
    with pytest.raises(DeployError) as failed:
        engine(s).deploy("green", "v1.0.0", backup=False)
    first, _, logs = str(failed.value).partition("\n")
    assert first.startswith("deploy of green v1.0.0 failed: not healthy within 8s: "), first
    assert (
        "sutazai-green-backend (starting; its health check: exit 3: the database is on fire)"
        in first
    )
    assert "green-backend" in logs  # the log tail follows
    assert s.state.tags_file.read_text() == ""  # the tag it did not reach is not recorded
