"""Settings and fixtures for the shared services the shipped checks look at (the ``checks``
extra). Activate with ``-p pytest_bluegreen.contrib.services`` or, in the root conftest.py,
``pytest_plugins = ["pytest_bluegreen.contrib.services"]``.

Every setting here is unset by default: a check of a service the deployment does not name is
skipped with the reason, never passed silently.

| fixture             | scope    | type                                  |
|---------------------|----------|---------------------------------------|
| bluegreen_services  | session  | ServiceSettings                       |
| postgres_dsn        | session  | str (skips if unset)                  |
| redis_url           | session  | str (skips if unset)                  |
| ollama_http         | session  | ColorSession (skips if unset)         |
| neo4j_http          | session  | ColorSession (skips if unset)         |
| docker_client       | session  | docker.DockerClient                   |
| color_containers    | session  | dict[str, Container] by service       |
| container_host      | session  | (name) -> testinfra Host              |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from pytest_bluegreen.eventually import InfrastructureError
from pytest_bluegreen.extras import require
from pytest_bluegreen.plugin import add_options
from pytest_bluegreen.settings import Settings, options_of, setting
from pytest_bluegreen.settings import parsers as p

if TYPE_CHECKING:
    from docker.models.containers import Container

    import docker
    from pytest_bluegreen.httpclient import ColorSession

__all__ = ["ServiceSettings", "not_configured", "tls_ca_of", "with_password"]


@dataclass(frozen=True)
class ServiceSettings:
    """The shared services and HAProxy's public side, as the checks reach them."""

    GROUP: ClassVar[str] = "services"
    postgres_url: str | None = setting(
        None,
        p.optional(p.service_url),
        "PostgreSQL for the shared checks, postgresql://USER@HOST:PORT/DB (password from "
        "secrets.env POSTGRES_PASSWORD); unset: those checks skip",
    )
    redis_url: str | None = setting(
        None,
        p.optional(p.service_url),
        "Redis for the shared checks, redis://HOST:PORT/0 (password from secrets.env "
        "REDIS_PASSWORD); unset: those checks skip",
    )
    neo4j_url: str | None = setting(None, p.optional(p.url), "Neo4j HTTP URL; unset: skipped")
    ollama_url: str | None = setting(None, p.optional(p.url), "Ollama URL; unset: skipped")
    ollama_model: str | None = setting(
        None, p.optional(p.text), "the model Ollama must list; unset: the model checks skip"
    )
    ollama_timeout: float = setting(30.0, p.seconds, "seconds a generate call may take")
    https_url: str | None = setting(
        None, p.optional(p.url), "HAProxy's public HTTPS URL (TLS check); unset: skipped"
    )
    http_url: str | None = setting(
        None,
        p.optional(p.url),
        "HAProxy's public HTTP URL, which must redirect to HTTPS; unset: skipped",
    )
    tls_ca: Path | None = setting(
        None,
        p.optional(p.path),
        "CA or certificate file that signs https_url and any https:// api_url (a self-signed "
        "cert works): the checks' HTTP, their load and the comparison verify against it",
        path=True,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser, options_of(ServiceSettings))


def pytest_bluegreen_settings_groups() -> list[type[Any]]:
    return [ServiceSettings]


def tls_ca_of(settings: Settings) -> Path | None:
    """``tls_ca`` when this plugin is active, else None (a check copied without it verifies an
    https:// color as requests does by default)."""
    try:
        return settings.extension(ServiceSettings).tls_ca
    except LookupError:
        return None


def not_configured(what: str, key: str) -> NoReturn:
    """Skip: a check of something this deployment does not have is not passed silently."""
    pytest.skip(f"{what} is not configured ({key} in the bluegreen settings)")


def with_password(url: str, password: str | None) -> str:
    """The URL with ``password`` for its user, percent-encoded (``p@ss/w#rd`` works)."""
    parts = urlsplit(url)
    if not password or parts.password is not None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="session")
def bluegreen_services(bluegreen_settings: Settings) -> ServiceSettings:
    """The services' settings."""
    return bluegreen_settings.extension(ServiceSettings)


@pytest.fixture(scope="session")
def postgres_dsn(bluegreen_services: ServiceSettings, bluegreen_secrets: Mapping[str, str]) -> str:
    """The shared PostgreSQL, with the password from secrets.env (if any)."""
    url = bluegreen_services.postgres_url
    if url is None:
        not_configured("postgres", "postgres_url")
    if urlsplit(url).username is None:
        return url
    return with_password(url, bluegreen_secrets.get("POSTGRES_PASSWORD"))


@pytest.fixture(scope="session")
def redis_url(bluegreen_services: ServiceSettings, bluegreen_secrets: Mapping[str, str]) -> str:
    """The shared Redis, with the password from secrets.env (if any)."""
    url = bluegreen_services.redis_url
    if url is None:
        not_configured("redis", "redis_url")
    return with_password(url, bluegreen_secrets.get("REDIS_PASSWORD"))


def _service_session(url: str | None, name: str, key: str, timeout: float) -> ColorSession:
    if url is None:
        not_configured(name, key)
    from pytest_bluegreen.httpclient import ColorSession  # noqa: PLC0415

    return ColorSession(url, timeout, name)


@pytest.fixture(scope="session")
def ollama_http(bluegreen_services: ServiceSettings) -> Iterator[ColorSession]:
    """Ollama's HTTP API (``/api/tags``, ``/api/generate``)."""
    s = bluegreen_services
    with _service_session(s.ollama_url, "ollama", "ollama_url", s.ollama_timeout) as session:
        yield session


@pytest.fixture(scope="session")
def neo4j_http(
    bluegreen_services: ServiceSettings, bluegreen_settings: Settings
) -> Iterator[ColorSession]:
    """Neo4j's HTTP API (discovery document, transactions)."""
    timeout = bluegreen_settings.checks.http_timeout
    with _service_session(bluegreen_services.neo4j_url, "neo4j", "neo4j_url", timeout) as session:
        yield session


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker SDK client for the engine (DOCKER_HOST respected)."""
    sdk = require("docker", "checks", "the container checks")
    try:
        client = sdk.from_env()
        client.ping()
    except sdk.errors.DockerException as exc:
        raise InfrastructureError(f"the Docker engine does not answer: {exc}") from exc
    yield client
    client.close()


@pytest.fixture(scope="session")
def color_containers(
    color: str, bluegreen_settings: Settings, docker_client: docker.DockerClient
) -> dict[str, Container]:
    """The color's containers by service name (one per service), found by the engine's labels
    (Compose's, or Swarm's: then one running replica of each service on this host)."""
    from pytest_bluegreen.engines import stack_containers  # noqa: PLC0415

    services = bluegreen_settings.topology.color[color].services
    pairs = stack_containers(docker_client, bluegreen_settings, services)
    found: dict[str, Container] = {}
    for service, container in sorted(pairs, key=lambda p: p[1].status != "running"):
        found.setdefault(service, container)  # a running one first
    return found


@pytest.fixture(scope="session")
def container_host() -> Callable[[str], Any]:
    """``container_host("sutazai-green-backend")``: a testinfra host inside that container."""
    testinfra = require("testinfra", "checks", "the checks inside containers")
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = testinfra.get_host(f"docker://{name}")
        return cache[name]

    return get
