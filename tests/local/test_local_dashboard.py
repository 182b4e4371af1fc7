"""``bluegreen dashboard`` on this host as ``scripts/local_stack.py up`` runs it
(``pytest_bluegreen.local.prometheus.LocalDashboard``): started once in the background, found
again through its pid file, stopped cleanly; without its charting library, one error naming
it. A real ``bluegreen dashboard`` on a free loopback port (its Prometheus need not answer:
the page says so)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.local.prometheus import LocalDashboard, LocalPrometheusError
from tests.local.test_local_prometheus import command_line, local_stack
from tests.support.dashboard import LIBRARY
from tests.support.infra import require_infra
from tests.support.stack import ROOT, free_ports


def dashboard_in(folder: Path, library: Path) -> LocalDashboard:
    folder.mkdir(parents=True)
    (folder / "bluegreen.toml").write_text(f"dashboard_library = {json.dumps(str(library))}\n")
    nobody, port = free_ports(2)
    return LocalDashboard(
        config=folder / "bluegreen.toml",
        storage=folder,
        listen=f"127.0.0.1:{port}",
        pidfile=folder / "dashboard.pid",
        log=folder / "dashboard.log",
        prometheus=f"http://127.0.0.1:{nobody}",
    )


@pytest.fixture
def dashboard(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[LocalDashboard]:
    require_infra(pytestconfig, LIBRARY.is_dir(), f"no {LIBRARY} (scripts/setup installs it)")
    own = dashboard_in(tmp_path / "deployment", LIBRARY)
    yield own
    own.stop()


def test_started_once_found_again_stopped(dashboard: LocalDashboard) -> None:
    assert dashboard.pid() is None
    pid, started = dashboard.start()
    assert started
    assert dashboard.pid() == pid
    assert f"--listen={dashboard.listen}" in command_line(pid)
    page = requests.get(f"{dashboard.url}/", timeout=5)
    assert page.ok
    assert "<title>bluegreen dashboard</title>" in page.text
    assert dashboard.start() == (pid, False)  # idempotent: the one that runs
    assert dashboard.stop()
    assert dashboard.pid() is None
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    assert not dashboard.stop()
    assert "bluegreen: dashboard stopped" in dashboard.log.read_text()


def test_without_its_charting_library_it_is_one_error(tmp_path: Path) -> None:
    own = dashboard_in(tmp_path / "deployment", tmp_path / "no-library")
    with pytest.raises(LocalPrometheusError) as raised:
        own.start()
    assert "exited 4 while starting" in str(raised.value)
    assert f"the charting library is not installed in {tmp_path / 'no-library'}" in str(
        raised.value
    )
    assert own.pid() is None


def test_its_address_taken_by_another_program_is_one_line_naming_the_dashboard(
    tmp_path: Path,
) -> None:
    own = dashboard_in(tmp_path / "deployment", tmp_path / "no-library")
    host, _, port = own.listen.rpartition(":")
    with socket.create_server((host, int(port))), pytest.raises(LocalPrometheusError) as refused:
        own.start()
    said = str(refused.value)
    assert f"(pid {os.getpid()}) already serves {own.listen}: stop it, or give" in said
    assert "the dashboard another address" in said
    assert "Prometheus" not in said
    assert "\n" not in said
    assert not own.log.exists()  # nothing was started


def test_the_local_stack_serves_it_on_the_guides_port_drawing_its_prometheus() -> None:
    stack = local_stack()
    assert stack.DASHBOARD.url == "http://127.0.0.1:10201"
    assert stack.DASHBOARD.prometheus == stack.PROMETHEUS.url
    assert stack.DASHBOARD.config == ROOT / "bluegreen.toml"  # its state file and series
