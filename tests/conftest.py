from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.infra import require_infra
from tests.support.stack import Backend, Stack, StackFactory, backends, haproxy_binary, make_cert

if TYPE_CHECKING:
    from tests.support.docker_stack import ComposeProject

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _clean_bluegreen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BLUEGREEN_* variable of the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("BLUEGREEN_", "BG_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def haproxy_available(pytestconfig: pytest.Config) -> str:
    binary = haproxy_binary()
    require_infra(
        pytestconfig, binary is not None, "haproxy is not installed (apt-get install haproxy)"
    )
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cert(tmp_path_factory.mktemp("tls") / "bluegreen.pem")


@pytest.fixture(scope="session")
def color_backends(haproxy_available: str) -> Iterator[tuple[Backend, Backend]]:
    yield from backends()


@pytest.fixture
def stack_factory(
    tmp_path: Path, tls_cert: Path, color_backends: tuple[Backend, Backend]
) -> Iterator[StackFactory]:
    blue, green = color_backends
    blue.reset()
    green.reset()
    factory = StackFactory(tmp_path, tls_cert, blue, green)
    yield factory
    factory.close()
    blue.reset()
    green.reset()


@pytest.fixture
def stack(stack_factory: StackFactory) -> Stack:
    """A fresh HAProxy (blue live, green idle) in front of the two backends."""
    return stack_factory()


@pytest.fixture(scope="session")
def compose_project(pytestconfig: pytest.Config) -> Iterator[ComposeProject]:
    """The Docker stack (docker/docker-compose.blue-green.yml) of this test session: a Compose
    project of its own (bgtest-<random>: its containers, networks, volume and host ports), the
    shared services up once for every module that uses it; each module starts from
    ``fresh_colors`` (no color running, the shared services as the compose file says). Removed
    at the end of the session; nothing of another project is touched."""
    from tests.support.docker_stack import docker_problem, own_project  # noqa: PLC0415

    problem = docker_problem()
    require_infra(pytestconfig, problem is None, problem or "")
    with own_project() as project:
        yield project
