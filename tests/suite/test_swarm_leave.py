"""Making and leaving a single-node swarm (tests/support/swarm.py, as tests/engines/test_swarm.py
and ``benchmarks/cycle.py --engine swarm`` do) leaves the engine as found: containers that were
already running on a Compose network still resolve each other's names afterwards. Docker 20.10
forgets them when a swarm is left (moby/moby#45144), which broke the bundled Compose stack
(``postgres``, ``redis``, ``ollama``: "Name or service not known") and so ``scripts/demo``'s quick
checks right after the swarm test; the harness gives the names back. Uses the Docker engine:
run under the shared lock (``flock /tmp/bluegreen-docker.lock``).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.infra import require_infra
from tests.support.stack import wait_for
from tests.support.swarm import (
    LEASE,
    SwarmStack,
    docker,
    named_containers,
    names_lock,
    swarm_state,
    unresolved,
)

BYSTANDER_IMAGE = "bluegreen-base:bookworm"
OURS = f"bgtest-{secrets.token_hex(4)}"  # names of this test's own: none taken over, none removed
BYSTANDERS = f"{OURS}-bystanders"  # a user-defined bridge network, as Compose makes


def health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).strip()


def resolves(container: str, name: str) -> bool:
    done = subprocess.run(
        ["docker", "exec", container, "getent", "hosts", name],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def bystanders(docker_swarm: None, pytestconfig: pytest.Config) -> Iterator[list[str]]:
    """Two containers on a bridge network of their own that know each other by name, as a
    Compose stack's services do (``postgres``, ``redis``), running before any swarm."""
    try:
        docker("image", "inspect", BYSTANDER_IMAGE)
        ready = ""
    except (RuntimeError, OSError) as exc:
        ready = str(exc)
    require_infra(pytestconfig, not ready, f"Docker or the base image are missing: {ready}")
    LEASE.vacate()  # the session's swarm, if a test before made it
    if swarm_state() == "active":
        pytest.skip("a swarm is active on this engine: the harness would not make or leave one")
    names = [f"{OURS}-bystander-a", f"{OURS}-bystander-b", f"{OURS}-bystander-c"]
    docker("network", "create", BYSTANDERS)
    try:
        for name, alias in zip(names[:2], ("alpha", "beta"), strict=True):
            docker(
                "run", "-d", "--name", name, "--network", BYSTANDERS, "--network-alias", alias,
                "--init",  # sleep as PID 1 ignores SIGTERM: a restart would wait 10 s
                # a health check Docker runs once an hour (the tests' Compose project's): after
                # a restart "starting" for that long, so the harness runs it itself
                "--health-cmd", "true", "--health-interval", "1h",
                "--entrypoint", "sleep", BYSTANDER_IMAGE, "600",
            )  # fmt: skip
        # and one that fails its health check (a test's broken build): after the restart it
        # fails it again, and the harness must not wait for it to be healthy
        broken = names[2]
        docker(
            "run", "-d", "--name", broken, "--network", BYSTANDERS, "--network-alias", "gamma",
            "--init", "--health-cmd", "false", "--health-interval", "1s", "--health-retries", "1",
            "--entrypoint", "sleep", BYSTANDER_IMAGE, "600",
        )  # fmt: skip
        wait_for(lambda: health(broken) == "unhealthy", 60, f"{broken} to fail its health check")
        yield names
    finally:
        docker("rm", "-f", *names, check=False)
        docker("network", "rm", BYSTANDERS, check=False)


def test_leaving_the_swarm_keeps_names_resolving_on_compose_networks(
    bystanders: list[str], tmp_path: Path, tls_cert: Path
) -> None:
    """Docker 20.10 forgets the names of containers already running when a swarm is left
    (moby/moby#45144: 'Name or service not known' for postgres, redis, ollama in the Compose
    stack after this test file ran); the harness gives them back."""
    first, second, broken = bystanders
    assert resolves(first, "beta")
    assert resolves(second, "alpha")
    assert resolves(first, "gamma")
    stack = SwarmStack(tmp_path, tls_cert)
    stack.make_swarm()
    # no Compose test of the suite (another xdist worker's) starts or stops a container until
    # every name is checked: each one running is the leave's to give back
    with names_lock(exclusive=True):
        try:
            assert stack.made_swarm
        finally:
            stack.leave_swarm()
        assert swarm_state() == "inactive"
        assert resolves(first, "beta")
        assert resolves(second, "alpha")
        assert resolves(first, "gamma")
        assert resolves(broken, "alpha")
        # and every other container on a Compose network (the bundled stack, when it is up)
        assert unresolved(named_containers()) == []
