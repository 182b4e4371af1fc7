"""A real Prometheus for the tests: on a free loopback port, its data in a temporary folder,
scraping every second what the test names, started and stopped through
``pytest_bluegreen.local.prometheus`` (as ``scripts/local_stack.py`` does)."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import requests

from pytest_bluegreen.local.prometheus import LocalPrometheus

from .stack import ROOT, free_ports, wait_for

RULES = ROOT / "monitoring" / "rules"
_FOR = re.compile(r"^(\s+for:\s*)\S+", re.MULTILINE)


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class Job:
    """One scrape job: its name and targets (``host:port``) with their extra labels."""

    name: str
    targets: Mapping[str, Mapping[str, str]]


def config(jobs: Sequence[Job], rule_files: Sequence[Path] = (), interval: str = "1s") -> str:
    """A prometheus.yml (JSON is YAML) scraping ``jobs`` every ``interval``."""
    return json.dumps(
        {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": job.name,
                    "static_configs": [
                        {"targets": [target], "labels": dict(labels)}
                        for target, labels in job.targets.items()
                    ],
                }
                for job in jobs
            ],
        },
        indent=2,
    )


def fast_rules(folder: Path, every: str = "1s") -> list[Path]:
    """The shipped rule files with every ``for:`` shortened to ``every``: the expressions are
    the shipped ones, evaluated for real; only the waiting is cut (promtool's unit tests in
    monitoring/tests/ hold the durations)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for rules in sorted(RULES.glob("*.yml")):
        copy = folder / rules.name
        copy.write_text(_FOR.sub(rf"\g<1>{every}", rules.read_text()))
        copies.append(copy)
    return copies


def local(workdir: Path, config_text: str) -> LocalPrometheus:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config_text)
    [port] = free_ports(1)
    return LocalPrometheus(
        config=workdir / "prometheus.yml",
        storage=workdir / "data",
        listen=f"127.0.0.1:{port}",
        pidfile=workdir / "prometheus.pid",
        log=workdir / "prometheus.log",
    )


class Reached(Protocol):
    """A Prometheus by its address: a :class:`LocalPrometheus` the test started, or the local
    stack's (:class:`At`)."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class At:
    """A Prometheus someone else runs, at ``url`` (the local stack's ``http://127.0.0.1:10200``)."""

    url: str


def api(prometheus: Reached, path: str, **params: str) -> Any:
    """GET ``/api/v1/<path>``'s data."""
    answer = requests.get(f"{prometheus.url}/api/v1/{path}", params=params, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]


def wait_scraped(prometheus: LocalPrometheus, jobs: int, timeout: float = 20) -> None:
    """Until every target of the ``jobs`` jobs has been scraped once and is up (Prometheus
    applies a new target set a few seconds after its start)."""

    def all_up() -> bool:
        targets = api(prometheus, "targets", state="active")["activeTargets"]
        pools = {t["scrapePool"] for t in targets}
        return len(pools) == jobs and all(t["health"] == "up" for t in targets)

    wait_for(all_up, timeout, "Prometheus to scrape every target", interval=0.2)


def firing(prometheus: LocalPrometheus, alertname: str) -> list[dict[str, Any]]:
    """The firing alerts named ``alertname``."""
    alerts = api(prometheus, "alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


class _Exporter(BaseHTTPRequestHandler):
    status = 200  # set on the class by Exporter

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = b"# TYPE exporter_up gauge\nexporter_up 1\n"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Exporter:
    """A target of our own on loopback whose ``/metrics`` answers ``status``."""

    server: ThreadingHTTPServer
    handler: type[_Exporter]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int) -> None:
        self.handler.status = status


@contextmanager
def exporter() -> Iterator[Exporter]:
    handler = type("Handler", (_Exporter,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield Exporter(server, handler)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
