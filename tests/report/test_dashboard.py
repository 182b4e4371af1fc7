"""``bluegreen dashboard`` and monitoring/grafana/bluegreen.json on real parts: a real
Prometheus scraping the stand-in colors, HAProxy's exporter and a Pushgateway fed by two real
gates (tests/support/dashboard.py). Every query of the Grafana dashboard runs on it and has
both colors; the dashboard, loaded in a real headless Chromium, draws every panel with both
colors and the gates' runs on the time axis; Prometheus gone, the page says so."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.report.panels import panels
from pytest_bluegreen.report.snapshot import Source, snapshot
from pytest_bluegreen.settings.judging import DashboardSettings
from tests.support.browser import Browser, Page, required_chromium
from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.dashboard import (
    COLORS,
    GATES,
    LIBRARY,
    Scene,
    colors_in,
    grafana_queries,
    instant,
    scene,
)
from tests.support.dashboard import (
    drawn as drawn_page,
)
from tests.support.infra import require_infra
from tests.support.prometheus import prometheus_binary
from tests.support.pushgateway import pushgateway_binary
from tests.support.stack import Backend, StackFactory, free_ports, wait_for

# one deployment (a Prometheus, two gates, the users' load) per module, on one xdist worker
pytestmark = pytest.mark.xdist_group("dashboard")

GRAFANA_WINDOW = "1m"  # what $__rate_interval is for Grafana's default 15 s scrape interval
PANELS = ("requests", "errors", "latency", "servers")


@pytest.fixture(scope="module")
def drawn(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
    color_backends: tuple[Backend, Backend],
) -> Iterator[Scene]:
    require_infra(pytestconfig, prometheus_binary() is not None, "prometheus is not installed")
    gateway = pushgateway_binary()
    require_infra(pytestconfig, gateway is not None, "prometheus-pushgateway is not installed")
    assert gateway is not None
    blue, green = color_backends
    blue.reset()
    green.reset()
    workdir = tmp_path_factory.mktemp("dashboard")
    factory = StackFactory(workdir, tls_cert, blue, green)
    try:
        with scene(factory, workdir, gateway) as ready:
            yield ready
    finally:
        factory.close()
        blue.reset()
        green.reset()


def _library(config: pytest.Config) -> None:
    require_infra(config, LIBRARY.is_dir(), f"no {LIBRARY} (scripts/setup installs it)")


# --- the Grafana dashboard's queries on a real Prometheus ---------------------------------


@pytest.mark.parametrize(
    ("what", "expr", "label"), grafana_queries(), ids=[q[0] for q in grafana_queries()]
)
def test_every_grafana_query_has_both_colors(
    drawn: Scene, what: str, expr: str, label: str
) -> None:
    query = expr.replace("$__rate_interval", GRAFANA_WINDOW)
    assert "$" not in query.replace('"$1"', ""), query  # no other Grafana variable
    assert colors_in(drawn.prometheus, query, label) == set(COLORS), what


def test_the_grafana_queries_measure_what_their_titles_say(drawn: Scene) -> None:
    by_title = {
        title: expr.replace("$__rate_interval", "1m") for title, expr, _ in grafana_queries()
    }
    errors = instant(drawn.prometheus, by_title["5xx per second by color"])
    assert errors["color=green"] > 0  # green answers 500 to 1 request in 10
    assert errors["color=blue"] == 0  # blue to none
    servers = instant(drawn.prometheus, by_title["HAProxy servers by color and state"])
    assert {"color=blue,state=UP", "color=green,state=UP"} <= set(servers)
    assert servers["color=blue,state=UP"] >= 2  # blue-api, blue-frontend, blue-api-direct...
    latency = instant(drawn.prometheus, by_title["p95 latency by color"])
    assert all(0 < seconds < 1 for seconds in latency.values())
    runs = instant(drawn.prometheus, by_title["annotation gate runs"])
    assert set(runs) == {f"outcome=switched,target={color}" for color in COLORS}


def test_other_series_are_drawn_when_the_settings_name_them(drawn: Scene) -> None:
    """The stand-ins' own series, with a matcher already in the selector: every panel has
    both colors."""
    series = DashboardSettings(
        dashboard_requests='backend_requests_total{path="api"}',
        dashboard_latency="backend_request_duration_seconds_bucket",
    )
    source = Source(drawn.prometheus.url, series, None, COLORS)
    shot = snapshot(source, 900)
    assert shot["error"] is None
    for panel in shot["panels"]:
        assert panel["error"] is None, panel["key"]
        with_data = {
            s["color"] for s in panel["series"] if any(v is not None for _, v in s["points"])
        }
        assert with_data == set(COLORS), panel["key"]
    assert [p.key for p in panels(series)] == [p["key"] for p in shot["panels"]]


# --- the page, in a real browser ----------------------------------------------------------


def _started(process: subprocess.Popen[str], url: str) -> None:
    wait_for(
        lambda: requests.get(f"{url}-/ready", timeout=2).ok,
        60,
        "bluegreen dashboard to serve",
        retry=(requests.ConnectionError,),
        watch=[process],
    )


def _stopped(process: subprocess.Popen[str]) -> str:
    """SIGTERM, as scripts/local_stack.py down sends it: a clean stop, exit 0."""
    process.send_signal(signal.SIGTERM)
    said, _ = process.communicate(timeout=30)
    assert process.returncode == 0, said
    return said


def _attach(path: Path, name: str) -> None:
    try:
        import allure  # noqa: PLC0415 - the allure extra, when the run writes results
    except ImportError:
        return
    allure.attach.file(str(path), name=name, attachment_type=allure.attachment_type.PNG)  # type: ignore[no-untyped-call]


def test_the_page_draws_every_panel_with_both_colors_and_the_gate_runs(
    pytestconfig: pytest.Config, drawn: Scene, tmp_path: Path
) -> None:
    chromium = required_chromium(pytestconfig)
    _library(pytestconfig)
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}/"
    process = drawn.dashboard("--listen", f"127.0.0.1:{port}")
    try:
        _started(process, url)
        with Browser.start(chromium, tmp_path / "profile") as browser:
            page = browser.open(url)
            summary = drawn_page(page, markers=2, timeout=60)
            _check_page(page, summary)
            shot = page.screenshot(tmp_path / "dashboard.png")
            _attach(shot, "dashboard")
            assert shot.stat().st_size > 20_000  # drawn charts, not a blank page
    finally:
        said = _stopped(process) if process.poll() is None else process.communicate()[0]
    assert f"bluegreen: dashboard on {url}" in said
    assert "bluegreen: dashboard stopped" in said


def _check_page(page: Page, summary: dict[str, str]) -> None:
    assert summary["panels"] == str(len(PANELS))
    assert summary["withData"] == str(len(PANELS))
    assert {"switched"} <= set(summary["markerKinds"].split(","))
    assert 0 < int(summary["loadMs"]) < 30_000
    for key in PANELS:
        section = page.data(f'section[data-panel="{key}"]')
        assert section["colors"] == ",".join(COLORS), key
        assert section["complete"] == "yes", key
    # the markers: each gate's switch, from the history, with its tag
    runs = page.evaluate(
        "[...document.querySelectorAll('#runs li')].map(li => Object.assign({}, li.dataset))"
    )
    switches = [(r["target"], r.get("tag")) for r in runs if r["kind"] == "switched"]
    assert switches == list(GATES)
    # drawn on the charts' time axis: one annotation line per run on every chart
    lines = page.evaluate(
        "Object.values(Chart.instances).map(c => "
        "Object.keys(c.options.plugins.annotation.annotations).length)"
    )
    assert lines == [len(runs)] * len(PANELS)
    assert re.search(r"switched → green v1\.1\.0", page.text("#runs"))


# --- Prometheus gone, and what the command refuses ----------------------------------------


def test_an_unreachable_prometheus_is_said_on_the_page(
    pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    chromium = required_chromium(pytestconfig)
    _library(pytestconfig)
    folder = _settings_folder(tmp_path)
    nobody, port = free_ports(2)  # nothing listens on the first
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(
        [*BLUEGREEN, "dashboard", "--listen", f"127.0.0.1:{port}",
         "--prometheus", f"http://prom:s3cr3t@127.0.0.1:{nobody}"],
        cwd=folder, env=clean_environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        _started(process, url)
        with Browser.start(chromium, tmp_path / "profile") as browser:
            page = browser.open(url)
            page.wait("document.body.dataset.state === 'error'", 30)
            message = page.text("#message")
            assert f"Prometheus at http://***@127.0.0.1:{nobody} does not answer" in message
            assert "Connection refused" in message
            assert "s3cr3t" not in page.evaluate("document.documentElement.outerHTML")
            assert page.evaluate("document.getElementById('panels').hidden") is True
            page.screenshot(tmp_path / "unreachable.png")
    finally:
        said = _stopped(process)
    assert "s3cr3t" not in said


def _settings_folder(tmp_path: Path, **settings: str) -> Path:
    folder = tmp_path / "deployment"
    folder.mkdir()
    given = {"dashboard_library": str(LIBRARY), **settings}
    lines = [f"{key} = {json.dumps(value)}" for key, value in given.items()]
    (folder / "bluegreen.toml").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--listen", "nowhere"],
            "--listen expects HOST:PORT (e.g. 127.0.0.1:10201), got 'nowhere'",
        ),
        (["--listen", "127.0.0.1:99999"], "--listen expects HOST:PORT"),
        (["--prometheus", "ftp://127.0.0.1:9090"], "--prometheus: expected an http(s) URL"),
        (["--prometheus", "http://a:s3cr3t@"], "--prometheus: expected an http(s) URL"),
        ([], "no Prometheus to draw from: give --prometheus URL, or set prometheus_url"),
        (
            ["--listen", "TAKEN", "--prometheus", "http://127.0.0.1:9"],
            "cannot listen on 127.0.0.1:",
        ),
        (["--prometheus", "http://127.0.0.1:9", "NOLIBRARY"], "charting library is not installed"),
    ],
    ids=["no-port", "bad-port", "not-http", "no-host", "no-prometheus", "taken", "no-library"],
)
def test_what_the_command_refuses_is_one_line(tmp_path: Path, args: list[str], said: str) -> None:
    library = {"dashboard_library": str(tmp_path / "none")} if "NOLIBRARY" in args else {}
    folder = _settings_folder(tmp_path, **library)
    given = [a for a in args if a != "NOLIBRARY"]
    if "--listen" not in given:  # never the seed's 10201, should a refusal fail to come
        given += ["--listen", f"127.0.0.1:{free_ports(1)[0]}"]
    with socket_held() as taken:
        given = [f"127.0.0.1:{taken}" if a == "TAKEN" else a for a in given]
        done = subprocess.run(
            [*BLUEGREEN, "dashboard", *given], cwd=folder, env=clean_environ(),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 4, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("bluegreen: error: ")
    assert said in lines[0]
    assert "s3cr3t" not in done.stdout + done.stderr


@contextmanager
def socket_held() -> Iterator[int]:
    """A port something listens on, while the block runs."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_ports(1)[0]))
        held.listen()
        yield int(held.getsockname()[1])
