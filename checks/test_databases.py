"""Database connectivity: the shared PostgreSQL, Redis and Neo4j directly, and as a color sees them.

    pytest checks --env shared -k test_databases   # the shared services only

Directly (``shared``, with psycopg 3, redis-py and Neo4j's HTTP API) from the settings'
``postgres_url``, ``redis_url`` and ``neo4j_url`` (passwords from ``secrets.env``); a service
left out of the settings is skipped with the reason. From the color's side: its ``/health``
report of each dependency (quick), and an item created through its API found in the shared
PostgreSQL.

The direct PostgreSQL and Redis checks are not ``quick``: importing psycopg and redis-py alone
costs about 0.3 s of CPU, a sixth of the quick gate's budget. In the quick gate the color's own
report and the containers' health checks (``pg_isready``, ``PING``) cover them. The drivers are
imported inside the checks, so a ``-m quick`` run does not pay for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.testing import ColorSession, Settings

from .support import error_text, json_body


def connect_timeout(settings: Settings) -> int:
    return max(1, round(settings.checks.http_timeout))


# --- directly (shared) ------------------------------------------------------------------------


@pytest.mark.shared
def test_postgres(
    postgres_dsn: str, bluegreen_settings: Settings, bluegreen_services: ServiceSettings
) -> None:
    import psycopg  # noqa: PLC0415 - see the module's docstring

    try:
        conn = psycopg.connect(
            postgres_dsn, connect_timeout=connect_timeout(bluegreen_settings), autocommit=True
        )
    except psycopg.OperationalError as exc:
        if "FATAL:" not in str(exc):
            raise  # refused, timed out: the plugin reports INFRA-ERROR
        # the server answered (bad password, no such database): a wrong answer, reported
        # outside this block so the connection error is not taken for the cause
        refused: str | None = " ".join(str(exc).split())
    else:
        refused = None
    assert refused is None, f"PostgreSQL {bluegreen_services.postgres_url} refuses us: {refused}"
    with conn:
        conn.execute("CREATE TEMPORARY TABLE bluegreen_check (n integer)")
        conn.execute("INSERT INTO bluegreen_check VALUES (1)")
        row = conn.execute("SELECT n FROM bluegreen_check").fetchone()
    assert row == (1,), f"PostgreSQL {bluegreen_services.postgres_url}: wrote 1, read {row!r}"


@pytest.mark.shared
def test_redis(
    redis_url: str, bluegreen_settings: Settings, bluegreen_services: ServiceSettings
) -> None:
    import redis  # noqa: PLC0415 - see the module's docstring

    timeout = bluegreen_settings.checks.http_timeout
    key = f"bluegreen:check:{uuid.uuid4().hex}"
    # a connection error escapes as redis.ConnectionError: INFRA-ERROR
    with redis.Redis.from_url(
        redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
    ) as client:
        assert client.ping(), f"Redis {bluegreen_services.redis_url} does not answer PING"
        client.set(key, "ok", ex=60)
        value = client.get(key)
        client.delete(key)
    assert value == b"ok", f"Redis {bluegreen_services.redis_url}: wrote 'ok', read {value!r}"


@pytest.mark.quick
@pytest.mark.shared
def test_neo4j(neo4j_http: ColorSession, bluegreen_secrets: Mapping[str, str]) -> None:
    discovery = neo4j_http.get("/")
    assert discovery.status_code == 200, f"Neo4j {neo4j_http.base_url}: {error_text(discovery)}"
    document = json_body(discovery)
    assert "transaction" in document, f"Neo4j's discovery document has no 'transaction': {document}"
    # NEO4J_AUTH in secrets.env, as the neo4j image takes it: "neo4j/<password>" or "none"
    user, _, password = bluegreen_secrets.get("NEO4J_AUTH", "none").partition("/")
    auth = (user, password) if password else None
    commit = document["transaction"].replace("{databaseName}", "neo4j") + "/commit"
    response = neo4j_http.post(
        commit, json={"statements": [{"statement": "RETURN 1 AS one"}]}, auth=auth
    )
    assert response.status_code == 200, f"Neo4j transaction {commit}: {error_text(response)}"
    body = json_body(response)
    assert not body.get("errors"), f"Neo4j answers RETURN 1 with errors: {body['errors']}"
    rows = [row["row"] for result in body.get("results", []) for row in result.get("data", [])]
    assert rows == [[1]], f"Neo4j answers RETURN 1 with {rows}"


# --- as the color sees them ---------------------------------------------------------------------


@pytest.mark.quick
def test_color_reaches_its_databases(http: ColorSession, color: str) -> None:
    response = http.get("/health")
    checks = json_body(response).get("checks")
    assert isinstance(checks, dict), (
        f"{color}'s /health reports no dependency checks: {error_text(response)}"
    )
    assert checks, f"{color}'s /health lists no dependencies to check"
    failing = {name: value for name, value in checks.items() if value != "ok"}
    assert not failing, f"{color} cannot reach " + "; ".join(
        f"{name}: {value}" for name, value in failing.items()
    )


def test_color_writes_to_the_shared_postgres(
    http: ColorSession,
    color: str,
    postgres_dsn: str,
    bluegreen_settings: Settings,
    bluegreen_services: ServiceSettings,
) -> None:
    import psycopg  # noqa: PLC0415 - see the module's docstring

    name = f"bluegreen-db-{color}-{uuid.uuid4().hex[:8]}"
    created = http.post("/api/items", json={"name": name})
    assert created.status_code in (200, 201), (
        f"{color} cannot create an item: POST /api/items {error_text(created)}"
    )
    item_id = json_body(created).get("id")
    with psycopg.connect(
        postgres_dsn, connect_timeout=connect_timeout(bluegreen_settings), autocommit=True
    ) as conn:
        # Jarvis keeps items in the table "items" (name, color, ...)
        row = conn.execute("SELECT name, color FROM items WHERE id = %s", (item_id,)).fetchone()
    assert row == (name, color), (
        f"item {item_id} created through {color}'s API is not in the shared PostgreSQL "
        f"{bluegreen_services.postgres_url} (found {row!r})"
    )
