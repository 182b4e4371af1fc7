"""The bundled local stack: shared services in Docker, HAProxy on this host.

The Docker stack's shared services (docker/docker-compose.blue-green.yml: PostgreSQL, Redis and
the Neo4j and Ollama stand-ins) and HAProxy with the seed's ports (haproxy/haproxy.cfg). The
colors are deployed by the gate (pytest --deploy TAG). Idempotent.

    python scripts/local_stack.py up      # start what is not running, wait until healthy
    python scripts/local_stack.py down    # stop HAProxy and the stack (data volume kept)
    python scripts/local_stack.py status

HAProxy runs on the host, not in a container: the same haproxy.cfg and environment variables
serve the tests and this stack, it reaches the colors through their published 127.0.0.1 ports
(a re-created container keeps its port, so no DNS re-resolution is needed), and its admin
socket stays a local file with mode 600.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from python_on_whales import DockerClient, DockerException

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".bluegreen" / "local"
COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"
SHARED = ["postgres", "redis", "neo4j", "ollama"]
SOCKET = "/var/run/haproxy/admin.sock"
PIDFILE = RUN / "haproxy.pid"


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


def _compose() -> DockerClient:
    return DockerClient(compose_files=[COMPOSE_FILE], compose_project_name="sutazai")


def up() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"[stack] shared services: compose up {' '.join(SHARED)} (waiting for healthy)")
    try:
        _compose().compose.up(SHARED, detach=True, wait=True, wait_timeout=180, quiet=True)
    except DockerException as exc:
        sys.exit(f"[stack] ERROR: compose up failed: {(exc.stderr or str(exc)).strip()}")
    print(f"[stack] shared services healthy ({time.monotonic() - start:.1f}s)")
    if _alive(PIDFILE):
        print("[stack] haproxy already running")
        return
    Path(SOCKET).parent.mkdir(parents=True, exist_ok=True)
    # the settings' haproxy_state_file (.bluegreen/haproxy/server-state), unless moved
    state_file = Path(
        os.environ.get("BG_SERVER_STATE_FILE", ROOT / ".bluegreen" / "haproxy" / "server-state")
    )
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.touch(exist_ok=True)  # an empty one: no "can't open" warning on the first start
    env = {
        **os.environ,
        "BG_RUNTIME_SOCKET": SOCKET,
        "BG_SERVER_STATE_FILE": str(state_file),
        "BG_TLS_CERT": str(ROOT / "haproxy" / "certs" / "bluegreen.pem"),
        "BG_CHECK_INTER": "500ms",
    }
    subprocess.run(
        ["haproxy", "-D", "-p", str(PIDFILE), "-f", str(ROOT / "haproxy" / "haproxy.cfg")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"[stack] haproxy started: Runtime API {SOCKET}, stats http://127.0.0.1:8404/stats, "
        "API http://127.0.0.1:20010, frontend http://127.0.0.1:20011"
    )


def down() -> None:
    if _alive(PIDFILE):
        os.kill(int(PIDFILE.read_text().split()[0]), signal.SIGTERM)
        print("[stack] stopped haproxy")
    PIDFILE.unlink(missing_ok=True)
    try:
        _compose().compose.down(quiet=True)
    except DockerException as exc:
        sys.exit(f"[stack] ERROR: compose down failed: {(exc.stderr or str(exc)).strip()}")
    print("[stack] stopped the Docker stack (PostgreSQL data volume kept)")


def status() -> int:
    running = [c.name for c in _compose().compose.ps() if c.state.running]
    haproxy = _alive(PIDFILE)
    print(f"haproxy={'running' if haproxy else 'stopped'} containers={','.join(running) or '-'}")
    return 0 if haproxy and running else 1


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
