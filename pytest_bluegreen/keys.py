"""``config.stash`` keys of the plugin, and public accessors for conftests and checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .settings import Settings

if TYPE_CHECKING:
    from .gate.builds import AnswerLog
    from .redaction import Secrets
    from .report.metrics import RunMetrics

__all__ = ["secrets_of", "settings_of"]

SETTINGS_KEY = pytest.StashKey[Settings]()
SECRETS_KEY: pytest.StashKey[Secrets] = pytest.StashKey()
TARGET_KEY = pytest.StashKey[str | None]()
# a bluegreen command's own metrics (its GateRun adds the switch and the deploy to them)
METRICS_KEY: pytest.StashKey[RunMetrics] = pytest.StashKey()
POST_KEY = pytest.StashKey[list[pytest.Item]]()  # the post checks the bake runs
# a target check's node id -> the same check for the other color (blame runs it)
TWINS_KEY = pytest.StashKey[dict[str, pytest.Item]]()
# what the colors' answers said about their build, until a report carries it (gate/builds.py)
ANSWERS_KEY: pytest.StashKey[AnswerLog] = pytest.StashKey()
WORKERINPUT_TARGET = "bluegreen_target"


def settings_of(config: pytest.Config) -> Settings:
    """The resolved settings, from ``pytest_configure`` on (e.g. in a collection hook)."""
    return config.stash[SETTINGS_KEY]


def secrets_of(config: pytest.Config) -> Secrets:
    return config.stash[SECRETS_KEY]
