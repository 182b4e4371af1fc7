"""The bundled local stack: HAProxy (haproxy/haproxy.cfg, the seed's ports) in front of a blue
and a green stand-in API on this host. Idempotent.

    python scripts/local_stack.py up      # start what is not running, wait until UP
    python scripts/local_stack.py down    # stop it
    python scripts/local_stack.py status

Interim: the Docker stack (docker/docker-compose.blue-green.yml) replaces the stand-in backends.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_bluegreen.haproxy import RuntimeApi, RuntimeApiError  # noqa: E402

RUN = ROOT / ".bluegreen" / "local"
BACKEND_APP = ROOT / "tests" / "support" / "backend_app.py"
COLORS = {"blue": ("v1.0.0", 8010), "green": ("v1.1.0", 8011)}
SOCKET = "/var/run/haproxy/admin.sock"


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (OSError, RuntimeApiError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"[stack] ERROR: {what} not ready after {timeout:g}s (logs in {RUN})")
        time.sleep(0.05)


def up() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    for color, (version, port) in COLORS.items():
        pidfile = RUN / f"{color}.pid"
        if _alive(pidfile):
            continue
        with open(RUN / f"{color}.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(BACKEND_APP),
                    "--color",
                    color,
                    "--version",
                    version,
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile.write_text(str(proc.pid))
        print(f"[stack] {color} {version} on 127.0.0.1:{port} (pid {proc.pid})")
    pidfile = RUN / "haproxy.pid"
    if not _alive(pidfile):
        Path(SOCKET).parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "BG_RUNTIME_SOCKET": SOCKET,
            "BG_SERVER_STATE_FILE": str(ROOT / ".bluegreen" / "haproxy" / "server-state"),
            "BG_TLS_CERT": str(ROOT / "haproxy" / "certs" / "bluegreen.pem"),
            "BG_CHECK_INTER": "500ms",
            # the stand-in serves the frontend page too
            "BG_BLUE_FRONTEND_ADDR": f"127.0.0.1:{COLORS['blue'][1]}",
            "BG_GREEN_FRONTEND_ADDR": f"127.0.0.1:{COLORS['green'][1]}",
        }
        (ROOT / ".bluegreen" / "haproxy").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["haproxy", "-D", "-p", str(pidfile), "-f", str(ROOT / "haproxy" / "haproxy.cfg")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"[stack] haproxy started (Runtime API {SOCKET}, stats http://127.0.0.1:8404/stats)")
    api = RuntimeApi(SOCKET)

    def all_up() -> bool:
        rows = [
            r
            for r in api.show_stat()
            if r.backend in {"api_backend", "frontend_backend"}
            and r.server not in {"FRONTEND", "BACKEND"}
        ]
        return len(rows) == 4 and all(r.is_up for r in rows)

    _wait(all_up, 30, "HAProxy with blue and green UP")
    print("[stack] up: blue and green UP in HAProxy")


def down() -> None:
    for name in ("haproxy", *COLORS):
        pidfile = RUN / f"{name}.pid"
        if _alive(pidfile):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
            print(f"[stack] stopped {name}")
        pidfile.unlink(missing_ok=True)


def status() -> int:
    running = {name: _alive(RUN / f"{name}.pid") for name in ("haproxy", *COLORS)}
    print(" ".join(f"{k}={'running' if v else 'stopped'}" for k, v in running.items()))
    return 0 if all(running.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args()
    if args.action == "up":
        up()
    elif args.action == "down":
        down()
    else:
        return status()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
