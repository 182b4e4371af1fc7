"""The one line for a Docker engine the SDK cannot reach: where it looked and the system's
reason, dug out of the docker SDK's and requests' wrappers (real clients, no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.engines.compose import unreachable
from tests.support.stack import free_ports

docker = pytest.importorskip("docker")


def said(monkeypatch: pytest.MonkeyPatch, host: str) -> str:
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(docker.errors.DockerException) as caught:
        docker.from_env().ping()
    return unreachable(caught.value)


def test_a_missing_socket_is_named_with_the_systems_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = f"unix://{tmp_path}/docker.sock"
    line = said(monkeypatch, host)
    assert line == f"Docker engine not reachable at {host}: No such file or directory"


def test_a_refused_port_is_named_with_the_systems_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    line = said(monkeypatch, host)
    assert line == f"Docker engine not reachable at {host}: Connection refused"


def test_an_error_with_no_system_reason_gives_its_first_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    line = unreachable(RuntimeError("the engine said no\nand more"))
    assert line == "Docker engine not reachable at unix:///var/run/docker.sock: the engine said no"
