"""monitoring/grafana/bluegreen.json, generated: the dashboard's panels (report/panels.py) as
an importable Grafana dashboard, with a ``datasource`` variable (any Prometheus data source)
and the gate's runs as annotations. The file is the default settings' (the bundled stack's
series); ``python -m pytest_bluegreen.report.grafana > monitoring/grafana/bluegreen.json``
writes it again, and a test holds the committed file to it.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_bluegreen.settings.judging import DashboardSettings
from pytest_bluegreen.settings.model import DEFAULT_COLORS

from .panels import GATE_RUNS, Panel, panels

__all__ = ["DATASOURCE", "RATE_WINDOW", "dashboard", "main", "text"]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE_WINDOW = "$__rate_interval"  # Grafana's window for rate(): four scrapes at least
UID = "bluegreen"
# the colors a user most likely has, drawn in their own color; any other: Grafana's palette
FIXED = {"blue": "blue", "green": "green"}


def _legend(names: tuple[str, ...]) -> str:
    return " ".join(f"{{{{{name}}}}}" for name in names)


def _overrides() -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byRegexp", "options": f"^{color}( .*)?$"},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": FIXED[color]}}],
        }
        for color in DEFAULT_COLORS
        if color in FIXED
    ]


def _panel(number: int, panel: Panel) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 30 if panel.stacked else 0,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
        "lineInterpolation": "stepAfter" if panel.key == "servers" else "linear",
    }
    return {
        "id": number,
        "type": "timeseries",
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 9, "w": 12, "x": 12 * ((number - 1) % 2), "y": 9 * ((number - 1) // 2)},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "min": 0, "custom": custom},
            "overrides": _overrides(),
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "expr": panel.query.render(RATE_WINDOW),
                "legendFormat": _legend(panel.query.legend),
                "range": True,
            }
        ],
    }


def dashboard(series: DashboardSettings | None = None) -> dict[str, Any]:
    """The Grafana dashboard of ``series`` (default: the settings' defaults)."""
    drawn = panels(series or DashboardSettings())
    return {
        "title": "Blue/green deployment (pytest-bluegreen)",
        "uid": UID,
        "description": "Traffic, 5xx, p95 latency and HAProxy's servers by color, and the "
        "gate's runs (bluegreen_gate_runs_total) as annotations.",
        "tags": ["bluegreen", "haproxy"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "5s",
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "gate runs",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "orange",
                    "expr": GATE_RUNS.render(RATE_WINDOW),
                    "step": "15s",
                    "titleFormat": "gate {{outcome}} → {{target}}",
                    "tagKeys": ",".join(GATE_RUNS.legend),
                    "textFormat": "",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": [_panel(number, panel) for number, panel in enumerate(drawn, start=1)],
    }


def text(series: DashboardSettings | None = None) -> str:
    return json.dumps(dashboard(series), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    print(text(), end="")


if __name__ == "__main__":
    main()
