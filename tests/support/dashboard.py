"""A deployment to draw, for the dashboard's tests and benchmark, without Docker: a real
HAProxy (the shipped haproxy.cfg) in front of the two stand-in backends (which count their
requests as the Jarvis API does), a real Pushgateway, and a real Prometheus scraping them as
monitoring/prometheus.yml does (each color's target with its color label, HAProxy's exporter,
the Pushgateway with ``honor_labels``). Users' bounded load goes through HAProxy's routed URL and
to each color directly; two real gates (``pytest --switch``, as a user runs them) switch to
green at v1.1.0, then back to blue at v1.0.0, each pushing the gate's metrics and writing
the history. Green then answers 500 to every 10th request.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_bluegreen.local.prometheus import LocalPrometheus
from pytest_bluegreen.report.exposition import Family, Sample
from pytest_bluegreen.report.metrics import RunMetrics, families, push

from .browser import Page
from .cli import BLUEGREEN, clean_environ
from .gate import deployment_folder
from .prometheus import Job, Reached, api, config, local, wait_scraped
from .pushgateway import Pushgateway
from .stack import ROOT, Stack, StackFactory, wait_for
from .switching import LoadProcess

LIBRARY = ROOT / ".bluegreen" / "chartjs"  # scripts/install-chartjs (scripts/setup)
GRAFANA = ROOT / "monitoring" / "grafana" / "bluegreen.json"
GATES = (("green", "v1.1.0"), ("blue", "v1.0.0"))  # each a real gate that switches
COLORS = ("blue", "green")


@dataclass
class Scene:
    stack: Stack
    prometheus: LocalPrometheus
    gateway: Pushgateway
    folder: Path  # the deployment's folder: bluegreen.toml and checks/
    loads: list[LoadProcess]

    def dashboard(self, *args: str) -> subprocess.Popen[str]:
        """``bluegreen dashboard ARGS`` in the deployment's folder, as a user starts it."""
        return subprocess.Popen(
            [*BLUEGREEN, "dashboard", *args],
            cwd=self.folder,
            env=clean_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def prometheus_config(stack: Stack, gateway: Pushgateway) -> str:
    jobs = [
        Job("jarvis", {stack.blue.url.removeprefix("http://"): {"color": "blue"},
                       stack.green.url.removeprefix("http://"): {"color": "green"}}),
        Job("haproxy", {f"127.0.0.1:{stack.ports['stats']}": {}}),
        Job("pushgateway", {f"127.0.0.1:{gateway.port}": {}}),
    ]  # fmt: skip
    document = json.loads(config(jobs))
    for job in document["scrape_configs"]:
        if job["job_name"] == "pushgateway":
            job["honor_labels"] = True  # the pushed job and instance labels kept
    return json.dumps(document, indent=2)


def instant(prometheus: Reached, expr: str) -> dict[str, float]:
    """An instant query's finite values, by each series' labels written out."""
    found = api(prometheus, "query", query=expr)["result"]
    values = {
        ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
        for r in found
    }
    return {labels: value for labels, value in values.items() if math.isfinite(value)}


def grafana_queries() -> list[tuple[str, str, str]]:
    """(what, expr, color label) of every panel target and annotation of the committed file."""
    document = json.loads(GRAFANA.read_text())
    found = [
        (panel["title"], target["expr"], "color")
        for panel in document["panels"]
        for target in panel["targets"]
    ]
    found += [
        (f"annotation {a['name']}", a["expr"], "target") for a in document["annotations"]["list"]
    ]
    return found


def colors_in(prometheus: Reached, expr: str, label: str = "color") -> set[str]:
    """The colors (``label``'s values) an instant query has a finite value for."""
    return {
        dict(part.split("=", 1) for part in labels.split(",") if part).get(label, "")
        for labels in instant(prometheus, expr)
    }


def _baseline(gateway: Pushgateway) -> None:
    """The gate's counters at 0 in the Pushgateway, as after an earlier run: an increase is
    seen from the second scrape of a counter on (the real push, with nothing recorded)."""

    def build(previous: Sequence[Sample]) -> list[Family]:
        return families(previous, RunMetrics(), COLORS, None, live_known=False)

    push(gateway.url, socket.gethostname(), 5.0, build)


def _gate(folder: Path, color: str, tag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "checks", "--env", color,
         "--switch", "-m", "quick", "--deployment-tag", tag],
        cwd=folder, env=clean_environ(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@contextmanager
def scene(factory: StackFactory, workdir: Path, pushgateway_binary: str) -> Iterator[Scene]:
    """The deployment above, once every panel's series has data for both colors and both
    gates' runs are in Prometheus; everything stopped on exit."""
    with ExitStack() as stop:
        stack = factory("dashboard")
        gateway = Pushgateway.start(pushgateway_binary, workdir / "pushgateway.log")
        stop.callback(gateway.stop)
        prometheus = local(workdir / "prometheus", prometheus_config(stack, gateway))
        prometheus.start()
        stop.callback(prometheus.stop)
        wait_scraped(prometheus, jobs=3)
        _baseline(gateway)
        wait_for(lambda: instant(prometheus, "count(bluegreen_gate_runs_total)"), 20,
                 "Prometheus to scrape the gate's counters at 0")  # fmt: skip
        loads = [
            LoadProcess(f"{stack.routed_url}/api/echo", 6000, 300, 1, pause=0.05),
            *(LoadProcess(f"{stack.direct_url(c)}/api/echo", 3000, 300, 1, pause=0.1)
              for c in COLORS),
        ]  # fmt: skip
        for load in loads:
            stop.callback(load.finish, 30)
        folder = deployment_folder(
            workdir / "deployment",
            stack,
            prometheus_url=prometheus.url,
            metrics_push_url=gateway.url,
            dashboard_library=str(LIBRARY),
        )
        for color, tag in GATES:
            _gate(folder, color, tag)
        stack.green.control(error_every=10)
        runs = "sum by (outcome, target) (increase(bluegreen_gate_runs_total[1m])) > 0"
        wait_for(lambda: colors_in(prometheus, runs, "target") == set(COLORS), 60,
                 "Prometheus to see both gates' runs")  # fmt: skip
        # (the stand-ins live as long as the test session: a 5xx series of another test's may
        # be there, at a rate of 0)
        errors = 'sum by (color) (rate(jarvis_http_requests_total{code=~"5.."}[1m]))'
        latency = (
            "histogram_quantile(0.95, sum by (color, le) "
            "(rate(jarvis_http_request_duration_seconds_bucket[1m])))"
        )
        wait_for(lambda: instant(prometheus, errors).get("color=green", 0.0) > 0
                 and colors_in(prometheus, latency) == set(COLORS), 60,
                 "Prometheus to have both colors' latency and green's 5xx")  # fmt: skip
        yield Scene(stack, prometheus, gateway, folder, loads)


def drawn(page: Page, markers: int, timeout: float) -> dict[str, str]:
    """The page's summary (``document.body.dataset``) once it has drawn every panel with data
    and at least ``markers`` gate runs on the time axis."""
    summary: dict[str, str] = page.wait(
        "document.body.dataset.state === 'drawn' && document.body.dataset.withData "
        f"=== document.body.dataset.panels && document.body.dataset.markers >= {markers} "
        "&& Object.assign({}, document.body.dataset)",
        timeout,
    )
    return summary
