"""Shared checks (once per run, whatever ``--env``): HAProxy knows both colors' servers, and
the routed URL answers.

    pytest checks --env shared
"""

from __future__ import annotations

import pytest

from pytest_bluegreen.testing import ColorSession, RuntimeApi, RuntimeApiError, Settings


@pytest.mark.shared
@pytest.mark.quick
def test_haproxy_knows_every_server(haproxy: RuntimeApi, bluegreen_settings: Settings) -> None:
    servers = bluegreen_settings.topology.all_servers
    try:
        states = haproxy.server_states(servers)
    except RuntimeApiError as exc:
        pytest.fail(f"HAProxy at {haproxy.address}: {exc}", pytrace=False)
    assert len(states) == len(servers)


@pytest.mark.shared
@pytest.mark.quick
def test_routed_url_answers(
    routed_http: ColorSession, live_color: str | None, health_path: str
) -> None:
    if live_color is None:
        pytest.skip("no color takes traffic yet: the first switch makes one live")
    response = routed_http.get(health_path)
    assert response.ok, (
        f"the routed URL does not answer: GET {response.url} answers HTTP "
        f"{response.status_code} ({live_color} is live): {response.text[:200]!r}"
    )
