"""The real Docker stack (docker/docker-compose.blue-green.yml) behind a real host HAProxy."""

from __future__ import annotations

import json
import shutil
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from python_on_whales import DockerClient, DockerException

import docker
from pytest_bluegreen.engines.compose import wait_serving as engine_wait_serving
from pytest_bluegreen.load import LoadResult, run_load

from .infra import require_infra
from .stack import ROOT, Backend, Stack, StackFactory

COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"
PROJECT = "sutazai"
SHARED = ["postgres", "redis", "neo4j", "ollama"]
TAGS = (
    "v1.0.0",
    "v1.1.0",
    "v1.2.0-broken",
    "v1.3.0-degrading",
    "v1.4.0-slow",
    "v1.5.0-flaky",
    "v1.6.0-misversioned",
    "v1.7.0-deadagent",
    "v1.8.0-nomodel",
    "v1.9.0-3pct",
    "v1.10.0-tail",
)
# the compose file's published ports, as HAProxy on the host reaches them
ADDRESSES = {
    "BG_BLUE_API_ADDR": "127.0.0.1:8010",
    "BG_GREEN_API_ADDR": "127.0.0.1:8011",
    "BG_BLUE_FRONTEND_ADDR": "127.0.0.1:3010",
    "BG_GREEN_FRONTEND_ADDR": "127.0.0.1:3011",
}


def docker_problem() -> str | None:
    """Why the Docker engine, Compose v2 or our images cannot be used here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (scripts/install-docker)"
    client = DockerClient()
    try:
        client.system.info()
    except DockerException:
        return "no Docker engine answers (scripts/install-docker starts one)"
    try:
        client.compose.version()
    except DockerException:
        return "Docker Compose v2 is missing (scripts/install-docker)"
    missing = [
        f"bluegreen/jarvis:{t}" for t in TAGS if not client.image.exists(f"bluegreen/jarvis:{t}")
    ]
    missing += [
        i
        for i in ("bluegreen/postgres:15", "bluegreen/redis:7", "bluegreen/standins:latest")
        if not client.image.exists(i)
    ]
    if missing:
        return f"images missing: {', '.join(missing)} (scripts/build-images)"
    return None


def compose(**kwargs: Any) -> DockerClient:
    return DockerClient(compose_files=[COMPOSE_FILE], compose_project_name=PROJECT, **kwargs)


def wait_serving(services: list[str], timeout: float = 120) -> None:
    """Wait until every container of the services serves, as a deploy waits: it runs and its
    health check, run here, passes."""
    client = docker.from_env()
    try:
        waited = engine_wait_serving(client, PROJECT, services, timeout=timeout)
    finally:
        client.close()
    assert waited.serving, f"not healthy within {timeout:g}s: {', '.join(waited.brief())}"


def up_serving(
    dc: DockerClient, services: list[str] | None = None, timeout: float = 120, **up: Any
) -> None:
    """``compose up -d`` the services (every one when None), then :func:`wait_serving`; not
    ``--wait``, which waits for Docker's first health check, a calm interval away."""
    dc.compose.up(services, detach=True, quiet=True, **up)
    wait_serving(services or sorted(dc.compose.config().services or {}), timeout)


@dataclass
class Probe:
    """A bounded load on the routed URL while the cycle runs; stops by itself or when told."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    result: LoadResult | None = None
    answered: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def count(sample: object) -> None:
            self.answered += 1

        def run() -> None:
            self.result = run_load(
                self.url, total=200_000, duration=600, concurrency=2, stop=self.stop,
                on_sample=count,
            )  # fmt: skip

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def finish(self) -> LoadResult:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(60)
        assert self.result is not None
        return self.result


@dataclass
class JarvisStack:
    haproxy: Stack
    workdir: Path

    def settings_toml(self, **overrides: Any) -> str:
        values: dict[str, Any] = {
            "compose_file": str(COMPOSE_FILE),
            "compose_project": PROJECT,
            "image_repository": "bluegreen/jarvis",
            "image_variable": "JARVIS_IMAGE",
            "pull": "never",
            "backup_service": "postgres",
            "backup_command": ["pg_dump", "-U", "sutazai", "--no-owner", "sutazai"],
            "backup_dir": str(self.workdir / "backups"),
            "deploy_timeout": 120,
            "env_dir": str(ROOT / "config" / "deploy"),
            "verify_timeout": 10,
            # the shared services as the compose file publishes them
            "postgres_url": "postgresql://sutazai@127.0.0.1:10000/sutazai",
            "redis_url": "redis://127.0.0.1:10001/0",
            "neo4j_url": "http://127.0.0.1:10002",
            "ollama_url": "http://127.0.0.1:10104",
            "ollama_model": "tinyllama",
            # HAProxy's public side of this test stack
            "https_url": f"https://127.0.0.1:{self.haproxy.ports['https']}",
            "http_url": f"http://127.0.0.1:{self.haproxy.ports['http']}",
            "tls_ca": str(self.haproxy.cert),
        }
        values.update(overrides)
        frontends = {"blue": "http://127.0.0.1:3010", "green": "http://127.0.0.1:3011"}
        extra = {c: {"frontend_url": url} for c, url in frontends.items()}
        return self.haproxy.settings_toml(color_extra=extra, **values)

    def write_settings(self, folder: Path, **overrides: Any) -> Path:
        path = folder / "bluegreen.toml"
        path.write_text(self.settings_toml(**overrides))
        return path

    def write_settings_with_tables(self, folder: Path, **overrides: Any) -> Path:
        """With the repository's [thresholds], [compare] and [drill] tables, as the bundled
        stack has them."""
        path = self.write_settings(folder, **overrides)
        path.write_text(path.read_text() + repo_tables())
        return path

    def image_of(self, service: str) -> str | None:
        containers = compose().compose.ps([service])
        return containers[0].config.image if containers else None


def repo_tables(names: tuple[str, ...] = ("thresholds", "compare", "drill")) -> str:
    """The named tables of the repository's bluegreen.toml, as TOML (string values only)."""
    data = tomllib.loads((ROOT / "bluegreen.toml").read_text())
    lines = []
    for name in names:
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in data[name].items()]
    return "\n".join(lines) + "\n"


@contextmanager
def shared_services_behind_haproxy(
    config: pytest.Config, workdir: Path, cert: Path, backends: tuple[Backend, Backend]
) -> Iterator[JarvisStack]:
    """A clean stack with only the shared services up (the colors are deployed by the test),
    and a host HAProxy in front of the colors' published ports; all taken down afterwards."""
    problem = docker_problem()
    require_infra(config, problem is None, problem or "")
    dc = compose()
    dc.compose.down(volumes=True, remove_orphans=True, quiet=True)
    up_serving(dc, SHARED)
    factory = StackFactory(workdir, cert, *backends)
    try:
        yield JarvisStack(factory("haproxy", addresses=ADDRESSES, wait_up=False), workdir)
    finally:
        factory.close()
        dc.compose.down(volumes=True, remove_orphans=True, quiet=True)
