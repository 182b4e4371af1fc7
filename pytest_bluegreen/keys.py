"""``config.stash`` keys shared by the plugin's modules."""

from __future__ import annotations

import pytest

from .gaterun import GateRun
from .settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()
GATE_KEY = pytest.StashKey[GateRun]()
TARGET_KEY = pytest.StashKey[str | None]()
WORKERINPUT_TARGET = "bluegreen_target"
