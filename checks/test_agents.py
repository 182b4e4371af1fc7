"""The color's agents worker: a task queued through the color's API is run by that color's worker.

The worked example of docs/adding-a-check.md. The worker has no port of its own, so its health
shows only here (and in its container's health check): the API queues the task in Redis
(``jarvis:<color>:tasks``), the worker of the same color runs it and marks it done.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bluegreen.testing import ColorSession, eventually

from .support import error_text, json_body

# an echo task is done in 10 to 20 ms; this is the worker's allowance
TASK_TIMEOUT = 5.0


@pytest.mark.quick
def test_agents_run_a_task(http: ColorSession, color: str) -> None:
    queued = http.post("/api/tasks", json={"kind": "echo", "payload": {"check": color}})
    assert queued.status_code == 202, (
        f"{color} does not queue a task: POST /api/tasks {error_text(queued)}"
    )
    task_id = json_body(queued)["id"]

    def task_done() -> dict[str, Any]:
        task = json_body(http.get(f"/api/tasks/{task_id}"))
        if task.get("status") == "failed":  # final: no point in waiting
            pytest.fail(f"{color}'s agents failed task {task_id}: {task.get('result')}")
        assert task.get("status") == "done", (
            f"task {task_id} is still {task.get('status')!r}: {color}'s agents worker "
            "did not run it"
        )
        return task

    task = eventually(task_done, timeout=TASK_TIMEOUT, interval=0.05)
    assert task.get("result") == {"echo": {"check": color}}, f"task {task_id}: {task}"
    worker = (task.get("processed_by") or {}).get("color")
    assert worker == color, f"{color}'s task {task_id} was run by {worker}'s agents"
