"""The seed guide's documented commands, run through the wrapper scripts against the real stack.

Quick Start (deploy blue, deploy green, switch, auto-switch), the Manual Process (status, backup
deploy, health checks, switch, status), Rollback, the health-check variants and the state export,
each as the guide writes it (paths aside: scripts/ instead of scripts/deploy/).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker_stack import (
    ComposeProject,
    JarvisStack,
    shared_services_behind_haproxy,
)
from tests.support.stack import ROOT, Backend


@pytest.fixture(scope="module")
def seed(
    compose_project: ComposeProject,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
    color_backends: tuple[Backend, Backend],
) -> Iterator[tuple[JarvisStack, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("seed")
    with shared_services_behind_haproxy(
        compose_project, workdir, tls_cert, color_backends
    ) as jarvis:
        config = jarvis.write_settings(workdir, on_failed_gate="restore")
        yield jarvis, {**os.environ, "BLUEGREEN_CONFIG": str(config), "NO_COLOR": "1"}


def sh(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def routed_color(jarvis: JarvisStack) -> str:
    return jarvis.haproxy.served_color()


def test_the_seed_guide_commands(seed: tuple[JarvisStack, dict[str, str]], tmp_path: Path) -> None:
    jarvis, env = seed
    deploy = "scripts/blue-green-deploy.sh"
    manage = "scripts/manage-environments.py"
    checks = "scripts/health-checks.sh"

    # Quick Start 3 and 4: deploy blue, deploy green
    blue = sh(env, deploy, "--target-color", "blue", "--deployment-tag", "v1.0.0")
    assert blue.returncode == 0, blue.stdout + blue.stderr
    assert "bluegreen: deploying blue v1.0.0" in blue.stdout
    jarvis.haproxy.wait_up("blue")
    green = sh(env, deploy, "--target-color", "green", "--deployment-tag", "v1.1.0")
    assert green.returncode == 0, green.stdout + green.stderr
    assert routed_color(jarvis) == "blue"

    # Quick Start 5: switch traffic to green
    switched = sh(env, manage, "--switch-to", "green")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert "switched blue -> green" in switched.stdout
    assert routed_color(jarvis) == "green"

    # Rollback, both ways the guide names
    back = sh(env, manage, "--rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert routed_color(jarvis) == "blue"

    # Quick Start 5, the automatic way
    auto = sh(env, deploy, "--target-color", "green", "--deployment-tag", "v1.1.0", "--auto-switch")
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert routed_color(jarvis) == "green"
    again = sh(env, deploy, "--rollback")
    assert again.returncode == 0, again.stdout + again.stderr
    assert routed_color(jarvis) == "blue"

    # Manual Process: status, backup (deploy without tests or switch), checks, switch, status
    status = sh(env, manage, "--status")
    assert status.returncode == 0, status.stderr
    assert "live color: blue" in status.stdout
    assert "v1.1.0" in status.stdout  # green's deployed tag
    backup = sh(env, deploy, "--target-color", "green", "--skip-tests", "--skip-switch")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert "backing up postgres (pg_dump)" in backup.stdout
    assert any((jarvis.workdir / "backups").iterdir())
    health = sh(env, checks, "--environment", "green")
    assert health.returncode == 0, health.stdout[-3000:]
    manual = sh(env, manage, "--switch-to", "green")
    assert manual.returncode == 0, manual.stdout + manual.stderr
    assert "live color: green" in sh(env, manage, "--status").stdout

    # Health check commands
    for args in (
        ["--environment", "all", "--quick"],
        ["--environment", "blue", "--verbose"],
        ["--environment", "shared"],
    ):
        result = sh(env, checks, *args)
        assert result.returncode == 0, (args, result.stdout[-3000:])
        if "--verbose" in args:
            assert "[blue] PASSED" in result.stdout

    # Debugging: export the state
    exported = sh(env, manage, "--export-state")
    assert exported.returncode == 0, exported.stderr
    state = json.loads(exported.stdout)
    assert state["live"] == "green"
    assert [e["outcome"] for e in state["history"]].count("switched") >= 3

    # the guarded switch refuses when the target's checks fail: blue gets the broken build
    broken = sh(
        env, deploy, "--target-color", "blue", "--deployment-tag", "v1.2.0-broken", "--skip-tests"
    )
    assert broken.returncode == 0, broken.stdout + broken.stderr
    refused = sh(env, manage, "--switch-to", "blue")
    assert refused.returncode == 1, refused.stdout
    assert "traffic stays on green" in refused.stdout
    assert routed_color(jarvis) == "green"
