"""What we run as a container's health check, and how a container that does not serve is
described (pure: inspect data in, argv and messages out; the real containers are in
tests/stack/test_serving_stack.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bluegreen.engines.serving import HealthRun, Judged, health_command


def inspected(test: list[str] | None, *container_shell: str) -> dict[str, Any]:
    config: dict[str, Any] = {"Healthcheck": None if test is None else {"Test": test}}
    if container_shell:
        config["Shell"] = list(container_shell)
    return {"Config": config}


@pytest.mark.parametrize(
    ("attrs", "argv"),
    [
        pytest.param(inspected(["CMD", "curl", "-f", "http://x/"]), ["curl", "-f", "http://x/"],
                     id="cmd"),
        pytest.param(inspected(["CMD-SHELL", 'pg_isready -U "$U"']),
                     ["/bin/sh", "-c", 'pg_isready -U "$U"'], id="cmd-shell"),
        pytest.param(inspected(["CMD-SHELL", "exit 0"], "/bin/bash", "-c"),
                     ["/bin/bash", "-c", "exit 0"], id="the-containers-shell"),
        pytest.param(inspected(["NONE"]), None, id="disabled"),
        pytest.param(inspected(None), None, id="no-health-check"),
        pytest.param(inspected(["CMD"]), None, id="cmd-without-a-command"),
        pytest.param({}, None, id="no-config"),
    ],
)  # fmt: skip
def test_health_command(attrs: dict[str, Any], argv: list[str] | None) -> None:
    assert health_command(attrs) == argv


def judged(**overrides: Any) -> Judged:
    values: dict[str, Any] = {
        "service": "green-agents",
        "name": "sutazai-green-agents",
        "state": "running",
        "exit_code": 0,
        "health": "starting",
        "failing_streak": 0,
        "docker_output": "",
        "ran": HealthRun(1, "unhealthy: heartbeat\n 7.0 s old"),
    }
    return Judged(**{**values, **overrides})


@pytest.mark.parametrize(
    ("container", "serving", "brief", "problem"),
    [
        pytest.param(judged(ran=HealthRun(0, "ok")), True, None, None, id="starting-passes-now"),
        pytest.param(judged(health="healthy", ran=None), True, None, None, id="docker-healthy"),
        pytest.param(
            judged(health="healthy", ran=HealthRun(22, "curl: (22) error: 503")),
            False,
            "sutazai-green-agents (healthy; its health check: exit 22: curl: (22) error: 503)",
            "green-agents (sutazai-green-agents) is healthy by Docker's last check, but its "
            "health check, run now, fails: exit 22: curl: (22) error: 503",
            id="docker-healthy-but-fails-now",
        ),
        pytest.param(
            judged(),
            False,
            "sutazai-green-agents (starting; its health check: exit 1: unhealthy: heartbeat "
            "7.0 s old)",
            "green-agents (sutazai-green-agents) is starting and its health check, run now, "
            "fails: exit 1: unhealthy: heartbeat 7.0 s old",
            id="starting-fails-now",
        ),
        pytest.param(
            judged(health="unhealthy", failing_streak=3),
            False,
            "sutazai-green-agents (unhealthy; its health check: exit 1: unhealthy: heartbeat "
            "7.0 s old)",
            "green-agents (sutazai-green-agents) is unhealthy (3 failed health checks in a row; "
            "run now: exit 1: unhealthy: heartbeat 7.0 s old)",
            id="unhealthy-fails-now",
        ),
        pytest.param(
            judged(ran=HealthRun(None, "timed out after 3s")),
            False,
            "sutazai-green-agents (starting; its health check: timed out after 3s)",
            "green-agents (sutazai-green-agents) is starting and its health check, run now, "
            "fails: timed out after 3s",
            id="timed-out",
        ),
        pytest.param(
            judged(state="exited", exit_code=137, ran=None),
            False,
            "sutazai-green-agents (exited, exit code 137)",
            "green-agents (sutazai-green-agents) is not running: exited, exit code 137",
            id="exited",
        ),
        pytest.param(
            judged(state="restarting", ran=None),
            False,
            "sutazai-green-agents (restarting, exit code 0)",
            "green-agents (sutazai-green-agents) is restarting",
            id="restarting",
        ),
    ],
)  # fmt: skip
def test_judged(container: Judged, serving: bool, brief: str | None, problem: str | None) -> None:
    assert container.serving is serving
    assert container.problem() == problem
    if brief is not None:
        assert container.brief() == brief
    assert container.final is (container.state == "exited")
