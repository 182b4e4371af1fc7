"""The ``bluegreen`` command against a real HAProxy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.infra

BLUEGREEN = [
    sys.executable,
    "-c",
    "from pytest_bluegreen.cli import main; raise SystemExit(main())",
]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def test_status_shows_live_color_and_servers(tmp_path: Path, stack: Stack) -> None:
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml())
    result = run(tmp_path, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["live"] == "blue"
    assert data["colors"]["green"]["role"] == "idle"
    servers = {s["server"]: s for s in data["colors"]["green"]["servers"]}
    assert servers["api_backend/green-api"]["weight"] == 0
    assert servers["api_backend/green-api"]["health"] == "UP"
    text = run(tmp_path, "status")
    assert text.returncode == 0
    assert "live color: blue" in text.stdout
    assert "last switch: none recorded" in text.stdout


def test_status_with_haproxy_down_is_one_clear_line(tmp_path: Path, stack: Stack) -> None:
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml())
    stack.haproxy.stop()
    result = run(tmp_path, "status")
    assert result.returncode == 4
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("bluegreen: error: HAProxy Runtime API at 127.0.0.1:")
    assert "unreachable" in line
