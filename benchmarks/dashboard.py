"""Benchmark: the dashboard's page, loaded and drawn in a real headless Chromium (issue 25's
bar: every panel with data for both colors, a gate run's marker on the time axis, the page
loaded and drawn in <= 2 s).

Each round opens the page in a fresh Chromium (driven over the DevTools pipe:
tests/support/browser.py) and waits until it has drawn every panel with data for every color
and at least one gate run's marker (or until it says it cannot); ``load_ms`` is the page's own
measure, from navigation to its first drawing (its script, the charting library, the
snapshot asked of Prometheus, the charts). Prints the rounds, then
``dashboard: panels=N with_data=N marker=yes load_ms=X`` (the median round). Asserts nothing.
Run from the repository root:

    .venv/bin/python -m benchmarks.dashboard                 # the running local stack's :10201
    .venv/bin/python -m benchmarks.dashboard --url http://127.0.0.1:10201/
    .venv/bin/python -m benchmarks.dashboard --demo          # scripts/demo first (Docker)
    .venv/bin/python -m benchmarks.dashboard --scene         # the tests' deployment, no Docker

``--demo`` runs scripts/demo first (the local stack up, both colors deployed through the gate,
the dashboard on :10201). ``--scene`` builds the tests' deployment (tests/support/dashboard.py:
a real HAProxy, the stand-in colors, a real Prometheus and Pushgateway, two real gates) and a
``bluegreen dashboard`` on a free port, and stops them after.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

from pytest_bluegreen.report.dashboard import DEFAULT_LISTEN
from tests.support.browser import Browser, BrowserError, chromium_binary
from tests.support.dashboard import scene
from tests.support.pushgateway import pushgateway_binary
from tests.support.stack import ROOT, StackFactory, backends, free_ports, make_cert, wait_for

DRAWN = (
    "(document.body.dataset.state === 'error' || (document.body.dataset.state === 'drawn' "
    "&& document.body.dataset.withData === document.body.dataset.panels "
    "&& Number(document.body.dataset.markers) > 0)) && Object.assign({}, document.body.dataset)"
)


def round_of(chromium: str, url: str, profile: Path, timeout: float) -> dict[str, str]:
    """One fresh browser, the page drawn (or what it said); its summary."""
    with Browser.start(chromium, profile) as browser:
        page = browser.open(url)
        try:
            found: dict[str, str] = page.wait(DRAWN, timeout)
        except TimeoutError:  # drawn, but not every panel or no marker: say what it has
            found = page.data("body")
        return found


def measure(url: str, rounds: int, timeout: float) -> int:
    chromium = chromium_binary()
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    summaries = []
    with tempfile.TemporaryDirectory(prefix="bluegreen-dashboard-") as folder:
        for number in range(1, rounds + 1):
            try:
                summary = round_of(chromium, url, Path(folder) / f"profile{number}", timeout)
            except BrowserError as exc:
                print(f"round {number}: {exc}", file=sys.stderr)
                return 1
            if summary.get("state") == "error":
                print(f"the page says: {summary.get('error')}", file=sys.stderr)
                return 1
            print(
                f"round {number}: panels={summary.get('panels')} "
                f"with_data={summary.get('withData')} markers={summary.get('markers')} "
                f"load_ms={summary.get('loadMs')}"
            )
            summaries.append(summary)
    load = statistics.median(int(s.get("loadMs", "0")) for s in summaries)
    last = summaries[-1]
    marker = "yes" if int(last.get("markers", "0")) > 0 else "no"
    print(
        f"dashboard: panels={last.get('panels')} with_data={last.get('withData')} "
        f"marker={marker} load_ms={load:.0f}"
    )
    return 0


@contextmanager
def built_scene() -> Iterator[str]:
    """The tests' deployment and a dashboard drawing it; the dashboard's URL."""
    gateway = pushgateway_binary()
    if gateway is None or shutil.which("prometheus") is None:
        raise SystemExit("prometheus and prometheus-pushgateway are needed (scripts/setup)")
    with (
        tempfile.TemporaryDirectory(prefix="bluegreen-dashboard-scene-") as folder,
        ExitStack() as stop,
    ):
        workdir = Path(folder)
        cert = make_cert(workdir / "bluegreen.pem")
        blue, green = stop.enter_context(contextmanager(backends)())
        factory = StackFactory(workdir, cert, blue, green)
        stop.callback(factory.close)
        drawn = stop.enter_context(scene(factory, workdir, gateway))
        [port] = free_ports(1)
        process = drawn.dashboard("--listen", f"127.0.0.1:{port}")
        stop.callback(process.communicate, timeout=30)
        stop.callback(process.terminate)
        url = f"http://127.0.0.1:{port}/"
        wait_for(
            lambda: requests.get(f"{url}-/ready", timeout=2).ok, 60,
            "bluegreen dashboard to serve", retry=(requests.ConnectionError,), watch=[process],
        )  # fmt: skip
        yield url


def demo() -> int:
    up = subprocess.run(["scripts/demo"], cwd=ROOT, check=False, capture_output=True, text=True)
    if up.returncode != 0:
        print(f"scripts/demo failed:\n{up.stdout[-2000:]}{up.stderr[-2000:]}", file=sys.stderr)
    return up.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://{DEFAULT_LISTEN}/", help="the dashboard's page")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--demo", action="store_true", help="scripts/demo first (Docker)")
    where.add_argument("--scene", action="store_true", help="the tests' deployment, no Docker")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a round may wait")
    args = parser.parse_args()
    if args.scene:
        with built_scene() as url:
            return measure(url, args.rounds, args.timeout)
    if args.demo and (code := demo()) != 0:
        return code
    try:
        requests.get(args.url, timeout=5).raise_for_status()
    except requests.RequestException as exc:
        print(f"no dashboard at {args.url} ({exc}): scripts/local_stack.py up", file=sys.stderr)
        return 1
    return measure(args.url, args.rounds, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
