"""monitoring/grafana/bluegreen.json: generated from the dashboard's queries module
(report/panels.py, the page's too), importable into Grafana: a Prometheus ``datasource``
variable every panel and annotation uses, the four panels, the gate runs as annotations. Its
queries run on a real Prometheus in test_dashboard.py."""

from __future__ import annotations

import json
from typing import Any

from pytest_bluegreen.report import grafana
from pytest_bluegreen.report.panels import GATE_RUNS, panels
from pytest_bluegreen.settings.judging import DashboardSettings
from tests.support.stack import ROOT

COMMITTED = ROOT / "monitoring" / "grafana" / "bluegreen.json"
SOURCE = {"type": "prometheus", "uid": "${datasource}"}


def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMMITTED.read_text())
    return document


def test_the_committed_file_is_the_generated_one() -> None:
    """After a change of the queries: python -m pytest_bluegreen.report.grafana >
    monitoring/grafana/bluegreen.json"""
    assert COMMITTED.read_text() == grafana.text()


def test_a_prometheus_data_source_is_a_variable() -> None:
    [variable] = committed()["templating"]["list"]
    assert variable["name"] == "datasource"
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


def test_every_panel_draws_its_query_from_the_variable() -> None:
    document = committed()
    drawn = document["panels"]
    assert [p["title"] for p in drawn] == [p.title for p in panels(DashboardSettings())]
    assert len({p["id"] for p in drawn}) == len(drawn)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in drawn]
    assert len(set(cells)) == len(cells)  # none drawn over another
    for panel, expected in zip(drawn, panels(DashboardSettings()), strict=True):
        assert panel["type"] == "timeseries"
        assert panel["datasource"] == SOURCE
        [target] = panel["targets"]
        assert target["datasource"] == SOURCE
        assert target["expr"] == expected.query.render("$__rate_interval")
        assert "{{color}}" in target["legendFormat"]
        stacking = panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"]
        assert stacking == ("normal" if expected.key == "requests" else "none")


def test_the_gate_runs_are_annotations() -> None:
    [runs] = committed()["annotations"]["list"]
    assert runs["datasource"] == SOURCE
    assert runs["enable"] is True
    assert runs["expr"] == GATE_RUNS.render("$__rate_interval")
    assert "bluegreen_gate_runs_total" in runs["expr"]
    assert "{{outcome}}" in runs["titleFormat"]
    assert "{{target}}" in runs["titleFormat"]
    assert runs["tagKeys"] == "outcome,target"


def test_the_series_settings_change_the_queries() -> None:
    """A user's Prometheus that names its series otherwise: the same generator, their names."""
    series = DashboardSettings(
        dashboard_requests='http_requests_total{job="api"}',
        dashboard_latency="http_request_duration_seconds_bucket",
        dashboard_color_label="deployment",
    )
    exprs = [p["targets"][0]["expr"] for p in grafana.dashboard(series)["panels"]]
    assert (
        exprs[0] == 'sum by (deployment) (rate(http_requests_total{job="api"}[$__rate_interval]))'
    )
    assert 'http_requests_total{job="api",code=~"5.."}' in exprs[1]
    assert "sum by (deployment, le) (rate(http_request_duration_seconds_bucket[" in exprs[2]
    assert 'label_replace(haproxy_server_status{server=~"[^-]+-.+"} == 1, "deployment"' in exprs[3]
