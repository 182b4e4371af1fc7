"""Settings for one deployment, resolved once: CLI > environment variable > ini > file > default.

- :mod:`.options`: one declaration per setting (a field of its group, made with ``setting()``);
- :mod:`.parsers`: text or TOML values to typed values;
- :mod:`.files`: finding and reading ``bluegreen.toml`` / ``[tool.bluegreen]``;
- :mod:`.model`: :class:`Settings`, the run's group and the topology;
- :mod:`.deployment` and :mod:`.judging`: the other frozen groups;
- :mod:`.resolve`: the layering, the cross-checks and the report header.
"""

from __future__ import annotations

from .deployment import (
    ComposeSettings,
    EnvFiles,
    HaproxySettings,
    PromotionSettings,
    StateSettings,
    SwarmSettings,
    SwitchingSettings,
)
from .files import SettingsError
from .judging import (
    BakeSettings,
    CanarySettings,
    ChecksSettings,
    DashboardSettings,
    DrillSettings,
    MetricsSettings,
    NotifySettings,
    PrometheusSettings,
    ReportSettings,
)
from .model import Answer, ColorSettings, RunSettings, Settings, Topology
from .options import Option, options_of, setting
from .resolve import CONFIG_OPTION, CORE_GROUPS, all_options, describe, resolve

__all__ = [
    "CONFIG_OPTION",
    "CORE_GROUPS",
    "Answer",
    "BakeSettings",
    "CanarySettings",
    "ChecksSettings",
    "ColorSettings",
    "ComposeSettings",
    "DashboardSettings",
    "DrillSettings",
    "EnvFiles",
    "HaproxySettings",
    "MetricsSettings",
    "NotifySettings",
    "Option",
    "PrometheusSettings",
    "PromotionSettings",
    "ReportSettings",
    "RunSettings",
    "Settings",
    "SettingsError",
    "StateSettings",
    "SwarmSettings",
    "SwitchingSettings",
    "Topology",
    "all_options",
    "describe",
    "options_of",
    "resolve",
    "setting",
]
