"""Deploy engines: what runs the colors. The gate, the checks and the switch do not care which.

An engine deploys a color at a tag (backup first, then up, then wait until healthy), tears a
color down, and says which tag a color runs. :func:`engine_for` picks the engine the settings
name; each engine's module imports its Docker clients only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_bluegreen.settings import Settings

__all__ = ["DeployEngine", "DeployResult", "engine_for"]


@dataclass(frozen=True)
class DeployResult:
    """A color deployed at a tag and healthy."""

    color: str
    tag: str
    services: tuple[str, ...]
    seconds: float
    backup: Path | None = None
    previous_tag: str | None = None  # the tag the color ran before, if known
    notes: tuple[str, ...] = ()


class DeployEngine(Protocol):
    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        """Back up, bring the color up at ``tag``, wait until healthy; raise DeployError."""
        ...

    def teardown(self, color: str) -> None:
        """Stop and remove the color's containers; raise DeployError."""
        ...

    def deployed_tag(self, color: str) -> str | None:
        """The tag the color was last deployed at, if known."""
        ...


def engine_for(settings: Settings, progress: Callable[[str], None]) -> DeployEngine:
    from .compose import ComposeEngine  # noqa: PLC0415 - Docker clients load only to deploy

    return ComposeEngine(settings.compose, settings.topology, settings.state.tags_file, progress)
