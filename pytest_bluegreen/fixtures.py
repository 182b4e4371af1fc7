"""Fixtures for checks. Each can be overridden by a fixture of the same name in a conftest.py.

| fixture              | scope    | type                  |
|----------------------|----------|-----------------------|
| bluegreen_settings   | session  | Settings              |
| color                | session  | str (parametrized)    |
| environment          | session  | ColorEnvironment      |
| http                 | session  | ColorSession          |
| haproxy              | session  | RuntimeApi            |
| live_color           | function | str or None           |
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .haproxy import RuntimeApi, ServerRef
from .keys import SETTINGS_KEY
from .settings import Settings
from .switch import live_color as read_live_color

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
            read=0,
            status=0,
            other=0,
            backoff_factor=0.05,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

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
