"""What a check author imports: ``from pytest_bluegreen.testing import ColorSession, eventually``.

The checks of a project (``bluegreen init``'s starter, the shipped ``checks/``) import from
here only; the modules behind these names may move, these names stay. Each name loads its
module when it is first asked for, so importing this module costs nothing a check does not use.

- reaching a color: :class:`ColorSession` (the ``http`` fixture's type),
  :class:`ColorEnvironment` (the ``environment`` fixture's), :func:`settings_of` (the
  resolved :class:`Settings` from a hook or a conftest);
- waiting and failing right: :func:`eventually` (retry with a deadline) and
  :class:`InfrastructureError` (what cannot be reached is not a wrong answer: the gate says
  inconclusive, not failed), :class:`TlsError`;
- load and thresholds: :func:`run_load` (bounded, client-side percentiles) giving a
  :class:`LoadResult`, judged by :func:`evaluate_thresholds` (k6-style), or side by side with
  the live color (:func:`measure_side_by_side`);
- HAProxy's Runtime API: :class:`RuntimeApi` (the ``haproxy`` fixture's type), its rows
  (:class:`ServerState`, :class:`StatRow`, :class:`ServerRef`, :class:`AdminState`), its
  address (:class:`RuntimeApiAddress`), :class:`RuntimeApiError`, :func:`supported_version`;
- Prometheus (the ``prometheus`` fixture): :class:`Prometheus`, :class:`PrometheusTarget`,
  :class:`CompareDecision` (a comparison's passed/failed/inconclusive);
- the colors' containers (the ``docker`` extra): :func:`stack_containers`,
  :func:`judge_serving` (each container's own health check, run now), :class:`TagsFile` and
  :func:`tag_variable` (the tag each color was deployed at).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_bluegreen.engines import stack_containers
    from pytest_bluegreen.engines.compose import TagsFile, tag_variable
    from pytest_bluegreen.engines.serving import judge_serving
    from pytest_bluegreen.eventually import InfrastructureError, eventually
    from pytest_bluegreen.fixtures import ColorEnvironment
    from pytest_bluegreen.haproxy.address import RuntimeApiAddress
    from pytest_bluegreen.haproxy.answers import (
        AdminState,
        RuntimeApiError,
        ServerRef,
        ServerState,
        StatRow,
    )
    from pytest_bluegreen.haproxy.runtime import RuntimeApi, supported_version
    from pytest_bluegreen.httpclient import ColorSession
    from pytest_bluegreen.judge.compare import CompareDecision
    from pytest_bluegreen.judge.load import LoadResult, TlsError, run_load
    from pytest_bluegreen.judge.prometheus import Prometheus
    from pytest_bluegreen.judge.prometheus import Target as PrometheusTarget
    from pytest_bluegreen.judge.sidebyside import measure as measure_side_by_side
    from pytest_bluegreen.judge.thresholds import evaluate as evaluate_thresholds
    from pytest_bluegreen.keys import settings_of
    from pytest_bluegreen.settings import Settings

# each name: (the module it lives in, its name there)
EXPORTS: dict[str, tuple[str, str]] = {
    "AdminState": ("haproxy.answers", "AdminState"),
    "ColorEnvironment": ("fixtures", "ColorEnvironment"),
    "ColorSession": ("httpclient", "ColorSession"),
    "CompareDecision": ("judge.compare", "CompareDecision"),
    "InfrastructureError": ("eventually", "InfrastructureError"),
    "LoadResult": ("judge.load", "LoadResult"),
    "Prometheus": ("judge.prometheus", "Prometheus"),
    "PrometheusTarget": ("judge.prometheus", "Target"),
    "RuntimeApi": ("haproxy.runtime", "RuntimeApi"),
    "RuntimeApiAddress": ("haproxy.address", "RuntimeApiAddress"),
    "RuntimeApiError": ("haproxy.answers", "RuntimeApiError"),
    "ServerRef": ("haproxy.answers", "ServerRef"),
    "ServerState": ("haproxy.answers", "ServerState"),
    "Settings": ("settings", "Settings"),
    "StatRow": ("haproxy.answers", "StatRow"),
    "TagsFile": ("engines.compose", "TagsFile"),
    "TlsError": ("judge.load", "TlsError"),
    "evaluate_thresholds": ("judge.thresholds", "evaluate"),
    "eventually": ("eventually", "eventually"),
    "judge_serving": ("engines.serving", "judge_serving"),
    "measure_side_by_side": ("judge.sidebyside", "measure"),
    "run_load": ("judge.load", "run_load"),
    "settings_of": ("keys", "settings_of"),
    "stack_containers": ("engines", "stack_containers"),
    "supported_version": ("haproxy.runtime", "supported_version"),
    "tag_variable": ("engines.compose", "tag_variable"),
}

__all__ = [
    "AdminState",
    "ColorEnvironment",
    "ColorSession",
    "CompareDecision",
    "InfrastructureError",
    "LoadResult",
    "Prometheus",
    "PrometheusTarget",
    "RuntimeApi",
    "RuntimeApiAddress",
    "RuntimeApiError",
    "ServerRef",
    "ServerState",
    "Settings",
    "StatRow",
    "TagsFile",
    "TlsError",
    "evaluate_thresholds",
    "eventually",
    "judge_serving",
    "measure_side_by_side",
    "run_load",
    "settings_of",
    "stack_containers",
    "supported_version",
    "tag_variable",
]


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, there = EXPORTS[name]
    return getattr(importlib.import_module(f"pytest_bluegreen.{module}"), there)


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
