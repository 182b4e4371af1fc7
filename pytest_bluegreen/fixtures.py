"""The core fixtures. Each can be overridden by a fixture of the same name in a conftest.py.

| fixture              | scope    | type                         |
|----------------------|----------|------------------------------|
| bluegreen_settings   | session  | Settings                     |
| bluegreen_secrets    | session  | Secrets (a masked Mapping)   |
| color                | session  | str (parametrized)           |
| environment          | session  | ColorEnvironment             |
| http                 | session  | ColorSession                 |
| haproxy              | session  | RuntimeApi                   |
| live_color           | function | str or None                  |
| baseline_color       | function | str or None                  |
| routed_http          | session  | ColorSession (routed URL)    |
| preview_http         | session  | ColorSession (preview route) |
| prometheus           | session  | Prometheus                   |

The types are importable from ``pytest_bluegreen.testing``. The shared services' fixtures
(PostgreSQL, Redis, Neo4j, Ollama, containers) are in ``pytest_bluegreen.contrib.services``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import field
from typing import TYPE_CHECKING

import pytest

from pytest_bluegreen.frozen import Frozen, frozen

from .keys import ANSWERS_KEY, SECRETS_KEY, SETTINGS_KEY
from .settings import Settings

if TYPE_CHECKING:
    from .gate.builds import AnswerLog
    from .haproxy.answers import ServerRef
    from .haproxy.runtime import RuntimeApi
    from .httpclient import ColorSession
    from .judge.prometheus import Prometheus
    from .redaction import Secrets

__all__ = ["ColorEnvironment", "answer_log"]


def answer_log(config: pytest.Config) -> AnswerLog:
    """This process's log of what the colors' answers said about their build; a check that
    reaches a color by other means than ``http`` adds its answers here (``builds.Heard``)."""
    log = config.stash.get(ANSWERS_KEY, None)
    if log is None:
        from .gate.builds import AnswerLog  # noqa: PLC0415 - a check that reaches a color needs it

        log = config.stash[ANSWERS_KEY] = AnswerLog()
    return log


@frozen
class ColorEnvironment(Frozen):
    """One color's settings plus its env files (``shared.env`` + ``<color>.env``).

    ``secrets`` (from ``secrets.env``) never shows in a repr, a log or a report.
    """

    name: str
    api_url: str
    frontend_url: str | None
    servers: tuple[ServerRef, ...]
    variables: Mapping[str, str]
    secrets: Mapping[str, str] = field(repr=False)


@pytest.fixture(scope="session")
def bluegreen_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved settings of this run."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def bluegreen_secrets(pytestconfig: pytest.Config) -> Secrets:
    """secrets.env, loaded once: never print these; their repr shows names only."""
    return pytestconfig.stash[SECRETS_KEY]


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
def environment(
    color: str, bluegreen_settings: Settings, bluegreen_secrets: Secrets
) -> ColorEnvironment:
    """That color's settings and env-file variables."""
    cfg = bluegreen_settings.topology.color[color]
    return ColorEnvironment(
        name=color,
        api_url=cfg.api_url,
        frontend_url=cfg.frontend_url,
        servers=cfg.servers,
        variables=bluegreen_settings.env_files.variables(color),
        secrets=bluegreen_secrets,
    )


@pytest.fixture(scope="session")
def http(
    environment: ColorEnvironment, bluegreen_settings: Settings, pytestconfig: pytest.Config
) -> Iterator[ColorSession]:
    """A requests session for the color's direct API URL (keep-alive, shared per color). What
    each answer says about its build (the version header, HAProxy's server header) is noted
    for the gate, which refuses answers from another build than the deployed one."""
    from .httpclient import ColorSession  # noqa: PLC0415 - requests loads when a check needs it

    topology = bluegreen_settings.topology
    with ColorSession(
        environment.api_url,
        bluegreen_settings.checks.http_timeout,
        environment.name,
        answers=answer_log(pytestconfig),
        version_header=topology.version_header,
        server_header=topology.server_header,
    ) as session:
        yield session


@pytest.fixture(scope="session")
def haproxy(bluegreen_settings: Settings) -> RuntimeApi:
    """A client for HAProxy's Runtime API."""
    return bluegreen_settings.haproxy.client()


@pytest.fixture
def live_color(haproxy: RuntimeApi, bluegreen_settings: Settings) -> str | None:
    """The color HAProxy sends traffic to now (None when neither or both)."""
    topology = bluegreen_settings.topology
    return topology.live_color(haproxy.server_states(topology.all_servers))


@pytest.fixture
def baseline_color(request: pytest.FixtureRequest, bluegreen_settings: Settings) -> str | None:
    """The color a new color is compared with (``compare_baseline``; default: the live color,
    None when neither or both take traffic)."""
    chosen = bluegreen_settings.checks.compare_baseline
    if chosen != "live":
        return chosen
    live: str | None = request.getfixturevalue("live_color")
    return live


@pytest.fixture(scope="session")
def routed_http(bluegreen_settings: Settings) -> Iterator[ColorSession]:
    """A requests session for the routed API URL: whatever color is live answers. The
    ``post`` checks (run by the bake after a switch) use it."""
    from .httpclient import ColorSession  # noqa: PLC0415

    switching, timeout = bluegreen_settings.switching, bluegreen_settings.checks.http_timeout
    with ColorSession(switching.routed_api_url, timeout, "routed") as session:
        yield session


@pytest.fixture(scope="session")
def preview_http(
    pytestconfig: pytest.Config,
    bluegreen_settings: Settings,
    bluegreen_secrets: Secrets,
    environment: ColorEnvironment,
) -> Iterator[ColorSession]:
    """A requests session for this color through HAProxy's public side (``preview_url``, else
    ``routed_api_url``) by the preview route: every request names the color and carries the
    route's key (``PREVIEW_KEY`` in ``secrets.env``), so the idle color answers there before
    any user reaches it, through the same TLS, header rules and limits. Its answers count for
    the gate as the ``http`` session's do. It is handed out once the route answers from the
    color (``verify_path``, within ``verify_timeout``: right after a deploy HAProxy may still
    count the color's servers DOWN); a route that never does is an INFRA-ERROR. A deployment
    without the route (no ``PREVIEW_KEY``) skips what needs it, saying so."""
    import requests  # noqa: PLC0415

    from .eventually import InfrastructureError, eventually  # noqa: PLC0415
    from .haproxy.preview import PREVIEW_SECRET, preview_headers, preview_key  # noqa: PLC0415
    from .httpclient import ColorSession  # noqa: PLC0415
    from .redaction import shown_url  # noqa: PLC0415

    key = preview_key(bluegreen_secrets)  # checked when the session started
    if key is None:
        pytest.skip(
            f"no preview route in this deployment: set {PREVIEW_SECRET} in secrets.env "
            "(and BG_PREVIEW_KEY, the same value, in HAProxy's environment)"
        )
    switching, topology = bluegreen_settings.switching, bluegreen_settings.topology
    url = switching.preview_url or switching.routed_api_url
    color = environment.name

    def from_this_color(response: requests.Response, *args: object, **kwargs: object) -> None:
        """An answer naming another color is the live one standing in (the route is off, or
        HAProxy has another key): never judged as this color's."""
        said = response.headers.get(topology.color_header)
        if said is not None and said != color:
            raise InfrastructureError(
                f"the preview route at {shown_url(url)} answered as {said}, not {color}: is it "
                f"on in HAProxy, with BG_PREVIEW_KEY the same as {PREVIEW_SECRET}?"
            )

    with ColorSession(
        url,
        bluegreen_settings.checks.http_timeout,
        color,
        answers=answer_log(pytestconfig),
        version_header=topology.version_header,
        server_header=topology.server_header,
        origin_headers=preview_headers(color, key),  # never to where a redirect points
    ) as session:
        session.headers.update(preview_headers(color, key))
        session.hooks["response"].insert(0, from_this_color)
        if switching.preview_ca is not None:
            session.verify = str(switching.preview_ca)

        def the_route_answers() -> None:
            response = session.get(switching.verify_path)
            if topology.answered_by(response).color is None:  # HAProxy's own 503, say
                raise InfrastructureError(
                    f"the preview route at {shown_url(url)} does not answer from {color}: "
                    f"GET {switching.verify_path} answers HTTP {response.status_code} naming "
                    "no color (HAProxy counts its servers DOWN?)"
                )

        eventually(the_route_answers, timeout=switching.verify_timeout, interval=0.2)
        yield session


@pytest.fixture(scope="session")
def prometheus(bluegreen_settings: Settings) -> Iterator[Prometheus]:
    """A client of Prometheus' HTTP API (``prometheus_url``): ``query()``, ``query_range()``,
    ``targets()``. Prometheus not answering raises ``PrometheusUnreachable``, an
    infrastructure error (INFRA-ERROR, never a pass). A deployment without Prometheus
    (``prometheus_url`` unset) skips what needs it, saying so."""
    if bluegreen_settings.prometheus.prometheus_url is None:
        pytest.skip("no Prometheus in this deployment: set prometheus_url to check it")
    with bluegreen_settings.prometheus.client() as client:
        yield client
