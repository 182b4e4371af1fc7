"""A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client import delete_from_gateway

from pytest_bluegreen.report.exposition import Sample, parse
from pytest_bluegreen.report.metrics import JOB, NAMES

from .stack import free_ports, wait_for


def pushgateway_binary() -> str | None:
    return shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


@dataclass
class Pushgateway:
    proc: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, binary: str, log: Path) -> Pushgateway:
        [port] = free_ports(1)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--web.listen-address=127.0.0.1:{port}"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        gateway = cls(proc, port)
        try:
            wait_for(
                gateway.ready,
                30,
                f"the Pushgateway on :{port} ({log})",
                retry=(requests.ConnectionError,),  # not listening yet
            )
        except TimeoutError:
            gateway.stop()
            raise
        return gateway

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the Pushgateway exited with {self.proc.returncode}")
        return requests.get(f"{self.url}/-/ready", timeout=2).ok

    def samples(self) -> list[Sample]:
        """This host's bluegreen group, job and instance labels left out."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        host = socket.gethostname()
        return [
            Sample(
                s.name, tuple(kv for kv in s.labels if kv[0] not in ("job", "instance")), s.value
            )
            for s in parse(text, NAMES)
            if s.label("job") == JOB and s.label("instance") == host
        ]

    def clear(self) -> None:
        delete_from_gateway(self.url, job=JOB, grouping_key={"instance": socket.gethostname()})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
