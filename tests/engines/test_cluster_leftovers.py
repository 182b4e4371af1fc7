"""What a killed run of the multi-node cluster leaves (tests/support/cluster.py): a test
process killed (SIGTERM, SIGKILL) before its fixture's teardown leaves its nodes, volumes and
network behind, under a random name. The next cluster's ``up`` removes those whose owner is
gone, and reports the others (alive, or made by ``scripts/cluster``) instead of ignoring them.
Real objects of the host's engine (a labelled network and volume: no node is started)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.cluster import LABEL, OWNER, host_docker, reclaim


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _leave(name: str, owner: str) -> None:
    """What a killed run leaves: the cluster's network and a node's volume."""
    labels = ["--label", f"{LABEL}={name}", "--label", f"{OWNER}={owner}"]
    host_docker("network", "create", *labels, name)
    host_docker("volume", "create", *labels, f"{name}-manager-data")


def _exists(name: str) -> bool:
    nets = host_docker("network", "ls", "-q", "--filter", f"label={LABEL}={name}").split()
    vols = host_docker("volume", "ls", "-q", "--filter", f"label={LABEL}={name}").split()
    return bool(nets or vols)


@pytest.fixture
def names(docker_engine: None) -> Iterator[dict[str, str]]:
    made = {k: f"bgnodes-{secrets.token_hex(4)}" for k in ("dead", "alive")}
    try:
        yield made
    finally:
        for name in made.values():
            host_docker("volume", "rm", "-f", f"{name}-manager-data", check=False)
            host_docker("network", "rm", name, check=False)


def test_a_killed_runs_cluster_is_removed_and_a_live_ones_reported(
    names: dict[str, str],
) -> None:
    _leave(names["dead"], str(_dead_pid()))
    _leave(names["alive"], str(os.getpid()))
    removed, others = reclaim()
    assert names["dead"] in removed
    assert not _exists(names["dead"])
    assert names["alive"] not in removed
    assert names["alive"] in others
    assert _exists(names["alive"])
