"""Both colors answered by one more real HAProxy process (``http-request return``): every
request, health checks included, answered with the color's ``X-Bluegreen-Color`` and
``X-Bluegreen-Version`` headers, in microseconds and with no thread per connection.

For many HAProxy instances in front of the colors (``benchmarks/switch_under_load.py
--instances 1,2,5,10,20``): twenty instances health-check each color's servers (four times
per instance, every 500 ms) and a watch asks through every one of them at once, which the
Python stand-ins (``backend_app.py``: a thread per connection, a listen backlog of 5) answer
late or not at all on two cores (HAProxy's checks time out, ``L4TOUT``, and the color is
DOWN); what is measured is the HAProxy tier's switch, not the stand-ins.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.judge.headers import COLOR_HEADER, VERSION_HEADER

from .stack import Exited, free_ports, haproxy_binary, wait_for

__all__ = ["FastColors"]

VERSIONS = {"blue": "v1.0.0", "green": "v1.1.0"}


def _config(ports: dict[str, int], runtime: int) -> str:
    lines = [
        "global",
        "    maxconn 8192",
        f"    stats socket ipv4@127.0.0.1:{runtime} level user",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 30s",
    ]
    for color, port in ports.items():
        body = json.dumps(json.dumps({"color": color, "version": VERSIONS[color]}))
        lines += [
            f"frontend {color}",
            f"    bind 127.0.0.1:{port}",
            f"    http-request return status 200 content-type application/json string {body} "
            f"hdr {COLOR_HEADER} {color} hdr {VERSION_HEADER} {VERSIONS[color]}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class FastColors:
    """The process and each color's address (``host:port``)."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]

    @classmethod
    def start(cls, workdir: Path) -> FastColors:
        binary = haproxy_binary()
        assert binary, "haproxy is not installed"
        workdir.mkdir(parents=True, exist_ok=True)
        blue, green, runtime = free_ports(3)
        ports = {"blue": blue, "green": green}
        config = workdir / "colors.cfg"
        config.write_text(_config(ports, runtime))
        log = open(workdir / "colors.log", "wb")  # noqa: SIM115 - the process's, closed by it
        proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        api = RuntimeApi(f"127.0.0.1:{runtime}", timeout=1)

        def answers() -> bool:
            if proc.poll() is not None:
                raise Exited(f"haproxy (colors) exited {proc.returncode}")
            return bool(api.show_info())

        try:
            wait_for(answers, 10, "the colors' HAProxy", retry=(RuntimeApiError,))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return cls(proc, ports)

    def addresses(self) -> dict[str, str]:
        """A stack's ``BG_*_ADDR`` overrides: every switched and direct server here."""
        return {
            f"BG_{color.upper()}_{part}_ADDR": f"127.0.0.1:{port}"
            for color, port in self.ports.items()
            for part in ("API", "FRONTEND")
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
