"""extras.installed() says what extras.require() would, without importing: for every state a
module can be in (sys.modules among them), it raises MissingExtra exactly when require does."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bluegreen.engines.compose import ComposeEngine
from pytest_bluegreen.engines.swarm import SwarmEngine
from pytest_bluegreen.extras import MissingExtra, installed, require
from pytest_bluegreen.settings import resolve

NAME = "bluegreen_extras_probe"


def _absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delitem(sys.modules, NAME, raising=False)


def _blocked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, NAME, None)


def _made_in_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A module object put in sys.modules by hand (a stub, an embedding application): no spec."""
    monkeypatch.setitem(sys.modules, NAME, types.ModuleType(NAME))


def _on_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, NAME, raising=False)


STATES: dict[str, Callable[[pytest.MonkeyPatch, Path], None]] = {
    "absent": _absent,
    "None in sys.modules": _blocked,
    "made in code": _made_in_code,
    "on the path": _on_the_path,
}


@pytest.mark.parametrize("state", STATES)
def test_installed_refuses_exactly_what_require_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state: str
) -> None:
    STATES[state](monkeypatch, tmp_path)
    try:
        require(NAME, "probe", "probing")
    except MissingExtra:
        with pytest.raises(MissingExtra, match=r"probing needs the 'probe' extra"):
            installed(NAME, "probe", "probing")
    else:
        installed(NAME, "probe", "probing")
        monkeypatch.delitem(sys.modules, NAME, raising=False)  # what require imported


class _Client:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


def test_the_engines_take_a_python_on_whales_imported_already(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stub python_on_whales in sys.modules (no spec) is what the engines' client comes from,
    as before the client was made lazily; not a missing 'docker' extra."""
    whales = types.ModuleType("python_on_whales")
    whales.__dict__.update(DockerClient=_Client, DockerException=RuntimeError)
    monkeypatch.setitem(sys.modules, "python_on_whales", whales)
    s = resolve({}, {}, {}, tmp_path)
    compose = ComposeEngine(s.compose, s.topology, s.state.tags_file)
    swarm = SwarmEngine(s.compose, s.swarm, s.topology, s.state.tags_file)
    for engine in (compose, swarm):
        client: object = engine.client
        error: object = engine._exception
        assert isinstance(client, _Client)
        assert error is RuntimeError
    made: object = compose.client
    assert isinstance(made, _Client)
    assert made.kwargs["compose_project_name"] == s.compose.project_name
