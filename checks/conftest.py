"""Shared by the shipped checks: an ``http`` that waits until the color itself answers.

Copy this file (and ``support.py``) along with the checks you take: the ``http`` fixture below
replaces the plugin's for every check in this folder. The checks of the shared services use
the fixtures of ``pytest_bluegreen.contrib.services`` (the ``checks`` extra): activate it in
your root conftest.py (``pytest_plugins = ["pytest_bluegreen.contrib.services"]``), as this
repository's does, or with ``-p pytest_bluegreen.contrib.services``.
"""

from __future__ import annotations

import pytest
import requests

from pytest_bluegreen.contrib.services import tls_ca_of
from pytest_bluegreen.testing import (
    ColorEnvironment,
    ColorSession,
    InfrastructureError,
    RuntimeApi,
    RuntimeApiError,
    Settings,
    TlsError,
    eventually,
)


@pytest.fixture(scope="session")
def http(
    http: ColorSession,
    environment: ColorEnvironment,
    haproxy: RuntimeApi,
    bluegreen_settings: Settings,
) -> ColorSession:
    """The plugin's ``http`` session, handed out once the color answers on its direct URL.

    Right after a deploy HAProxy may still count the re-created color DOWN (``rise`` health
    checks, ``inter`` apart), and the color's direct port then answers 503 itself. This waits
    at most ``verify_timeout`` seconds for an answer from the application (any status: judging
    it is the checks' job). A color that never answers is unreachable: the checks that need it
    are reported as INFRA-ERROR, with what HAProxy's health checks say about its servers. An
    https:// color is verified against ``tls_ca`` when it is set.
    """
    if (ca := tls_ca_of(bluegreen_settings)) is not None:
        http.verify = str(ca)

    def the_color_answers() -> None:
        try:
            response = http.get("/health")
        except requests.exceptions.SSLError as exc:  # not the color's answer: no answer at all
            raise TlsError(f"{http.color} at {http.base_url}: TLS: {exc}") from exc
        if bluegreen_settings.topology.answered_by(response).color is None:
            raise InfrastructureError(
                f"{http.color} does not answer at {http.base_url}: HTTP {response.status_code} "
                f"from the proxy, not from the application ({haproxy_view(haproxy, environment)})"
            )

    eventually(the_color_answers, timeout=bluegreen_settings.switching.verify_timeout, interval=0.2)
    return http


def haproxy_view(haproxy: RuntimeApi, environment: ColorEnvironment) -> str:
    """``HAProxy: api_backend/green-api DOWN (Layer7 wrong status), ...``"""
    try:
        rows = [row for row in haproxy.show_stat() if row.ref in environment.servers]
    except RuntimeApiError as exc:
        return f"HAProxy's Runtime API does not answer: {exc}"
    return "HAProxy: " + (
        ", ".join(
            f"{row.ref} {row.status} ({row.raw.get('check_desc') or row.check_status})"
            for row in rows
        )
        or f"none of {', '.join(map(str, environment.servers))} is known"
    )
