"""The real Docker stack (docker/docker-compose.blue-green.yml) behind a real host HAProxy."""

from __future__ import annotations

import json
import secrets
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
from pytest_bluegreen.engines.compose import ComposeEngine, tag_variable
from pytest_bluegreen.engines.compose import wait_serving as engine_wait_serving
from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.judge.load import LoadResult, run_load
from pytest_bluegreen.settings.resolve import resolve

from .stack import (
    BLUE_LIVE,
    GREEN_LIVE,
    PORT_VARIABLES,
    ROOT,
    Backend,
    Stack,
    StackFactory,
    free_ports,
)

COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"
SHARED = ["postgres", "redis", "neo4j", "ollama"]
COLORS = [f"{c}-{role}" for c in ("blue", "green") for role in ("backend", "frontend", "agents")]
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
    "v1.11.0-routedflaky",
)
# Docker's own health checks: not during a test session. Nobody waits for them (a deploy and
# these fixtures run each container's check themselves), so Docker says "starting" throughout,
# the same in every module: one value for every compose call of the session, or Compose would
# re-create the shared services for a changed configuration
HEALTHCHECK_INTERVAL = "3600s"
PORT_TAKEN = ("port is already allocated", "address already in use")
ENGINE_SETTINGS = {
    "compose_file",
    "compose_project",
    "image_repository",
    "image_variable",
    "pull",
    "deploy_timeout",
    "env_dir",
}

# seconds each probe connection waits after an answer: a request every few milliseconds sees
# every moment of a switch without a closed loop that takes a core from the stack it watches
PROBE_PAUSE = 0.005


@dataclass(frozen=True)
class ComposeProject:
    """The test stack's own Compose project: its name (containers, networks and the volume are
    named after it) and its host ports, through the compose file's variables. Nothing of
    another project, the real stack's ``sutazai`` included, is touched."""

    name: str
    ports: dict[str, int]

    @classmethod
    def new(cls, prefix: str = "bgtest") -> ComposeProject:
        return cls(f"{prefix}-{secrets.token_hex(4)}", cls._ports())

    @staticmethod
    def _ports() -> dict[str, int]:
        return dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))

    def with_new_ports(self) -> ComposeProject:
        return ComposeProject(self.name, self._ports())

    @property
    def variables(self) -> dict[str, str]:
        """What every compose call for this project needs in its environment."""
        return {
            "COMPOSE_PROJECT_NAME": self.name,
            "HEALTHCHECK_INTERVAL": HEALTHCHECK_INTERVAL,
            **{k: str(v) for k, v in self.ports.items()},
        }

    @contextmanager
    def environment(self) -> Iterator[None]:
        """The project's variables in this process's environment (and so in the gate's
        subprocesses, whose ``compose up`` must find the same configuration)."""
        with pytest.MonkeyPatch.context() as env:
            for key, value in self.variables.items():
                env.setenv(key, value)
            yield

    def client(self, **kwargs: Any) -> DockerClient:
        return DockerClient(compose_files=[COMPOSE_FILE], compose_project_name=self.name, **kwargs)

    def container(self, service: str) -> str:
        """The container name of one of the project's services."""
        return f"{self.name}-{service}"

    @property
    def network(self) -> str:
        """The project's network the shared services are on."""
        return f"{self.name}-network"

    def address(self, variable: str) -> str:
        return f"127.0.0.1:{self.ports[variable]}"

    def api_address(self, color: str) -> str:
        return self.address(f"{color.upper()}_API_PORT")

    def frontend_url(self, color: str) -> str:
        return f"http://{self.address(f'{color.upper()}_FRONTEND_PORT')}"

    @property
    def haproxy_addresses(self) -> dict[str, str]:
        """HAProxy's BG_*_ADDR: the colors' published ports, as HAProxy on the host reaches
        them."""
        return {
            "BG_BLUE_API_ADDR": self.api_address("blue"),
            "BG_GREEN_API_ADDR": self.api_address("green"),
            "BG_BLUE_FRONTEND_ADDR": self.address("BLUE_FRONTEND_PORT"),
            "BG_GREEN_FRONTEND_ADDR": self.address("GREEN_FRONTEND_PORT"),
        }

    @property
    def service_settings(self) -> dict[str, str]:
        """The shared services' settings, as this project publishes them."""
        return {
            "postgres_url": f"postgresql://sutazai@{self.address('POSTGRES_HOST_PORT')}/sutazai",
            "redis_url": f"redis://{self.address('REDIS_HOST_PORT')}/0",
            "neo4j_url": f"http://{self.address('NEO4J_HOST_PORT')}",
            "ollama_url": f"http://{self.address('OLLAMA_HOST_PORT')}",
        }

    def down(self) -> None:
        """Everything of this project goes: containers, networks, its volume."""
        with self.environment():
            self.client().compose.down(volumes=True, remove_orphans=True, quiet=True)


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


def wait_serving(project: ComposeProject, services: list[str], timeout: float = 120) -> None:
    """Wait until every container of the services serves, as a deploy waits: it runs and its
    health check, run here, passes."""
    client = docker.from_env()
    try:
        waited = engine_wait_serving(client, project.name, services, timeout=timeout)
    finally:
        client.close()
    assert waited.serving, f"not healthy within {timeout:g}s: {', '.join(waited.brief())}"


def up_serving(
    project: ComposeProject,
    services: list[str] | None = None,
    timeout: float = 120,
    dc: DockerClient | None = None,
    **up: Any,
) -> None:
    """``compose up -d`` the services (every one when None), then :func:`wait_serving`; not
    ``--wait``, which waits for Docker's first health check, a calm interval away. ``dc``: a
    client with other env files (the tags, a fault)."""
    dc = dc or project.client()
    with project.environment():
        dc.compose.up(services, detach=True, quiet=True, **up)
    wait_serving(project, services or sorted(dc.compose.config().services or {}), timeout)


@contextmanager
def own_project(prefix: str = "bgtest") -> Iterator[ComposeProject]:
    """A new Compose project with the shared services up and serving, on ports nobody holds
    (others are chosen when Docker finds one taken meanwhile); removed, its volume with it,
    afterwards."""
    project = ComposeProject.new(prefix)
    try:
        for attempt in range(5):
            try:
                up_serving(project, SHARED)
                break
            except DockerException as exc:
                text = f"{exc.stderr or ''} {exc}"
                if attempt == 4 or not any(taken in text for taken in PORT_TAKEN):
                    raise
            project = project.with_new_ports()
        yield project
    finally:
        project.down()


def fresh_colors(project: ComposeProject) -> None:
    """Back to a stack with no color running and every shared service up and serving as the
    compose file says: what a module before changed (colors deployed, a service stopped or
    re-configured) undone; the data kept."""
    dc = project.client()
    with project.environment():
        dc.compose.rm(COLORS, stop=True)
    up_serving(project, SHARED)


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
                on_sample=count, pause=PROBE_PAUSE,
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
    project: ComposeProject

    def settings_toml(self, **overrides: Any) -> str:
        values = {**self.settings_values(), **overrides}
        extra = {c: {"frontend_url": self.project.frontend_url(c)} for c in ("blue", "green")}
        return self.haproxy.settings_toml(color_extra=extra, **values)

    def settings_values(self) -> dict[str, Any]:
        return {
            "compose_file": str(COMPOSE_FILE),
            "compose_project": self.project.name,
            "image_repository": "bluegreen/jarvis",
            "image_variable": "JARVIS_IMAGE",
            "pull": "never",
            "backup_service": "postgres",
            "backup_command": ["pg_dump", "-U", "sutazai", "--no-owner", "sutazai"],
            "backup_dir": str(self.workdir / "backups"),
            "deploy_timeout": 120,
            "env_dir": str(ROOT / "config" / "deploy"),
            "verify_timeout": 10,
            # the shared services as this project publishes them
            **self.project.service_settings,
            "ollama_model": "tinyllama",
            # HAProxy's public side of this test stack
            "https_url": f"https://127.0.0.1:{self.haproxy.ports['https']}",
            "preview_url": f"https://127.0.0.1:{self.haproxy.ports['https']}",
            "preview_ca": str(self.haproxy.cert),
            "http_url": f"http://127.0.0.1:{self.haproxy.ports['http']}",
            "tls_ca": str(self.haproxy.cert),
        }

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

    def compose(self, **kwargs: Any) -> DockerClient:
        return self.project.client(**kwargs)

    def image_of(self, service: str) -> str | None:
        containers = self.compose().compose.ps([service])
        return containers[0].config.image if containers else None

    def engine(self) -> ComposeEngine:
        """The plugin's Compose engine on this stack, with the gate's settings and tags file."""
        folder = self.workdir / "engine"
        folder.mkdir(exist_ok=True)
        # the plugin's own settings only (the shared services' belong to the checks' plugin)
        (folder / "bluegreen.toml").write_text(
            self.haproxy.settings_toml(
                **{k: v for k, v in self.settings_values().items() if k in ENGINE_SETTINGS}
            )
        )
        settings = resolve({}, {}, {}, folder)
        return ComposeEngine(settings.compose, settings.topology, settings.state.tags_file)

    def runs(self, color: str, tag: str) -> bool:
        """Every service of the color runs the tag's image."""
        services = color_services(color)
        running = [c for c in self.compose().compose.ps(services) if c.state.running]
        return len(running) == len(services) and all(
            c.config.image == f"bluegreen/jarvis:{tag}" for c in running
        )

    def arrange(self, live: str | None = None, **tags: str | None) -> None:
        """Bring the stack to what a test starts from, changing only what differs: each color
        named running that tag (None: not running, its tag forgotten), ``live`` (when given)
        taking the traffic. Each test of a module leaves what the next one in the file starts
        from, so in the file's order this does nothing; run alone, a test gets its start."""
        engine = self.engine()
        for color, tag in tags.items():
            if tag is None:
                dc = self.compose()
                if dc.compose.ps(color_services(color), all=True):
                    dc.compose.rm(color_services(color), stop=True)
                known = engine.tags.read()
                known.pop(tag_variable(color), None)
                engine.tags.write(known)
            elif not self.runs(color, tag):
                engine.deploy(color, tag, backup=False)
                self.haproxy.wait_up(color, timeout=30)
        wanted = {"blue": BLUE_LIVE, "green": GREEN_LIVE}
        if live is not None and self.haproxy.live_weights() != wanted[live]:
            self.haproxy.route_to(live)


def color_services(color: str) -> list[str]:
    return [s for s in COLORS if s.startswith(f"{color}-")]


def repo_tables(names: tuple[str, ...] = ("thresholds", "compare", "drill")) -> str:
    """The named tables of the repository's bluegreen.toml, as TOML (string values only)."""
    data = tomllib.loads((ROOT / "bluegreen.toml").read_text())
    lines = []
    for name in names:
        lines.append(f"[{name}]")
        lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in data[name].items()]
    return "\n".join(lines) + "\n"


def preview_key() -> str:
    """The preview route's key, as scripts/setup made it: the checks send it from secrets.env
    (the settings' env_dir), a test stack's HAProxy gets it as BG_PREVIEW_KEY."""
    key = read_env_file(ROOT / "config" / "deploy" / "secrets.env").get("PREVIEW_KEY")
    assert key, "config/deploy/secrets.env has no PREVIEW_KEY: run scripts/setup"
    return key


@contextmanager
def shared_services_behind_haproxy(
    project: ComposeProject, workdir: Path, cert: Path, backends: tuple[Backend, Backend]
) -> Iterator[JarvisStack]:
    """The session's Compose project with only the shared services up (the colors are deployed
    by the test), and a host HAProxy of its own in front of the colors' published ports; the
    project's environment set meanwhile."""
    fresh_colors(project)
    factory = StackFactory(workdir, cert, *backends)
    try:
        with project.environment():
            haproxy = factory(
                "haproxy",
                addresses=project.haproxy_addresses,
                wait_up=False,
                env={"BG_PREVIEW_KEY": preview_key()},  # as scripts/local_stack.py gives it
            )
            yield JarvisStack(haproxy, workdir, project)
    finally:
        factory.close()
