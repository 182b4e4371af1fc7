"""Benchmark: when ``-n 2`` (pytest-xdist) pays: 200 I/O-bound checks, serial against parallel.

The benchmark starts an HTTP server on 127.0.0.1 that answers every request after a delay
(``--delay``, 50 ms: a check waiting on the network, as health and smoke checks do) and writes
a check suite of 200 checks into a temporary folder: 100 per color through the plugin's
``http`` fixture (``test_io[blue-0]`` ... ``test_io[green-99]``, ``--env all``), each one GET of
the slow URL. It runs that suite with pytest serially and with ``-n 2`` (subprocesses,
interleaved, ``--rounds`` each) and prints the median wall times (process start to exit) and
``ratio=X`` (parallel wall / serial wall, in the same run). Goal: ratio <= 0.6.

For a quick suite of fast checks the opposite holds: starting the workers costs more than
they save (see CONTRIBUTING.md, "When -n helps").

Asserts nothing. Run from the repository root:
    .venv/bin/python -m benchmarks.xdist_io [--rounds 3] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHECKS = 200
GOAL = 0.6

SUITE = f"""
import pytest


@pytest.mark.parametrize("i", range({CHECKS // 2}))
def test_io(http, color, i):
    response = http.get("/slow")
    assert response.status_code == 200
"""


class SlowServer(ThreadingHTTPServer):
    """Answers every GET after ``delay`` seconds; a thread per connection (keep-alive)."""

    daemon_threads = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.served = 0
        super().__init__(("127.0.0.1", 0), _SlowHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the http fixture's session expects
    server: SlowServer

    def setup(self) -> None:
        super().setup()
        # the headers and the body are two writes: without this, Nagle's algorithm holds the
        # body until the client's delayed ACK of the headers (+40 ms per request)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        time.sleep(self.server.delay)
        self.server.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass(frozen=True)
class Timing:
    wall: float  # process start to exit
    cpu: float  # user + system CPU of the session's processes (the workers too)


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workdir: Path, extra: list[str], env: dict[str, str]) -> Timing:
    """One session (the only child running); exits if it did not pass every check."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--env", "all"]
    cpu = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(
        [*cmd, *extra],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0 or not re.search(rf"\b{CHECKS} passed\b", done.stdout):
        sys.exit(f"{' '.join(cmd + extra)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return Timing(wall, cpu_of_children() - cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each session")
    parser.add_argument("--delay", type=float, default=0.05, help="the server's delay (s)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (-n)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "BG_"))}
    server = SlowServer(args.delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    workdir = Path(tempfile.mkdtemp(prefix="bluegreen-xdist-io-"))
    sessions = {"serial": [], "parallel": ["-n", str(args.workers)]}
    timings: dict[str, list[Timing]] = {name: [] for name in sessions}
    try:
        # both colors at the slow server; the Runtime API is never contacted (no --switch)
        (workdir / "bluegreen.toml").write_text(
            f'runtime_api = "{workdir / "none.sock"}"\n'
            + "".join(
                f'[colors.{color}]\napi_url = "{server.url}"\n'
                f'servers = ["api_backend/{color}-api"]\n'
                for color in ("blue", "green")
            )
        )
        (workdir / "test_io.py").write_text(SUITE)
        run(workdir, sessions["parallel"], env)  # warm-up: imports, bytecode, file caches
        for r in range(args.rounds):
            order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
            for name in order:
                timings[name].append(run(workdir, sessions[name], env))
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)

    serial, parallel = (statistics.median(t.wall for t in timings[name]) for name in sessions)
    ratio = parallel / serial
    load1, load5, _ = os.getloadavg()
    print(
        f"{CHECKS} checks, each one GET answered after {args.delay * 1000:.0f} ms; "
        f"{args.rounds} rounds (interleaved), median; {os.cpu_count()} CPUs, load average "
        f"{load1:.1f}/{load5:.1f} at the end"
    )
    for name, runs in timings.items():
        cpu = statistics.median(t.cpu for t in runs)
        walls = " ".join(f"{t.wall:.2f}" for t in runs)
        print(f"  {name:<9} wall {walls} s, CPU {cpu:.2f} s")
    print(f"serial={serial:.2f}s parallel={parallel:.2f}s ratio={ratio:.2f}")
    verdict = "holds" if ratio <= GOAL else "does NOT hold"
    print(f"goal -n {args.workers} <= {GOAL}x serial: {ratio:.2f}x, {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
