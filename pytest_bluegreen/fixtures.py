"""Fixtures for checks. Each can be overridden by a fixture of the same name in a conftest.py.

| fixture              | scope    | type                  |
|----------------------|----------|-----------------------|
| bluegreen_settings   | session  | Settings              |
| color                | session  | str (parametrized)    |
| environment          | session  | ColorEnvironment      |
| http                 | session  | ColorSession          |
| haproxy              | session  | RuntimeApi            |
| live_color           | function | str or None           |
| bluegreen_secrets    | session  | Mapping[str, str]     |
| docker_client        | session  | docker.DockerClient   |
| color_containers     | session  | dict[str, Container]  |
| container_host       | session  | (name) -> testinfra Host |
| postgres_dsn         | session  | str (skips if unset)  |
| redis_url            | session  | str (skips if unset)  |
| ollama_http          | session  | ColorSession (skips if unset) |
| neo4j_http           | session  | ColorSession (skips if unset) |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .eventually import InfrastructureError
from .haproxy import RuntimeApi, ServerRef
from .keys import SETTINGS_KEY
from .settings import Settings
from .switch import live_color as read_live_color

if TYPE_CHECKING:
    from docker.models.containers import Container

    import docker

__all__ = ["ColorEnvironment", "ColorSession"]


@dataclass(frozen=True)
class ColorEnvironment:
    """One color's settings plus its env files (``shared.env`` + ``<color>.env``).

    ``secrets`` (from ``secrets.env``) never shows in a repr, a log or a report.
    """

    name: str
    api_url: str
    frontend_url: str | None
    servers: tuple[ServerRef, ...]
    variables: Mapping[str, str]
    secrets: Mapping[str, str] = field(repr=False)


class ColorSession(requests.Session):
    """A requests session bound to one color's direct API URL.

    Relative URLs are joined to ``base_url``; every request gets the configured timeout; only
    connection errors are retried (twice, short backoff): an HTTP error is an answer, not
    something to hide.
    """

    def __init__(self, base_url: str, timeout: float, color: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.color = color
        retry = Retry(
            total=2,
            connect=2,
            read=False,  # re-raise a read timeout as such (read=0 wraps it in ConnectionError)
            status=0,
            other=0,
            backoff_factor=0.05,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        # the last exchange, attached to the report when a check fails
        self.last_response: requests.Response | None = None
        self.hooks["response"].append(self._remember)

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_response = response

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, urljoin(self.base_url, url), *args, **kwargs)

    def __repr__(self) -> str:
        return f"<ColorSession {self.color} {self.base_url}>"


@pytest.fixture(scope="session")
def bluegreen_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings of this run."""
    settings: Settings = pytestconfig.stash[SETTINGS_KEY]
    return settings


@pytest.fixture(scope="session")
def color(request: pytest.FixtureRequest) -> str:
    """The color a check runs for; checks using it are parametrized by color."""
    param = getattr(request, "param", None)
    if not isinstance(param, str):
        raise pytest.UsageError(
            f"{request.node.nodeid}: the 'color' fixture is parametrized by pytest-bluegreen; "
            "do not request it where it cannot be"
        )
    return param


@pytest.fixture(scope="session")
def environment(color: str, bluegreen_settings: Settings) -> ColorEnvironment:
    """That color's settings and env-file variables."""
    cfg = bluegreen_settings.color[color]
    files = bluegreen_settings.env_files
    return ColorEnvironment(
        name=color,
        api_url=cfg.api_url,
        frontend_url=cfg.frontend_url,
        servers=cfg.servers,
        variables=files.variables(color),
        secrets=files.secrets_values(),
    )


@pytest.fixture(scope="session")
def http(environment: ColorEnvironment, bluegreen_settings: Settings) -> Iterator[ColorSession]:
    """A requests session for the color's direct API URL (keep-alive, shared per color)."""
    with ColorSession(environment.api_url, bluegreen_settings.http_timeout, environment.name) as s:
        yield s


@pytest.fixture(scope="session")
def haproxy(bluegreen_settings: Settings) -> RuntimeApi:
    """A client for HAProxy's Runtime API."""
    return RuntimeApi(bluegreen_settings.runtime_api, bluegreen_settings.runtime_api_timeout)


@pytest.fixture
def live_color(haproxy: RuntimeApi, bluegreen_settings: Settings) -> str | None:
    """The color HAProxy sends traffic to now (None when neither or both)."""
    return read_live_color(haproxy, bluegreen_settings)


def not_configured(what: str, key: str) -> None:
    """Skip: a check of something this deployment does not have is not passed silently."""
    pytest.skip(f"{what} is not configured ({key} in the bluegreen settings)")


@pytest.fixture(scope="session")
def bluegreen_secrets(bluegreen_settings: Settings) -> Mapping[str, str]:
    """secrets.env: never print these; they are not in any repr."""
    return bluegreen_settings.env_files.secrets_values()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker SDK client for the engine (DOCKER_HOST respected)."""
    import docker  # noqa: PLC0415 - only checks that look at containers need the engine

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise InfrastructureError(f"the Docker engine does not answer: {exc}") from exc
    yield client
    client.close()


@pytest.fixture(scope="session")
def color_containers(
    color: str, bluegreen_settings: Settings, docker_client: docker.DockerClient
) -> dict[str, Container]:
    """The color's Compose containers by service name (found by the Compose labels)."""
    found: dict[str, Container] = {}
    for service in bluegreen_settings.color[color].services:
        labels = [
            f"com.docker.compose.project={bluegreen_settings.compose_project}",
            f"com.docker.compose.service={service}",
        ]
        containers = docker_client.containers.list(all=True, filters={"label": labels})
        if containers:
            found[service] = containers[0]
    return found


@pytest.fixture(scope="session")
def container_host() -> Callable[[str], Any]:
    """``container_host("sutazai-green-backend")``: a testinfra host inside that container."""
    import testinfra  # noqa: PLC0415

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = testinfra.get_host(f"docker://{name}")
        return cache[name]

    return get


def _with_password(url: str, password: str | None) -> str:
    parts = urlsplit(url)
    if not password or parts.password is not None or parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="session")
def postgres_dsn(bluegreen_settings: Settings, bluegreen_secrets: Mapping[str, str]) -> str:
    """The shared PostgreSQL, with the password from secrets.env."""
    if bluegreen_settings.postgres_url is None:
        not_configured("postgres", "postgres_url")
    assert bluegreen_settings.postgres_url is not None
    password = bluegreen_secrets.get("POSTGRES_PASSWORD", "sutazai-dev")
    return _with_password(bluegreen_settings.postgres_url, password)


@pytest.fixture(scope="session")
def redis_url(bluegreen_settings: Settings, bluegreen_secrets: Mapping[str, str]) -> str:
    """The shared Redis, with the password from secrets.env (if any)."""
    if bluegreen_settings.redis_url is None:
        not_configured("redis", "redis_url")
    assert bluegreen_settings.redis_url is not None
    parts = urlsplit(bluegreen_settings.redis_url)
    password = bluegreen_secrets.get("REDIS_PASSWORD")
    if password and parts.password is None:
        netloc = f":{password}@{parts.netloc}"
        return urlunsplit(parts._replace(netloc=netloc))
    return bluegreen_settings.redis_url


def _service_session(url: str | None, name: str, key: str, timeout: float) -> ColorSession:
    if url is None:
        not_configured(name, key)
    assert url is not None
    return ColorSession(url, timeout, name)


@pytest.fixture(scope="session")
def ollama_http(bluegreen_settings: Settings) -> Iterator[ColorSession]:
    """Ollama's HTTP API (``/api/tags``, ``/api/generate``)."""
    s = bluegreen_settings
    with _service_session(s.ollama_url, "ollama", "ollama_url", s.ollama_timeout) as session:
        yield session


@pytest.fixture(scope="session")
def neo4j_http(bluegreen_settings: Settings) -> Iterator[ColorSession]:
    """Neo4j's HTTP API (discovery document, transactions)."""
    s = bluegreen_settings
    with _service_session(s.neo4j_url, "neo4j", "neo4j_url", s.http_timeout) as session:
        yield session
