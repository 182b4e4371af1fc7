"""A Prometheus on this host (``pytest_bluegreen.local.prometheus``, as ``scripts/local_stack.py
up`` starts it): started once, found again, stopped; a stale pid file never stops another
process; an address already taken and a configuration Prometheus refuses are one-line errors.
Real Prometheus processes on free loopback ports; never Docker."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from pytest_bluegreen.local.prometheus import LocalPrometheus, LocalPrometheusError
from pytest_bluegreen.settings.judging import PrometheusSettings
from tests.support.infra import require_infra
from tests.support.prometheus import api, config, local, prometheus_binary
from tests.support.stack import ROOT, wait_for

SHIPPED = ROOT / "monitoring" / "prometheus.yml"


@pytest.fixture
def binary(pytestconfig: pytest.Config) -> str:
    found = prometheus_binary()
    require_infra(
        pytestconfig, found is not None, "prometheus is not installed (apt-get install prometheus)"
    )
    assert found is not None
    return found


@pytest.fixture
def prometheus(binary: str, tmp_path: Path) -> Iterator[LocalPrometheus]:
    """A Prometheus with nothing to scrape, stopped after the test whatever happened."""
    own = local(tmp_path / "prometheus", config([]))
    yield own
    own.stop()


def command_line(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def test_started_once_found_again_stopped(prometheus: LocalPrometheus) -> None:
    assert prometheus.pid() is None
    pid, started = prometheus.start()
    assert started
    assert prometheus.ready()
    assert prometheus.pid() == pid
    assert prometheus.pidfile.read_text() == f"{pid}\n"
    assert f"--config.file={prometheus.config}" in command_line(pid)
    assert f"--web.listen-address={prometheus.listen}" in command_line(pid)
    assert os.getsid(pid) == pid  # its own session: it outlives the command that started it
    answer = requests.get(f"{prometheus.url}/api/v1/status/flags", timeout=5).json()
    assert answer["data"]["storage.tsdb.path"] == str(prometheus.storage)

    assert prometheus.start() == (pid, False)  # idempotent: the running one

    assert prometheus.stop() is True
    assert prometheus.pid() is None
    assert not prometheus.pidfile.exists()
    assert not Path(f"/proc/{pid}").exists()  # gone, and reaped
    assert not prometheus.ready()
    assert prometheus.stop() is False  # nothing to stop


def test_a_stale_pid_file_is_neither_ours_nor_stopped(prometheus: LocalPrometheus) -> None:
    """A pid file left behind whose pid now belongs to another program: not our Prometheus,
    never signalled; start() starts ours."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        prometheus.pidfile.parent.mkdir(parents=True, exist_ok=True)
        prometheus.pidfile.write_text(f"{other.pid}\n")
        assert prometheus.pid() is None
        assert prometheus.stop() is False
        assert other.poll() is None  # untouched
        prometheus.pidfile.write_text(f"{other.pid}\n")
        pid, started = prometheus.start()
        assert started
        assert pid != other.pid
        assert prometheus.pid() == pid
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_an_address_already_taken_is_refused_before_anything_starts(
    prometheus: LocalPrometheus,
) -> None:
    host, _, port = prometheus.listen.rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        with pytest.raises(LocalPrometheusError) as refused:
            prometheus.start()
    message = str(refused.value)
    assert message.startswith("python")
    assert f"(pid {os.getpid()}) already serves {prometheus.listen}: stop it, or give" in message
    assert not prometheus.pidfile.exists()
    assert not prometheus.log.exists()  # nothing was started


def test_a_configuration_prometheus_refuses_is_one_error(binary: str, tmp_path: Path) -> None:
    broken = local(
        tmp_path / "broken", "scrape_configs:\n  - job_name: x\n    scrape_interval: never\n"
    )
    with pytest.raises(LocalPrometheusError) as failed:
        broken.start(timeout=20)
    message = str(failed.value)
    assert re.match(r"prometheus exited [1-9]\d* while starting: ", message)
    assert "level=error" in message
    assert "not a valid duration string" in message
    assert "\n" not in message
    assert not broken.pidfile.exists()


def local_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_stack", ROOT / "scripts" / "local_stack.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_local_stack_runs_the_shipped_configuration_where_the_checks_look() -> None:
    stack = local_stack().PROMETHEUS
    assert stack.config == SHIPPED
    # the bundled stack's settings (bluegreen.toml) point the checks at it
    shipped = tomllib.loads((ROOT / "bluegreen.toml").read_text())
    assert stack.url == shipped["prometheus_url"] == "http://127.0.0.1:10200"
    assert PrometheusSettings().prometheus_url is None  # elsewhere: no Prometheus unless set


def test_the_shipped_configuration_loads_its_rules_and_the_seeds_targets(
    binary: str, tmp_path: Path
) -> None:
    """monitoring/prometheus.yml itself (on a free port): the rule files load, and the targets
    are HAProxy's exporter, each color's API with its color label, and the Pushgateway."""
    own = local(tmp_path / "shipped", "")
    shipped = LocalPrometheus(
        SHIPPED, own.storage, own.listen, own.pidfile, own.log, retention="1d"
    )
    shipped.start()
    try:
        groups = api(shipped, "rules")["groups"]
        rules = {r["name"] for g in groups for r in g["rules"]}
        assert rules == {
            "bluegreen:haproxy_server_live",
            "BluegreenLiveColorDown",
            "BluegreenColorDown",
            "BluegreenLiveColorHigh5xxRate",
            "BluegreenGateRefused",
            "BluegreenGateReverted",
        }
        assert all(r["health"] != "err" for g in groups for r in g["rules"])

        def targets() -> list[tuple[str, str, str | None]]:
            found = api(shipped, "targets", state="active")["activeTargets"]
            return sorted(
                (t["labels"]["job"], t["labels"]["instance"], t["labels"].get("color"))
                for t in found
            )

        expected = [
            ("haproxy", "127.0.0.1:8404", None),
            ("jarvis", "127.0.0.1:8010", "blue"),
            ("jarvis", "127.0.0.1:8011", "green"),
            ("pushgateway", "127.0.0.1:9091", None),  # the gate's own metrics
        ]
        wait_for(lambda: targets() == expected, 20, "the shipped targets", interval=0.2)
    finally:
        shipped.stop()
