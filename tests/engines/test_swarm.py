"""Docker Swarm as the deploy engine, for real: a single-node swarm on the local engine (made by
the test and left as found), the bundled swarm stack with 2 replicas per color, HAProxy in a
container on the stack's overlay network filling each color's server-template slots from
Docker's DNS, and the gate run as a user runs it (``pytest --deploy TAG --switch``,
``bluegreen rollback``), all under a bounded load probe on the routed URL that must see no
failed request.

The cycle: green deployed at v1.1.0 and switched; a broken build (healthy, every /api/* a 500)
deployed to blue is refused by the checks and blue restored to v1.0.0 (on_failed_gate =
restore); a build whose replicas crash at start is a failed deploy that Swarm rolls back by
itself, with the crashing tasks' logs in the message; a good build deployed to blue right
after; rollback to blue; and a replica of green
killed while its checks run: Swarm replaces it, and the gate switches, because the checks passed
(HAProxy redispatches the connections the dead replica refuses) and, within ``up_wait``, every
server HAProxy has for green is UP again: the dead replica's slot emptied, the new one filled.

Then a fault: the old replicas kept resolvable after a deploy (HAProxy holds their addresses
40 s after Docker's DNS dropped them, and they go on answering meanwhile). The checks of a
broken build must never be answered by the old build: the gate waits until every HAProxy slot of
the color runs the deployed image, then the checks fail it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.runtime import RuntimeApi
from tests.support.cli import BLUEGREEN
from tests.support.faults import PROBE_PAUSE
from tests.support.infra import require_infra
from tests.support.stack import ROOT, wait_for
from tests.support.swarm import SwarmStack, docker, running_replicas
from tests.support.switching import LoadProcess

CRASHING = f"v9.9.9-crash-{secrets.token_hex(4)}"  # built and removed here: a name of its own

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http):
    response = http.get("/health")
    assert response.status_code == 200, response.text


@pytest.mark.quick
def test_items(http):
    response = http.post("/api/items", json={"name": "swarm"})
    assert response.status_code == 201, response.text
"""

# the test's own harness: before the first check, kill the container KILL_REPLICA names
KILL_HOOK = """
import json
import os
import secrets
import shutil
import subprocess

_killed = []


def pytest_runtest_setup(item):
    victim = os.environ.get("KILL_REPLICA")
    if victim and not _killed:
        _killed.append(victim)
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
"""


@pytest.fixture(scope="module")
def swarm(
    docker_swarm: None,
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
) -> Iterator[SwarmStack]:
    try:
        docker("image", "inspect", "bluegreen/haproxy:2.6", "bluegreen/jarvis:v1.2.0-broken")
        ready = ""
    except (RuntimeError, OSError) as exc:
        ready = str(exc)
    require_infra(pytestconfig, not ready, f"Docker or the stack's images are missing: {ready}")
    stack = SwarmStack(tmp_path_factory.mktemp("swarm"), tls_cert)
    subprocess.run(
        ["docker", "build", "-q", "-t", f"bluegreen/jarvis:{CRASHING}", "-"],
        input=(
            "FROM bluegreen/jarvis:v1.0.0\n"
            'ENTRYPOINT ["/bin/sh", "-c", "echo crashing at start: no such config >&2; exit 3"]\n'
        ),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
        docker("image", "rm", f"bluegreen/jarvis:{CRASHING}", check=False)


def _write(stack: SwarmStack, **overrides: object) -> None:
    (stack.workdir / "bluegreen.toml").write_text(stack.settings_toml(**overrides))
    (stack.workdir / "test_checks.py").write_text(CHECKS)
    (stack.workdir / "conftest.py").write_text(KILL_HOOK)


def _gate(stack: SwarmStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=stack.workdir,
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def _bluegreen(stack: SwarmStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args],
        cwd=stack.workdir,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _served(stack: SwarmStack) -> tuple[str, str]:
    answer = requests.get(f"{stack.routed_url}/version", timeout=5).json()
    return str(answer["color"]), str(answer["version"])


def _filled_up(stack: SwarmStack, color: str) -> int:
    rows = RuntimeApi(str(stack.socket), timeout=2).show_stat()
    return sum(
        1
        for r in rows
        if r.backend == "api_backend" and r.server.startswith(f"{color}-") and r.is_up
    )


def test_a_cycle_on_a_swarm_under_load(swarm: SwarmStack) -> None:
    backups = swarm.workdir / "backups"
    _write(
        swarm,
        on_failed_gate="restore",
        backup_service="postgres",
        backup_command=["pg_dump", "-U", "sutazai", "--no-owner", "sutazai"],
        backup_dir=str(backups),
    )
    wait_for(lambda: _filled_up(swarm, "blue") == 2, 60, "blue's 2 replicas UP in HAProxy")
    assert _served(swarm) == ("blue", "v1.0.0")
    load = LoadProcess(f"{swarm.routed_url}/version", 200_000, 400, 1, pause=PROBE_PAUSE)
    wait_for(lambda: load.answered.value >= 20, 30, "the load to answer")
    try:
        # green v1.1.0: deployed on the swarm (2 replicas), checked, switched
        result = _gate(swarm, "--env", "green", "--deploy", "v1.1.0", "--switch")
        assert result.returncode == 0, _out(result)
        assert "green: 2/2 replicas healthy" in result.stdout
        assert swarm.image_of("green-api") == "bluegreen/jarvis:v1.1.0"
        assert _served(swarm) == ("green", "v1.1.0")
        [dump] = backups.glob("*-green-v1.1.0.backup")  # pg_dump in the postgres task
        assert "PostgreSQL database dump" in dump.read_text()

        # the shipped availability checks find the replicas by Swarm's labels (the file is
        # copied beside these settings: its own folder's settings are the Compose stack's)
        shipped = swarm.workdir / "availability" / "test_availability.py"
        shipped.parent.mkdir(exist_ok=True)
        shipped.write_text((ROOT / "checks" / "test_availability.py").read_text())
        result = _gate(
            swarm, str(shipped), "--env", "green", "-k", "containers_are_healthy",
            "-p", "pytest_bluegreen.contrib.services", "-v",
        )  # fmt: skip
        assert result.returncode == 0, _out(result)
        assert "test_containers_are_healthy[green] PASSED" in result.stdout
        assert "test_shared_containers_are_healthy PASSED" in result.stdout
        shutil.rmtree(shipped.parent)  # the next gates run this folder's own checks only

        # a broken build (healthy, /api/* answers 500) on blue: refused, blue restored
        result = _gate(swarm, "--env", "blue", "--deploy", "v1.2.0-broken", "--switch")
        assert result.returncode == 1, _out(result)
        assert "blue restored to v1.0.0" in result.stdout
        assert swarm.image_of("blue-api") == "bluegreen/jarvis:v1.0.0"
        assert _served(swarm) == ("green", "v1.1.0")

        # a build whose replicas crash at start: a failed deploy Swarm rolls back itself
        result = _gate(swarm, "--env", "blue", "--deploy", CRASHING, "--switch")
        assert result.returncode == 9, _out(result)
        assert "Swarm rolled back blue-api" in _out(result)
        assert "crashing at start" in _out(result)  # the failing tasks' logs
        assert swarm.image_of("blue-api") == "bluegreen/jarvis:v1.0.0"
        wait_for(lambda: running_replicas(swarm.name, "blue-api") == 2, 60, "blue's replicas")
        assert _served(swarm) == ("green", "v1.1.0")

        # right after Swarm's rollback, a good build deploys (no switch): that rollback's
        # state is not taken for this update's
        result = _gate(swarm, "--env", "blue", "--deploy", "v1.1.0")
        assert result.returncode == 0, _out(result)
        assert swarm.image_of("blue-api") == "bluegreen/jarvis:v1.1.0"
        assert _served(swarm) == ("green", "v1.1.0")

        # rollback to blue (checked first)
        result = _bluegreen(swarm, "rollback")
        assert result.returncode == 0, _out(result)
        assert _served(swarm) == ("blue", "v1.1.0")

        # status lists every replica with its node
        status = _bluegreen(swarm, "status", "--json")
        shown = json.loads(status.stdout)
        replicas = shown["colors"]["green"]["replicas"]
        assert [(r["service"], r["state"], r["tag"]) for r in replicas] == [
            ("green-api", "running", "v1.1.0")
        ] * 2
        assert {r["node"] for r in replicas} == {docker("info", "--format", "{{.Name}}").strip()}

        # a green replica killed while green's checks run: replaced by Swarm, gate switches
        victim, survivor = swarm.containers("green-api")
        result = _gate(swarm, "--env", "green", "--switch", KILL_REPLICA=victim)
        assert result.returncode == 0, _out(result)
        assert _served(swarm) == ("green", "v1.1.0")
        wait_for(lambda: running_replicas(swarm.name, "green-api") == 2, 60, "green's new one")
        now = swarm.containers("green-api")
        assert victim not in now
        assert survivor in now
        wait_for(lambda: _filled_up(swarm, "green") == 2, 30, "green's 2 replicas UP")
    finally:
        result_load = load.finish(60)
    failed = [f"{s.kind}: {s.error or s.status}" for s in result_load.failed]
    assert failed == [], failed[:10]
    assert result_load.count > 100
    assert swarm.name in docker("stack", "ls")


def test_an_old_replica_still_resolved_never_answers_the_checks(swarm: SwarmStack) -> None:
    # HAProxy keeps the addresses DNS gave it 40 s after they are gone, in two slots per color:
    # the old replicas' addresses stay in the slots and the new replicas wait for them
    swarm.start_haproxy(BG_DNS_HOLD="40s", BG_REPLICAS="2")
    slowed: list[str] = []
    try:
        wait_for(lambda: _filled_up(swarm, "blue") + _filled_up(swarm, "green") == 4, 60, "UP")
        live, version = _served(swarm)
        idle = "blue" if live == "green" else "green"
        before = swarm.image_of(f"{idle}-api")
        # the old replicas go on answering 60 s after Swarm stops them, and the idle color is
        # updated start-first, as a user may set it (the stack file's stop-first stops the old
        # replicas before the new ones start: they left the slots first in every run)
        slowed.append(f"{idle}-api")
        swarm.stop_old_tasks_slowly(f"{idle}-api", 60, order="start-first")
        wait_for(lambda: _filled_up(swarm, idle) == 2, 90, f"{idle}'s new replicas in HAProxy")
        _write(swarm, on_failed_gate="restore", deploy_timeout=150)
        result = _gate(swarm, "--env", idle, "--deploy", "v1.2.0-broken", "--switch")
        out = _out(result)
        print(out)  # the waiting, as an operator sees it (-rP)
        # the gate before issue 21 let the old replicas answer every check (they passed) and
        # blamed the broken image for the old one's version: a verdict on the wrong build
        assert result.returncode == 1, out
        assert f"checks failed ({idle}: " in out  # the broken build's own checks
        if f"until every HAProxy slot of {idle} runs v1.2.0-broken: " in out:
            assert f"({before}, running, desired shutdown)" in out  # the old replicas, named
            assert f"every HAProxy slot of {idle} runs v1.2.0-broken now" in out
        else:
            # the fault did not take this time (HAProxy dropped the old addresses before the
            # checks): the verdict must still be the broken build's, never the old one's
            warnings.warn("the old replicas left HAProxy's slots before the deploy", stacklevel=1)
        assert f"{idle} restored to {before.rpartition(':')[2]}" in out
        assert _served(swarm) == (live, version)
    finally:
        for service in slowed:
            swarm.stop_old_tasks_promptly(service)
        swarm.start_haproxy()
