"""The bundled local stack: shared services in Docker, HAProxy and Prometheus on this host.

The Docker stack's shared services (docker/docker-compose.blue-green.yml: PostgreSQL, Redis and
the Neo4j and Ollama stand-ins), HAProxy with the seed's ports (haproxy/haproxy.cfg),
Prometheus on 127.0.0.1:10200 (monitoring/prometheus.yml) and the dashboard drawing it on
http://127.0.0.1:10201/ (bluegreen dashboard). The colors are deployed by the gate
(pytest --deploy TAG). Idempotent.

    python scripts/local_stack.py up      # start what is not running, wait until healthy
    python scripts/local_stack.py down    # stop the dashboard, Prometheus, HAProxy and the
                                          # stack (data kept)
    python scripts/local_stack.py status

HAProxy runs on the host, not in a container: the same haproxy.cfg and environment variables
serve the tests and this stack, it reaches the colors through their published 127.0.0.1 ports
(a re-created container keeps its port, so no DNS re-resolution is needed), and its admin
socket stays a local file with mode 600. ``up`` refuses, before it starts anything, when another
HAProxy (another checkout's) already serves the configuration's ports or admin socket.

Prometheus runs on the host for the same reasons: Debian's package (scripts/setup), and it
scrapes HAProxy's exporter (127.0.0.1:8404/metrics) and each color's published port on this
host's loopback, which a container would reach only with the host's network; its data stays
in .bluegreen/local/prometheus across deploys.

Everything it starts can be moved, so that a second stack (the tests') runs beside this one:
the Compose project (BLUEGREEN_COMPOSE_PROJECT, as the settings name it; default sutazai) with
its published ports (the compose file's variables: POSTGRES_HOST_PORT, BLUE_API_PORT, ...),
HAProxy's addresses and admin socket (the BG_* variables of haproxy/haproxy.cfg), Prometheus
(BG_PROMETHEUS_LISTEN, default 127.0.0.1:10200; the targets are monitoring/prometheus.yml's),
the Pushgateway (BG_PUSHGATEWAY_LISTEN, default 127.0.0.1:9091) and the dashboard
(BG_DASHBOARD_LISTEN, default 127.0.0.1:10201; it draws this stack's Prometheus, with the
settings of bluegreen.toml: the history of its state_file, its [dashboard] series).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker.errors
from python_on_whales import DockerClient, DockerException

from pytest_bluegreen.contrib.services import ServiceSettings
from pytest_bluegreen.engines.compose import docker_client, wait_serving
from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.local.haproxy import Served, holder_of, prepare_server_state_file
from pytest_bluegreen.local.prometheus import (
    LocalDashboard,
    LocalPrometheus,
    LocalPrometheusError,
    LocalPushgateway,
)
from pytest_bluegreen.report.dashboard import DEFAULT_LISTEN
from pytest_bluegreen.settings import SettingsError
from pytest_bluegreen.settings.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".bluegreen" / "local"
COMPOSE_FILE = ROOT / "docker" / "docker-compose.blue-green.yml"
CONFIG = ROOT / "haproxy" / "haproxy.cfg"
PROJECT = os.environ.get("BLUEGREEN_COMPOSE_PROJECT") or "sutazai"
SHARED = ["postgres", "redis", "neo4j", "ollama"]
SOCKET = os.environ.get("BG_RUNTIME_SOCKET", "/var/run/haproxy/admin.sock")
PIDFILE = RUN / "haproxy.pid"
PROMETHEUS = LocalPrometheus(
    config=ROOT / "monitoring" / "prometheus.yml",
    storage=RUN / "prometheus",
    listen=os.environ.get("BG_PROMETHEUS_LISTEN") or "127.0.0.1:10200",
    pidfile=RUN / "prometheus.pid",
    log=RUN / "prometheus.log",
)
# the gate's own metrics (metrics_push_url = "http://127.0.0.1:9091"), scraped by Prometheus
PUSHGATEWAY = LocalPushgateway(
    config=ROOT / "monitoring" / "prometheus.yml",
    storage=RUN / "pushgateway",
    listen=os.environ.get("BG_PUSHGATEWAY_LISTEN") or "127.0.0.1:9091",
    pidfile=RUN / "pushgateway.pid",
    log=RUN / "pushgateway.log",
)

# bluegreen dashboard: the charts of this stack's Prometheus, with bluegreen.toml's settings
DASHBOARD = LocalDashboard(
    config=ROOT / "bluegreen.toml",
    storage=RUN,
    listen=os.environ.get("BG_DASHBOARD_LISTEN") or DEFAULT_LISTEN,
    pidfile=RUN / "dashboard.pid",
    log=RUN / "dashboard.log",
    prometheus=PROMETHEUS.url,
)


def _pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` when that process runs."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _compose() -> DockerClient:
    return DockerClient(compose_files=[COMPOSE_FILE], compose_project_name=PROJECT)


def preview_key() -> str | None:
    """The preview route's key as the checks send it: PREVIEW_KEY of the secrets.env the
    settings name (BLUEGREEN_SECRETS_FILE, secrets_file or env_dir in bluegreen.toml)."""
    try:
        # resolved as the checks resolve it (the shared services' settings are in the file)
        settings = resolve({}, os.environ, {}, ROOT, extra_groups=(ServiceSettings,))
        secrets = settings.env_files.secrets
        return read_env_file(secrets).get("PREVIEW_KEY")
    except SettingsError as exc:
        sys.exit(f"[stack] ERROR: {exc}")
    except OSError as exc:
        sys.exit(f"[stack] ERROR: cannot read the secrets file for PREVIEW_KEY: {exc}")


def haproxy_env() -> dict[str, str]:
    """HAProxy's environment: the caller's BG_* variables over the local stack's defaults."""
    # the settings' haproxy_state_file (.bluegreen/haproxy/server-state), unless moved
    state_file = ROOT / ".bluegreen" / "haproxy" / "server-state"
    preview = preview_key()
    return {
        **({"BG_PREVIEW_KEY": preview} if preview else {}),
        **os.environ,
        "BG_RUNTIME_SOCKET": SOCKET,
        "BG_SERVER_STATE_FILE": os.environ.get("BG_SERVER_STATE_FILE", str(state_file)),
        "BG_TLS_CERT": str(ROOT / "haproxy" / "certs" / "bluegreen.pem"),
        "BG_CHECK_INTER": "500ms",
    }


def refuse_a_second_haproxy(env: dict[str, str]) -> None:
    """Exit with one line when another process already serves an address of haproxy.cfg:
    a second HAProxy would share its ports (SO_REUSEPORT splits the traffic between the two)
    and take its admin socket over. This checkout's own HAProxy (the pid file's) is fine."""
    ours = _pid(PIDFILE)
    holder = holder_of(Served.by_config(CONFIG, env), ignore=[ours] if ours else [])
    if holder is None:
        return
    if holder.is_haproxy:
        advice = "stop it first (scripts/local_stack.py down in its checkout)"
    else:
        advice = "stop it, or move HAProxy's address (the BG_* variables of haproxy/haproxy.cfg)"
    sys.exit(f"[stack] refused: {holder.describe()}; {advice}")


def up() -> None:
    env = haproxy_env()
    refuse_a_second_haproxy(env)  # before anything starts
    RUN.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"[stack] shared services: compose up {' '.join(SHARED)} (waiting for healthy)")
    try:
        # no --wait: it waits for Docker's first health check, a calm interval away
        _compose().compose.up(SHARED, detach=True, quiet=True)
        client = docker_client()
    except DockerException as exc:
        sys.exit(f"[stack] ERROR: compose up failed: {(exc.stderr or str(exc)).strip()}")
    except docker.errors.DockerException as exc:
        sys.exit(f"[stack] ERROR: the Docker engine does not answer: {exc}")
    try:  # every container's own health check, run here until it passes
        waited = wait_serving(client, PROJECT, SHARED, timeout=180)
    finally:
        client.close()
    if not waited.serving:
        sys.exit(f"[stack] ERROR: not healthy within 180s: {', '.join(waited.brief())}")
    print(f"[stack] shared services healthy ({time.monotonic() - start:.1f}s)")
    start_haproxy(env)
    start_prometheus()
    start_dashboard()


def start_haproxy(env: dict[str, str]) -> None:
    if _pid(PIDFILE) is not None:
        print("[stack] haproxy already running")
        return
    Path(SOCKET).parent.mkdir(parents=True, exist_ok=True)
    # an empty state: no "Can't open global server state file" warning on the first start
    prepare_server_state_file(env["BG_SERVER_STATE_FILE"])
    subprocess.run(
        ["haproxy", "-D", "-p", str(PIDFILE), "-f", str(CONFIG)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stats = env.get("BG_STATS_BIND", "127.0.0.1:8404")
    print(
        f"[stack] haproxy started: Runtime API {SOCKET}, stats http://{stats}/stats, "
        f"metrics http://{stats}/metrics, API http://{env.get('BG_API_BIND', '127.0.0.1:20010')}, "
        f"frontend http://{env.get('BG_FRONTEND_BIND', '127.0.0.1:20011')}"
    )


def start_prometheus() -> None:
    try:
        gateway_pid, gateway_started = PUSHGATEWAY.start()
        pid, started = PROMETHEUS.start()
    except LocalPrometheusError as exc:
        sys.exit(f"[stack] ERROR: {exc}")
    state = "started" if gateway_started else "already running"
    print(f"[stack] pushgateway {state} (pid {gateway_pid}): {PUSHGATEWAY.url}")
    state = "started" if started else "already running"
    print(
        f"[stack] prometheus {state} (pid {pid}): {PROMETHEUS.url}, "
        f"config {PROMETHEUS.config.relative_to(ROOT)}"
    )


def start_dashboard() -> None:
    try:
        pid, started = DASHBOARD.start()
    except LocalPrometheusError as exc:
        sys.exit(f"[stack] ERROR: dashboard: {exc}")
    state = "started" if started else "already running"
    print(f"[stack] dashboard {state} (pid {pid}): {DASHBOARD.url}/")


def down() -> None:
    if DASHBOARD.stop():
        print("[stack] stopped the dashboard")
    if PROMETHEUS.stop():
        print("[stack] stopped prometheus")
    if PUSHGATEWAY.stop():
        print("[stack] stopped pushgateway")
    pid = _pid(PIDFILE)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        print("[stack] stopped haproxy")
    PIDFILE.unlink(missing_ok=True)
    try:
        _compose().compose.down(quiet=True)
    except DockerException as exc:
        sys.exit(f"[stack] ERROR: compose down failed: {(exc.stderr or str(exc)).strip()}")
    print(f"[stack] stopped the Docker stack {PROJECT} (PostgreSQL data volume kept)")


def status() -> int:
    running = [c.name for c in _compose().compose.ps() if c.state.running]
    haproxy = _pid(PIDFILE) is not None
    prometheus = PROMETHEUS.pid() is not None and PUSHGATEWAY.pid() is not None
    dashboard = DASHBOARD.pid() is not None
    print(
        f"haproxy={'running' if haproxy else 'stopped'} "
        f"prometheus={'running' if PROMETHEUS.pid() else 'stopped'} "
        f"pushgateway={'running' if PUSHGATEWAY.pid() else 'stopped'} "
        f"dashboard={'running' if dashboard else 'stopped'} "
        f"containers={','.join(running) or '-'}"
    )
    return 0 if haproxy and prometheus and dashboard and running else 1


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
