"""HTTP endpoints: health, version, an API round trip, the frontend, TLS and the direct ports.

    pytest checks --env green -m quick             # verify green before switching to it
    pytest checks --env green -k test_http         # just these

Per color (``[green]`` in the test id) through the color's direct URL (``colors.<c>.api_url``):
``/health`` says ok, the running version is the deployed tag, an item created through the API
reads back (the database path), the long-lived stream (``/api/events``) flows from the color,
the frontend page and its assets load, and the direct ports answer for their own color only.
Shared (HAProxy's public side): ``:80`` redirects to https and ``:443`` terminates TLS with a
valid certificate.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.testing import (
    ColorEnvironment,
    ColorSession,
    Settings,
    TagsFile,
    tag_variable,
)

from .support import error_text, json_body

# a certificate closer than this to its end fails the TLS check
CERT_MIN_DAYS_LEFT = 14


# --- fixtures of this file -----------------------------------------------------------------


@pytest.fixture(scope="session")
def frontend(environment: ColorEnvironment, bluegreen_settings: Settings) -> Iterator[ColorSession]:
    """A session for the color's frontend URL (``colors.<c>.frontend_url``); skips if unset."""
    if environment.frontend_url is None:
        pytest.skip(
            f"{environment.name}'s frontend is not configured "
            f"(colors.{environment.name}.frontend_url in the bluegreen settings)"
        )
    with ColorSession(
        environment.frontend_url, bluegreen_settings.checks.http_timeout, environment.name
    ) as session:
        yield session


@pytest.fixture(scope="session")
def deployed_tag(color: str, bluegreen_settings: Settings) -> str:
    """The tag ``--deploy`` last deployed to this color, from the Compose env file it keeps
    next to the state file (``GREEN_TAG=v1.1.0``); skips when there is no record."""
    tags_file = bluegreen_settings.state.tags_file
    variable = tag_variable(color)
    tag = TagsFile(tags_file).tag_of(color)
    if not tag:
        pytest.skip(
            f"no deployed tag is recorded for {color} ({variable} in {tags_file}); "
            "deploy with --deploy TAG to have one"
        )
    return tag


# --- per color -----------------------------------------------------------------------------


@pytest.mark.quick
def test_health(http: ColorSession, color: str, bluegreen_settings: Settings) -> None:
    response = http.get("/health")
    body = json_body(response)
    failing = "; ".join(
        f"{name}: {value}" for name, value in (body.get("checks") or {}).items() if value != "ok"
    )
    healthy = response.status_code == 200 and body.get("status") == "ok"
    assert healthy, (
        f"{color} is not healthy: /health answers HTTP {response.status_code}, "
        f"status {body.get('status')!r}: {failing or error_text(response)}"
    )
    who = bluegreen_settings.topology.answered_by(response).color
    assert who == color, f"{http.base_url} answers as {who}, not as {color}"


@pytest.mark.quick
def test_version_is_deployed_tag(
    http: ColorSession,
    color: str,
    deployed_tag: str,
    environment: ColorEnvironment,
    bluegreen_settings: Settings,
) -> None:
    response = http.get("/version")
    assert response.status_code == 200, f"{color} /version: {error_text(response)}"
    running = {"API": json_body(response).get("version")}
    if environment.frontend_url is not None:
        health = urljoin(environment.frontend_url + "/", "health")
        page = requests.get(health, timeout=bluegreen_settings.checks.http_timeout)
        running["frontend"] = json_body(page).get("version")
    wrong = {part: version for part, version in running.items() if version != deployed_tag}
    assert not wrong, f"{color} was deployed at {deployed_tag} but runs " + ", ".join(
        f"{version} ({part})" for part, version in wrong.items()
    )


@pytest.mark.quick
def test_api_round_trip(http: ColorSession, color: str) -> None:
    name = f"bluegreen-smoke-{color}-{uuid.uuid4().hex[:8]}"
    created = http.post("/api/items", json={"name": name})
    assert created.status_code in (200, 201), (
        f"{color} cannot create an item through its API: POST /api/items {error_text(created)}"
    )
    item = json_body(created)
    assert "id" in item, f"{color} created an item without an id: {created.text!r}"
    read = http.get(f"/api/items/{item['id']}")
    assert read.status_code == 200, (
        f"{color} cannot read item {item['id']} back: GET /api/items/{item['id']} "
        f"{error_text(read)}"
    )
    assert json_body(read).get("name") == name, f"read back {read.text!r}, created {name!r}"


@pytest.mark.quick
def test_events_stream(http: ColorSession, color: str) -> None:
    """The long-lived endpoint (Server-Sent Events) streams from the color itself."""
    with http.get("/api/events", stream=True) as response:
        assert response.status_code == 200, f"{color} GET /api/events: {error_text(response)}"
        kind = response.headers.get("Content-Type", "")
        assert kind.startswith("text/event-stream"), f"{color} /api/events is {kind!r}"
        events = []
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 2:
                break
    assert [e.get("color") for e in events] == [color, color], f"{color} streamed {events}"
    assert events[1].get("n") == events[0].get("n", -1) + 1, f"{color} streamed {events}"


@pytest.mark.quick
def test_frontend_page_and_assets(
    frontend: ColorSession, color: str, bluegreen_settings: Settings
) -> None:
    page = frontend.get("/")
    assert page.status_code == 200, (
        f"{color}'s frontend page {frontend.base_url}: {error_text(page)}"
    )
    assert "text/html" in page.headers.get("Content-Type", ""), (
        f"{color}'s frontend page is {page.headers.get('Content-Type')}, not HTML"
    )
    who = bluegreen_settings.topology.answered_by(page).color
    assert who == color, f"{color}'s frontend URL {frontend.base_url} is served by {who}"
    assets = referenced_assets(page.text)
    assert assets, f"{color}'s frontend page references no stylesheet or script"
    broken = []
    for asset in assets:
        url = urljoin(frontend.base_url, asset)
        if urlsplit(url).netloc != urlsplit(frontend.base_url).netloc:
            continue  # another site's asset (a CDN) is not this color's to serve
        response = frontend.get(url)
        if response.status_code != 200 or not response.content:
            broken.append(f"{asset} ({error_text(response)})")
    assert not broken, f"{color}'s frontend page loads, but not its assets: {', '.join(broken)}"


@pytest.mark.quick
def test_frontend_uses_its_own_api(frontend: ColorSession, color: str) -> None:
    # the page's script calls /api/items on its own origin; the frontend proxies it to the
    # color's backend and names that backend in X-Bluegreen-Api-Color
    response = frontend.get("/api/items")
    assert response.status_code == 200, (
        f"{color}'s frontend cannot reach its API: GET /api/items {error_text(response)}"
    )
    api_color = response.headers.get("X-Bluegreen-Api-Color")
    assert api_color == color, f"{color}'s frontend talks to {api_color}'s API"


@pytest.mark.quick
def test_direct_ports_answer_for_their_color_only(
    http: ColorSession, color: str, bluegreen_settings: Settings
) -> None:
    topology = bluegreen_settings.topology
    answers = [topology.answered_by(http.get("/version")).color for _ in range(3)]
    assert answers == [color] * 3, f"{color}'s direct URL {http.base_url} answered as {answers}"
    other = topology.other(color)
    other_url = topology.color[other].api_url
    try:
        response = requests.get(
            other_url + "/version", timeout=bluegreen_settings.checks.http_timeout
        )
    except requests.RequestException:
        return  # the other color may well be down; it only must not answer as this one
    who = topology.answered_by(response).color
    assert who != color, f"{other}'s direct URL {other_url} answers as {color}"


# --- HAProxy's public side (shared: the same for both colors) --------------------------------


def public_url(services: ServiceSettings, key: str) -> str:
    url: str | None = getattr(services, key)
    if url is None:
        pytest.skip(f"HAProxy's public side is not configured ({key} in the bluegreen settings)")
    return url


@pytest.mark.quick
@pytest.mark.shared
def test_http_redirects_to_https(
    bluegreen_settings: Settings, bluegreen_services: ServiceSettings
) -> None:
    url = public_url(bluegreen_services, "http_url")
    response = requests.get(
        url + "/health", allow_redirects=False, timeout=bluegreen_settings.checks.http_timeout
    )
    location = response.headers.get("Location", "")
    assert response.status_code in (301, 302, 307, 308), (
        f"{url} answers HTTP {response.status_code} instead of redirecting to https"
    )
    assert location.startswith("https://"), f"{url} redirects to {location!r}, not to https"
    assert urlsplit(location).path == "/health", f"{url}/health redirects to {location}"


@pytest.mark.quick
@pytest.mark.shared
def test_https_terminates_tls(
    bluegreen_settings: Settings, bluegreen_services: ServiceSettings
) -> None:
    url = public_url(bluegreen_services, "https_url")
    ca = bluegreen_services.tls_ca
    try:
        response = requests.get(
            url + "/health",
            verify=str(ca) if ca else True,
            timeout=bluegreen_settings.checks.http_timeout,
        )
    except requests.exceptions.SSLError as exc:
        # requests counts SSLError as a ConnectionError, but a certificate that does not
        # verify is an answer, not an outage: reported outside this block, as a wrong answer
        tls_error: str | None = str(exc)
    else:
        tls_error = None
    assert tls_error is None, f"TLS to {url} fails verification (CA {ca or 'system'}): {tls_error}"
    # any status: the live color's health is its own checks' business, TLS is HAProxy's
    assert "Strict-Transport-Security" in response.headers, (
        f"{url} answers HTTP {response.status_code} without Strict-Transport-Security"
    )


@pytest.mark.quick
@pytest.mark.shared
def test_tls_certificate_is_valid(
    bluegreen_settings: Settings, bluegreen_services: ServiceSettings
) -> None:
    url = urlsplit(public_url(bluegreen_services, "https_url"))
    host, port = url.hostname or "localhost", url.port or 443
    ca = bluegreen_services.tls_ca
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    timeout = bluegreen_settings.checks.http_timeout
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate = tls.getpeercert()
            protocol = tls.version()
    except ssl.SSLCertVerificationError as exc:
        pytest.fail(f"the certificate of {host}:{port} does not verify: {exc.verify_message}")
    assert certificate is not None
    days_left = (ssl.cert_time_to_seconds(str(certificate["notAfter"])) - time.time()) / 86400
    assert days_left >= CERT_MIN_DAYS_LEFT, (
        f"the certificate of {host}:{port} expires in {days_left:.0f} days "
        f"({certificate['notAfter']})"
    )
    assert protocol in ("TLSv1.2", "TLSv1.3"), f"{host}:{port} negotiated {protocol}"


# --- helpers ---------------------------------------------------------------------------------


class _AssetParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "link" and found.get("rel") in ("stylesheet", "icon", "modulepreload"):
            target = found.get("href")
        elif tag in ("script", "img"):
            target = found.get("src")
        else:
            return
        if target:
            self.assets.append(target)


def referenced_assets(page: str) -> list[str]:
    """The stylesheets, scripts and images an HTML page references."""
    parser = _AssetParser()
    parser.feed(page)
    return parser.assets
