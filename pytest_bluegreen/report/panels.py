"""The dashboard's panels and their PromQL, in one place: ``bluegreen dashboard``'s page
(report/dashboard.py) and the Grafana dashboard (report/grafana.py,
monitoring/grafana/bluegreen.json) both draw these.

Every query is a template of one placeholder, ``{window}``: the range a rate is taken over
(the page: a few steps of its range, at least a minute; Grafana: ``$__rate_interval``). The
colors' series are the settings' (``[dashboard]``: :class:`DashboardSettings`); HAProxy's
servers are a color's by their names (``blue-api``, ``green-api-direct``: the part before the
first ``-``), as monitoring/rules/bluegreen.yml reads them. The gate's runs are the increases
of ``bluegreen_gate_runs_total`` (report/metrics.py), by outcome and target color.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_bluegreen.settings.judging import DashboardSettings

from .metrics import RUNS

__all__ = [
    "GATE_RUNS",
    "MARKER_LABELS",
    "Panel",
    "Query",
    "panels",
    "with_matcher",
]

# a server's color: its name up to the first "-" (blue-api1 -> blue), servers named otherwise
# are left out
_SERVER_COLOR = '"{label}", "$1", "server", "([^-]+)-.*"'
_COLORED_SERVER = 'server=~"[^-]+-.+"'
MARKER_LABELS = ("outcome", "target")  # bluegreen_gate_runs_total's labels a marker shows


@dataclass(frozen=True)
class Query:
    """One PromQL template (``{window}`` in it) and the labels that name its series."""

    expr: str
    legend: tuple[str, ...]

    def render(self, window: str) -> str:
        return self.expr.replace("{window}", window)


@dataclass(frozen=True)
class Panel:
    """One chart: its key (the page's and the test's name for it), title, unit (Grafana's
    unit ids: ``reqps``, ``s``, ``none``), whether its series are stacked, and its query."""

    key: str
    title: str
    unit: str
    stacked: bool
    query: Query


def with_matcher(selector: str, matcher: str) -> str:
    """``selector`` with one more label matcher: ``x`` -> ``x{m}``, ``x{a="b"}`` ->
    ``x{a="b",m}``."""
    if selector.endswith("}"):
        inner = selector[selector.index("{") + 1 : -1].strip().rstrip(",")
        name = selector[: selector.index("{")]
        return f"{name}{{{inner},{matcher}}}" if inner else f"{name}{{{matcher}}}"
    return f"{selector}{{{matcher}}}"


def panels(series: DashboardSettings) -> tuple[Panel, ...]:
    """The four charts, for the colors' series ``series`` names."""
    label = series.dashboard_color_label
    requests = series.dashboard_requests
    errors = with_matcher(requests, 'code=~"5.."')
    by = f"sum by ({label})"
    states = (
        f"count by ({label}, state) (label_replace("
        f"haproxy_server_status{{{_COLORED_SERVER}}} == 1, {_SERVER_COLOR.format(label=label)}))"
    )
    return (
        Panel(
            "requests",
            "Requests per second by color",
            "reqps",
            True,
            Query(f"{by} (rate({requests}[{{window}}]))", (label,)),
        ),
        Panel(
            "errors",
            "5xx per second by color",
            "reqps",
            False,
            # a color that answered no 5xx is at 0, not missing
            Query(
                f"{by} (rate({errors}[{{window}}])) or {by} (rate({requests}[{{window}}])) * 0",
                (label,),
            ),
        ),
        Panel(
            "latency",
            "p95 latency by color",
            "s",
            False,
            Query(
                f"histogram_quantile(0.95, sum by ({label}, le) "
                f"(rate({series.dashboard_latency}[{{window}}])))",
                (label,),
            ),
        ),
        Panel(
            "servers",
            "HAProxy servers by color and state",
            "none",
            False,
            Query(states, (label, "state")),
        ),
    )


# a gate run: an increase of its counter within the window, by outcome and target color
GATE_RUNS = Query(
    f"sum by ({', '.join(MARKER_LABELS)}) (increase({RUNS}[{{window}}])) > 0", MARKER_LABELS
)
