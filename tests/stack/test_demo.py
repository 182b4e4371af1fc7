"""``scripts/demo`` runs again from any state the stack is in: each run deploys to the idle color
first, whichever color is live (after ``bluegreen rollback`` blue is), and ends with the other
color switched to and every quick check passing.

The demo uses the bundled stack on the seed's real ports (``scripts/local_stack.py``), so this
test runs under the shared Docker lock (``flock /tmp/bluegreen-docker.lock``) and only where
nothing holds those ports, names and socket (``tests/support/demo.py``'s ``in_use``): a demo
stack that is up is someone's (the user's, whose deployed colors the demo would replace), and
the test skips. The stack it started it takes down again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.report.dashboard import DEFAULT_LISTEN
from tests.support.browser import Browser, required_chromium
from tests.support.dashboard import colors_in, drawn, grafana_queries
from tests.support.demo import PROJECT, SOCKET, docker, in_use
from tests.support.prometheus import At
from tests.support.stack import ROOT, wait_for

# the seed's default ports, as tests/stack/test_untouched.py's stack holds them: never beside it
pytestmark = pytest.mark.machine

BLUEGREEN = [str(Path(sys.executable).with_name("bluegreen"))]


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "BG_"))}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def live_color() -> str | None:
    done = run([*BLUEGREEN, "status", "--json"], 60)
    return json.loads(done.stdout)["live"] if done.returncode == 0 else None


# the demo stack's PostgreSQL data, which ``local_stack.py down`` keeps (a user's data)
VOLUME = f"{PROJECT}_postgres-data"


def volume_there() -> bool:
    return bool(docker("volume", "ls", "-q", "--filter", f"name=^{VOLUME}$"))


@pytest.fixture
def as_found(docker_engine: None) -> Iterator[None]:
    """Nothing at the seed's defaults before, nothing after: the stack the demo starts goes,
    and its data volume and HAProxy's socket file when they were not there before."""
    held = in_use()
    if held:
        pytest.skip(f"the seed's defaults are in use ({', '.join(held)}): not this test's")
    had_volume = volume_there()
    had_socket = Path(SOCKET).exists()  # HAProxy leaves its socket file behind when it stops
    try:
        yield
    finally:
        run([sys.executable, "scripts/local_stack.py", "down"], 300)
        if not had_volume:  # a random order ran this after test_untouched: the volume stayed
            docker("volume", "rm", VOLUME, check=False)
        if not had_socket:
            Path(SOCKET).unlink(missing_ok=True)
    # as found: nothing left at the defaults (tests/stack/test_untouched.py may run next)
    wait_for(
        lambda: not in_use(), 60, "the seed's defaults free after local_stack.py down", interval=0.5
    )
    assert (volume_there(), Path(SOCKET).exists()) == (had_volume, had_socket)


def demo() -> subprocess.CompletedProcess[str]:
    return run(["scripts/demo"], 900)


def said(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


# the local stack's Prometheus and dashboard (scripts/local_stack.py)
PROMETHEUS = At("http://127.0.0.1:10200")
DASHBOARD = f"http://{DEFAULT_LISTEN}/"
PANELS = 4  # requests, 5xx, p95 latency, HAProxy's servers: each by color
# the window a Grafana query's $__rate_interval stands for here: the demo's first checks of
# blue are a minute or two old when it ends
WINDOW = "5m"


def the_dashboard_draws_the_demo(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """After demo cycles: every query of monitoring/grafana/bluegreen.json is accepted by the
    stack's real Prometheus and has both colors; the page on :10201, in a real Chromium, draws
    every panel with both colors and the demo's switch on the time axis (a screenshot kept)."""
    queries = {what: (expr.replace("$__rate_interval", WINDOW), label)
               for what, expr, label in grafana_queries()}  # fmt: skip

    def lacking() -> dict[str, set[str]]:
        """Each query's colors, where not both: the demo's last push is a scrape (5 s) away."""
        found = {what: colors_in(PROMETHEUS, q, label) for what, (q, label) in queries.items()}
        return {what: colors for what, colors in found.items() if colors != {"blue", "green"}}

    try:
        wait_for(lambda: not lacking(), 30, "every Grafana query with both colors", interval=1)
    except TimeoutError:
        assert lacking() == {}, queries
    chromium = required_chromium(pytestconfig)
    with Browser.start(chromium, tmp_path / "profile") as browser:
        page = browser.open(DASHBOARD)
        summary = drawn(page, markers=1, timeout=90)
        assert summary["panels"] == str(PANELS), summary
        assert "switched" in summary["markerKinds"].split(","), summary
        for key in ("requests", "errors", "latency", "servers"):
            section = page.data(f'section[data-panel="{key}"]')
            assert section["colors"] == "blue,green", (key, section)
        shot = page.screenshot(tmp_path / "dashboard-after-the-demo.png")
        assert shot.stat().st_size > 20_000  # drawn charts, not a blank page


@pytest.mark.usefixtures("as_found")
def test_the_demo_runs_again_whichever_color_is_live(
    pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    first = demo()
    assert first.returncode == 0, said(first)[-4000:]
    # blue live, as after `bluegreen rollback`: the demo starts with green, the idle color
    made = run([*BLUEGREEN, "switch-to", "blue", "--force"], 120)
    assert live_color() == "blue", said(made)
    from_blue = demo()
    assert from_blue.returncode == 0, said(from_blue)[-4000:]
    assert "[demo] green v1.0.0 (idle): deploy, verify (quick checks), make live" in said(from_blue)
    assert "[demo] blue v1.1.0: deploy" in said(from_blue)
    assert "refused" not in said(from_blue)
    assert live_color() == "blue"
    # after two cycles: each color's gate-run counter was scraped before its last increase (a
    # counter's first push, at 1, is no increase to Prometheus: docs/monitoring.md)
    the_dashboard_draws_the_demo(pytestconfig, tmp_path)
    # green live: blue first, green last
    made = run([*BLUEGREEN, "switch-to", "green", "--force"], 120)
    assert live_color() == "green", said(made)
    from_green = demo()
    assert from_green.returncode == 0, said(from_green)[-4000:]
    assert "[demo] blue v1.0.0 (idle): deploy, verify (quick checks), make live" in said(from_green)
    assert "[demo] green v1.1.0: deploy" in said(from_green)
    assert live_color() == "green"
