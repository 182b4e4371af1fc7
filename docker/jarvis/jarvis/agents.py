"""jarvis-agents: the agents worker of one color.

Pops task ids from this color's Redis list (``jarvis:<color>:tasks``) with a blocking pop that
times out every second, runs the task, and marks it ``done`` (or ``failed``). A task being run
sits in ``jarvis:<color>:tasks:processing`` and goes back on the queue if the worker dies.

Heartbeat: after every successful round trip to Redis the worker touches a file
(JARVIS_HEARTBEAT_FILE, default /tmp/jarvis-agents.heartbeat) and sets
``jarvis:<color>:agents:heartbeat`` in Redis (10 s expiry). While Redis is unreachable the
heartbeat goes stale, so the health check fails.

    jarvis-agents            run the worker
    jarvis-agents --check    exit 0 when the heartbeat is fresher than 5 s, else 1
                             (the container health check; imports nothing but the stdlib)
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

HEARTBEAT_FILE = os.environ.get("JARVIS_HEARTBEAT_FILE", "/tmp/jarvis-agents.heartbeat")  # noqa: S108
MAX_AGE_S = 5.0
ROLE = "jarvis-agents"


def check() -> int:
    try:
        age = time.time() - os.stat(HEARTBEAT_FILE).st_mtime
    except OSError as exc:
        print(f"unhealthy: no heartbeat ({exc.strerror}: {HEARTBEAT_FILE})")
        return 1
    if age >= MAX_AGE_S:
        print(f"unhealthy: heartbeat {age:.1f} s old (max {MAX_AGE_S:g} s)")
        return 1
    print(f"ok: heartbeat {age:.1f} s old")
    return 0


def run() -> int:  # noqa: PLR0915 - the worker loop and the closures sharing its state
    # imported here so that --check stays a stdlib-only, fast start
    import json  # noqa: PLC0415
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import socket  # noqa: PLC0415

    import redis  # noqa: PLC0415

    from jarvis import app_version, build_fault, deployment_color  # noqa: PLC0415
    from jarvis.common import setup  # noqa: PLC0415
    from jarvis.store import (  # noqa: PLC0415
        heartbeat_key,
        processing_key,
        queue_key,
        redis_client,
        task_key,
    )

    setup(ROLE)
    log = logging.getLogger("jarvis.agents")
    color, version, host = deployment_color(), app_version(), socket.gethostname()
    queue, processing = queue_key(color), processing_key(color)
    client = redis_client()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        log.info("%s: stopping after the current task", signal.Signals(signum).name)
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def beat() -> None:
        # Redis first: while it is unreachable this raises and the file goes stale
        now = time.time()
        client.set(
            heartbeat_key(color),
            json.dumps({"ts": now, "host": host, "version": version}),
            ex=10,
        )
        with open(HEARTBEAT_FILE, "w") as fh:
            fh.write(f"{now:.3f}\n")

    def execute(kind: str, payload: Any) -> object:
        if kind == "sleep":
            seconds = min(max(float(payload or 0), 0.0), 10.0)
            time.sleep(seconds)
            return {"slept_s": seconds}
        return {"echo": payload}

    def process(task_id: str) -> None:
        key = task_key(task_id)
        task = client.hgetall(key)
        if not task:
            log.warning("task %s vanished (expired?), skipping", task_id)
            return
        client.hset(key, mapping={"status": "running", "started_at": f"{time.time():.6f}"})
        by = {"color": color, "version": version, "host": host}
        try:
            result = execute(task.get("kind", "echo"), json.loads(task.get("payload", "null")))
            status, extra = "done", {"result": json.dumps(result)}
        except Exception as exc:
            status, extra = "failed", {"result": json.dumps({"error": str(exc)})}
        client.hset(
            key,
            mapping={
                "status": status,
                "done_at": f"{time.time():.6f}",
                "processed_by": json.dumps(by),
                **extra,
            },
        )
        client.incr(f"jarvis:{color}:agents:{status}")
        log.info("task %s (%s) %s", task_id, task.get("kind"), status)

    log.info("worker for %s: popping %s", color, queue)
    recovered = False
    while not stopping:
        try:
            if not recovered:  # tasks a previous worker took but never finished
                while (tid := client.lmove(processing, queue, "RIGHT", "RIGHT")) is not None:
                    log.warning("requeued unfinished task %s", tid)
                recovered = True
            beat()
            if build_fault() == "deadagent":  # healthy, never works: the drill's dead agent
                time.sleep(1)
                continue
            task_id = client.blmove(queue, processing, 1, "RIGHT", "LEFT")
            if task_id is None:
                continue
            process(task_id)
            client.lrem(processing, 1, task_id)
        except redis.RedisError as exc:
            log.error("redis: %s (retrying in 1 s)", exc)
            time.sleep(1)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:
        return check()
    if args:
        print(__doc__, file=sys.stderr)
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())
