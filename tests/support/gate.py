"""Running a real gated pytest session (a subprocess, as a user would) against a Stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack

CHECKS = """
import pytest


@pytest.mark.quick
def test_health(http, color):
    response = http.get("/health")
    assert response.status_code == 200


@pytest.mark.quick
def test_api(http):
    response = http.post("/api/items", json={"name": "x"})
    assert response.status_code == 200, response.text


@pytest.mark.shared
def test_shared_service(haproxy):
    from pytest_bluegreen.haproxy.runtime import supported_version

    assert supported_version(haproxy.version())
"""


def deployment_folder(folder: Path, stack: Stack, extra: str = "", **settings: Any) -> Path:
    """A deployment's folder as ``bluegreen`` runs in it: ``bluegreen.toml`` for ``stack``
    (``settings`` over its defaults, then ``extra`` appended) and ``checks/test_checks.py``."""
    (folder / "checks").mkdir(parents=True, exist_ok=True)
    (folder / "checks" / "test_checks.py").write_text(CHECKS)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**settings) + extra)
    return folder


def prepare(pytester: pytest.Pytester, stack: Stack, checks: str = CHECKS, **settings: Any) -> None:
    pytester.makefile(".toml", bluegreen=stack.settings_toml(**settings))
    pytester.makepyfile(test_checks=checks)


def run_gate(
    pytester: pytest.Pytester, stack: Stack, *args: str, checks: str = CHECKS, **settings: Any
) -> pytest.RunResult:
    prepare(pytester, stack, checks, **settings)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def history(stack: Stack) -> list[dict[str, Any]]:
    if not stack.state_file.exists():
        return []
    entries: list[dict[str, Any]] = json.loads(stack.state_file.read_text())["history"]
    return entries


def outcomes(stack: Stack) -> list[str]:
    return [e["outcome"] for e in history(stack)]


def verdict(pytester: pytest.Pytester) -> dict[str, Any]:
    """The gate's ``reports/verdict.json`` in the pytester folder."""
    data: dict[str, Any] = json.loads((pytester.path / "reports" / "verdict.json").read_text())
    return data


def output(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


def server_state_file(stack: Stack) -> Path:
    return stack.server_state_file
