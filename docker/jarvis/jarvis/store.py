"""PostgreSQL and Redis access for Jarvis: a small blocking connection pool, items, tasks."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
import redis

from jarvis import app_version, deployment_color, is_broken_build
from jarvis.common import env_int

log = logging.getLogger("jarvis.store")
T = TypeVar("T")

ITEM_CACHE_TTL = 300  # seconds an item stays in the Redis cache
TASK_TTL = 86_400  # seconds a task record is kept

SCHEMA = """
BEGIN;
SELECT pg_advisory_xact_lock(727001);  -- blue and green may start at the same moment
CREATE TABLE IF NOT EXISTS items (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT        NOT NULL,
    color      TEXT        NOT NULL,
    version    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMIT;
"""


def queue_key(color: str) -> str:
    """The Redis list a color's agents worker pops tasks from."""
    return f"jarvis:{color}:tasks"


def processing_key(color: str) -> str:
    return f"jarvis:{color}:tasks:processing"


def heartbeat_key(color: str) -> str:
    return f"jarvis:{color}:agents:heartbeat"


def task_key(task_id: str) -> str:
    return f"jarvis:task:{task_id}"


def item_key(item_id: int) -> str:
    return f"jarvis:item:{item_id}"


def redis_client() -> redis.Redis:
    return redis.Redis(
        host=os.environ.get("REDIS_HOST", "redis"),
        port=env_int("REDIS_PORT", 6379),
        password=os.environ.get("REDIS_PASSWORD") or None,
        db=env_int("REDIS_DB", 0),
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        decode_responses=True,
    )


class Database:
    """A blocking PostgreSQL connection pool (psycopg2's pools raise when exhausted).

    ``run(fn)`` hands ``fn`` an autocommit cursor. A connection that fails with a connection
    error is thrown away; when it came from the pool (possibly stale after a PostgreSQL
    restart) the call is retried once on a fresh connection.
    """

    def __init__(self, size: int = 16) -> None:
        self.dsn = {
            "host": os.environ.get("POSTGRES_HOST", "postgres"),
            "port": env_int("POSTGRES_PORT", 5432),
            "dbname": os.environ.get("POSTGRES_DB", "sutazai"),
            "user": os.environ.get("POSTGRES_USER", "sutazai"),
            "password": os.environ.get("POSTGRES_PASSWORD", "sutazai-dev"),
            "connect_timeout": 3,
            "application_name": f"jarvis-{deployment_color()}-{app_version()}",
            "options": "-c statement_timeout=5000",
        }
        self._idle: queue.LifoQueue[psycopg2.extensions.connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(**self.dsn)
        conn.autocommit = True
        return conn

    @contextmanager
    def _connection(self) -> Iterator[tuple[psycopg2.extensions.connection, bool]]:
        if not self._slots.acquire(timeout=5):
            raise psycopg2.OperationalError("no free database connection within 5 s")
        conn = None
        try:
            try:
                conn, reused = self._idle.get_nowait(), True
            except queue.Empty:
                conn, reused = self._connect(), False
            yield conn, reused
        except BaseException as exc:
            # keep a connection that only saw an SQL error and is idle again; drop the rest
            if (
                conn is not None
                and not conn.closed
                and not (
                    isinstance(exc, psycopg2.Error)
                    and not isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
                    and conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
                )
            ):
                conn.close()
            raise
        finally:
            if conn is not None and not conn.closed:
                self._idle.put(conn)
            self._slots.release()

    def run(self, fn: Callable[[psycopg2.extensions.cursor], T]) -> T:
        reused = False
        for attempt in (1, 2):
            try:
                with self._connection() as (conn, reused), conn.cursor() as cur:
                    return fn(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                if attempt == 1 and reused:
                    reused = False
                    continue
                raise
        raise AssertionError("unreachable")

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.run(lambda cur: cur.execute(SCHEMA))
                self._schema_ready = True
                log.info("schema ready (table items)")

    def ping(self) -> None:
        self.run(lambda cur: cur.execute("SELECT 1"))


class Store:
    """Items (PostgreSQL + Redis cache) and tasks (Redis) for one color."""

    def __init__(self) -> None:
        self.db = Database(size=env_int("JARVIS_DB_POOL", 16))
        self.redis = redis_client()
        self.color = deployment_color()
        self.version = app_version()

    # -- health ------------------------------------------------------------------------------
    def check_postgres(self) -> str:
        try:
            self.db.ping()
            return "ok"
        except Exception as exc:
            return f"error: {str(exc).strip() or type(exc).__name__}"

    def check_redis(self) -> str:
        try:
            return "ok" if self.redis.ping() else "error: no PONG"
        except Exception as exc:
            return f"error: {str(exc).strip() or type(exc).__name__}"

    def agents_heartbeat_age(self) -> float | None:
        try:
            raw = self.redis.get(heartbeat_key(self.color))
            return round(time.time() - json.loads(raw)["ts"], 3) if raw else None
        except Exception:
            return None

    # -- the deliberate regression of *-broken builds ----------------------------------------
    def require_release_schema(self) -> None:
        """Broken builds expect a column a migration never added: every /api/* call fails.

        ``/health`` (SELECT 1, PING) keeps answering 200, which is the point: a bare health
        check passes, the smoke checks through the API do not.
        """
        if is_broken_build():
            self.db.run(lambda cur: cur.execute("SELECT title FROM items LIMIT 0"))

    # -- items -------------------------------------------------------------------------------
    def create_item(self, name: str) -> dict[str, Any]:
        self.db.ensure_schema()

        def insert(cur: psycopg2.extensions.cursor) -> tuple[int, Any]:
            cur.execute(
                "INSERT INTO items (name, color, version) VALUES (%s, %s, %s)"
                " RETURNING id, created_at",
                (name, self.color, self.version),
            )
            row = cur.fetchone()
            assert row is not None
            return row[0], row[1]

        item_id, created_at = self.db.run(insert)
        item = {
            "id": item_id,
            "name": name,
            "color": self.color,
            "version": self.version,
            "created_at": created_at.isoformat(),
        }
        item["cached"] = self._cache_item(item)
        return item

    def _cache_item(self, item: dict[str, Any]) -> bool:
        record = {k: item[k] for k in ("id", "name", "color", "version", "created_at")}
        try:
            self.redis.set(item_key(item["id"]), json.dumps(record), ex=ITEM_CACHE_TTL)
            return True
        except redis.RedisError as exc:
            log.warning("item %s not cached: %s", item["id"], exc)
            return False

    def get_item(self, item_id: int) -> dict[str, Any] | None:
        try:
            raw = self.redis.get(item_key(item_id))
        except redis.RedisError as exc:
            log.warning("redis read failed, falling back to PostgreSQL: %s", exc)
            raw = None
        if raw:
            return {**json.loads(raw), "source": "redis"}
        self.db.ensure_schema()

        def select(cur: psycopg2.extensions.cursor) -> Any:
            cur.execute(
                "SELECT id, name, color, version, created_at FROM items WHERE id = %s", (item_id,)
            )
            return cur.fetchone()

        row = self.db.run(select)
        if row is None:
            return None
        item = dict(zip(("id", "name", "color", "version", "created_at"), row, strict=True))
        item["created_at"] = item["created_at"].isoformat()
        self._cache_item(item)
        return {**item, "source": "postgres"}

    def list_items(self, limit: int = 20) -> list[dict[str, Any]]:
        self.db.ensure_schema()

        def select(cur: psycopg2.extensions.cursor) -> list[Any]:
            cur.execute(
                "SELECT id, name, color, version, created_at FROM items ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            return list(cur.fetchall())

        keys = ("id", "name", "color", "version", "created_at")
        return [
            {**dict(zip(keys, row, strict=True)), "created_at": row[4].isoformat()}
            for row in self.db.run(select)
        ]

    # -- tasks -------------------------------------------------------------------------------
    def enqueue_task(self, kind: str, payload: Any) -> dict[str, Any]:
        task_id = str(self.redis.incr("jarvis:tasks:seq"))
        task = {
            "id": task_id,
            "kind": kind,
            "payload": json.dumps(payload),
            "status": "queued",
            "color": self.color,
            "version": self.version,
            "queue": queue_key(self.color),
            "created_at": f"{time.time():.6f}",
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(task_key(task_id), mapping=task)
        pipe.expire(task_key(task_id), TASK_TTL)
        pipe.lpush(queue_key(self.color), task_id)
        pipe.execute()
        return decode_task(task)

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(task_key(task_id))
        return decode_task(raw) if raw else None


def decode_task(raw: dict[str, str]) -> dict[str, Any]:
    task: dict[str, Any] = dict(raw)
    for field in ("payload", "result", "processed_by"):
        if field in task:
            task[field] = json.loads(task[field])
    for field in ("created_at", "started_at", "done_at"):
        if field in task:
            task[field] = float(task[field])
    return task
