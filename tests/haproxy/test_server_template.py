"""Colors as ``server-template`` slots filled by DNS, as HAProxy runs in front of a Docker swarm
(``BG_REPLICAS`` in haproxy/haproxy.cfg): a real HAProxy resolving A records from a DNS stand-in
whose answers the tests change while it runs (replicas appearing, moving, going away), as
Docker's DNS answers ``tasks.<service>``. Each replica listens on its own loopback address.

A slot no replica fills is empty (``MAINT (resolution)``): it is neither live nor down, it takes
no traffic, and the switch still sets its weight, so a replica resolving into it later takes its
color's share: none on the idle color, its share on the live one. A revert gives empty slots
their weight back and never forces them into maintenance.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.sticky import CANARY_COOKIE, SLOT_COOKIES
from pytest_bluegreen.settings import resolve
from tests.support.cli import BLUEGREEN
from tests.support.dns import ReplicaDns
from tests.support.faults import STEP_HOOK
from tests.support.gate import CHECKS
from tests.support.stack import PORT_NAMES, ROOT, Backend, Stack, free_ports, wait_for

SLOTS = 3
FORCED_BITS = 0x01 | 0x04 | 0x08  # forced maint, config maint, forced drain


@dataclass
class Replicas:
    """Three stand-in replicas per color (blue v1.0.0, green v1.1.0), each on its own loopback
    address and the same port, and the DNS naming them."""

    dns: ReplicaDns
    backends: dict[str, list[Backend]]
    port: int

    def serve(self, color: str, *which: int) -> None:
        """DNS answers ``<color>.test`` with these replicas (by index) from now on."""
        self.dns.set(f"{color}.test", [self.backends[color][i].host for i in which])

    def host(self, color: str, index: int) -> str:
        return self.backends[color][index].host


def _shared_free_port(hosts: list[str]) -> int:
    """A port free on every one of these addresses."""
    for _ in range(20):
        port = free_ports(1)[0]
        probes: list[socket.socket] = []
        try:
            for host in hosts:
                probe = socket.socket()
                probes.append(probe)
                probe.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError("no port free on every replica address")


@pytest.fixture(scope="module")
def replicas(haproxy_available: str) -> Iterator[Replicas]:
    dns = ReplicaDns()
    hosts = {
        color: [f"127.0.0.{2 + offset + i}" for i in range(SLOTS)]
        for color, offset in (("blue", 0), ("green", SLOTS))
    }
    port = _shared_free_port([h for group in hosts.values() for h in group])
    started: dict[str, list[Backend]] = {"blue": [], "green": []}
    try:
        for color, version in (("blue", "v1.0.0"), ("green", "v1.1.0")):
            started[color] = [Backend.start(color, version, port, host) for host in hosts[color]]
        yield Replicas(dns, started, port)
    finally:
        for backend in (b for group in started.values() for b in group):
            backend.stop()
        dns.close()


@dataclass
class Templated:
    """HAProxy (the shipped configuration with ``BG_REPLICAS``) in front of the replicas."""

    stack: Stack
    replicas: Replicas
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def filled(self, color: str) -> dict[str, str]:
        """The color's filled slots and the replica address each resolved to."""
        return {
            row.server: row.raw["addr"].rpartition(":")[0]
            for row in self.stack.api().show_stat()
            if row.backend == "api_backend" and row.server.startswith(f"{color}-") and not row.empty
        }

    def wait_filled(self, color: str, *which: int) -> dict[str, str]:
        """Until HAProxy has exactly these replicas of ``color`` in slots, all UP."""
        want = {self.replicas.host(color, i) for i in which}
        api = self.stack.api()

        def settled() -> tuple[dict[str, str]] | None:  # a tuple: an empty color is settled too
            filled = self.filled(color)
            up = {r.server for r in api.show_stat() if r.backend == "api_backend" and r.is_up}
            if set(filled.values()) == want and set(filled) <= up:
                return (filled,)
            return None

        found: tuple[dict[str, str]] = wait_for(
            settled, 20, f"{color} slots filled by {want} (now {self.filled(color)})"
        )
        return found[0]

    def states(self) -> dict[str, tuple[int, int]]:
        """Every api_backend slot: (weight, raw admin state bits)."""
        return {
            s.server: (s.uweight, s.admin_state)
            for s in self.stack.api().servers_state("api_backend")
        }

    def write(self, *, hook: bool = False) -> None:
        (self.workdir / "bluegreen.toml").write_text(self.stack.settings_toml(slots=SLOTS))
        (self.workdir / "test_checks.py").write_text(CHECKS)
        (self.workdir / "conftest.py").write_text(STEP_HOOK if hook else "")

    def gate(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.write()
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def bluegreen(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.write()
        return subprocess.run(
            [*BLUEGREEN, *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def routed(self, count: int) -> list[str]:
        """The color answering each of ``count`` routed requests."""
        with requests.Session() as session:
            return [
                session.get(f"{self.stack.routed_url}/health", timeout=5).headers[
                    "X-Bluegreen-Color"
                ]
                for _ in range(count)
            ]


@pytest.fixture
def templated(tmp_path: Path, tls_cert: Path, replicas: Replicas) -> Iterator[Templated]:
    replicas.dns.clear()
    for backends in replicas.backends.values():
        for backend in backends:
            backend.reset()
    names = (f"{c}.test:{replicas.port}" for c in ("blue", "green"))
    blue_tasks, green_tasks = names
    addresses = {
        "BG_REPLICAS": str(SLOTS),
        "BG_DNS": f"127.0.0.1:{replicas.dns.port}",
        "BG_RESOLVE_INTERVAL": "100ms",
        "BG_DNS_HOLD": "200ms",
        "BG_BLUE_API_TASKS": blue_tasks,
        "BG_GREEN_API_TASKS": green_tasks,
        "BG_BLUE_FRONTEND_TASKS": blue_tasks,
        "BG_GREEN_FRONTEND_TASKS": green_tasks,
    }
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    blue, green = replicas.backends["blue"][0], replicas.backends["green"][0]
    stack = Stack(tmp_path, ports, blue, green, tls_cert, addresses)
    stack.haproxy.start(stack.runtime)
    try:
        yield Templated(stack, replicas, tmp_path)
    finally:
        stack.stop()


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_empty_slots_are_neither_live_nor_down_and_keep_their_weight(
    templated: Templated, replicas: Replicas
) -> None:
    replicas.serve("blue", 0, 1)
    replicas.serve("green", 0)
    templated.wait_filled("blue", 0, 1)
    templated.wait_filled("green", 0)

    status = templated.bluegreen("status", "--json")
    assert status.returncode == 0, _out(status)
    assert json.loads(status.stdout)["live"] == "blue"  # the empty third blue slot not counted

    result = templated.gate("--env", "green", "--switch")
    assert result.returncode == 0, _out(result)
    after = templated.states()
    assert {s: w for s, (w, _) in after.items()} == {
        **{f"blue-api{i}": 0 for i in range(1, SLOTS + 1)},  # the empty one retired too
        **{f"green-api{i}": 100 for i in range(1, SLOTS + 1)},  # the empty ones promoted too
    }
    assert [s for s, (_, bits) in after.items() if bits & FORCED_BITS] == []
    assert set(templated.routed(20)) == {"green"}

    # a replica resolving into the idle color takes none of the traffic
    replicas.serve("blue", 0, 1, 2)
    templated.wait_filled("blue", 0, 1, 2)
    assert set(templated.routed(30)) == {"green"}

    # a replica resolving into the live color takes its share
    replicas.serve("green", 0, 1)
    filled = templated.wait_filled("green", 0, 1)
    newcomer = next(s for s, port in filled.items() if port == replicas.host("green", 1))
    before = {r.server: r.stot for r in templated.stack.api().show_stat()}
    assert set(templated.routed(30)) == {"green"}
    now = {r.server: r.stot for r in templated.stack.api().show_stat()}
    assert now[newcomer] > before[newcomer]


def test_replicas_moving_slots_during_the_switch(templated: Templated, replicas: Replicas) -> None:
    replicas.serve("blue", 0, 1)
    replicas.serve("green", 0, 1)
    templated.wait_filled("blue", 0, 1)
    templated.wait_filled("green", 0, 1)
    templated.write(hook=True)
    gate = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=templated.workdir,
        env={
            **os.environ,
            "FAULT_STEP": "drain",
            "FAULT": "",
            "FAULT_DIR": str(templated.workdir),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: (templated.workdir / "at-step").exists() or gate.poll() is not None,
        60,
        "the gate to reach drain",
    )
    assert gate.poll() is None, gate.communicate()[0]
    # green promoted; now one replica of each color goes away and a new one takes another slot
    replicas.serve("green", 1, 2)
    replicas.serve("blue", 1, 2)
    templated.wait_filled("green", 1, 2)
    templated.wait_filled("blue", 1, 2)
    (templated.workdir / "go").touch()
    out, _ = gate.communicate(timeout=120)
    assert gate.returncode == 0, out

    after = templated.states()
    assert {s: w for s, (w, _) in after.items()} == {
        **{f"blue-api{i}": 0 for i in range(1, SLOTS + 1)},
        **{f"green-api{i}": 100 for i in range(1, SLOTS + 1)},
    }
    assert set(templated.routed(30)) == {"green"}
    status = json.loads(templated.bluegreen("status", "--json").stdout)
    assert status["live"] == "green"


def test_a_failed_switch_gives_empty_slots_their_weight_back_without_forcing_maint(
    templated: Templated, replicas: Replicas
) -> None:
    replicas.serve("blue", 0, 1)
    replicas.serve("green", 0)
    templated.wait_filled("blue", 0, 1)
    templated.wait_filled("green", 0)
    before = templated.states()
    empty = [s for s, (_, bits) in before.items() if bits & 0x20]
    assert sorted(s.partition("-")[0] for s in empty) == ["blue", "green", "green"]

    # the routed check after promoting finds a green replica claiming to be blue: revert
    replicas.backends["green"][0].control(claim_color="blue")
    result = templated.gate("--env", "green", "--switch")
    assert result.returncode == 8, _out(result)  # the routed verify finds the claim: reverted
    assert "previous server states restored" in result.stdout
    after = templated.states()
    assert {s: w for s, (w, _) in after.items()} == {s: w for s, (w, _) in before.items()}
    assert [s for s, (_, bits) in after.items() if bits & FORCED_BITS] == []
    assert set(templated.routed(20)) == {"blue"}


def test_a_color_whose_every_slot_is_empty_is_down(
    templated: Templated, replicas: Replicas
) -> None:
    replicas.serve("blue", 0)
    replicas.serve("green")
    templated.wait_filled("blue", 0)
    templated.wait_filled("green")
    result = templated.bluegreen("switch-to", "green", "--force")
    assert result.returncode != 0, _out(result)
    assert "every slot empty: no replica resolved" in _out(result)
    assert set(templated.routed(10)) == {"blue"}


def test_init_reads_the_slots_haproxy_runs_and_the_gate_runs_dry(
    templated: Templated, replicas: Replicas
) -> None:
    """``bluegreen init`` on the shipped configuration in its Swarm mode (BG_REPLICAS set, in
    HAProxy's environment): the servers it writes are every slot HAProxy's Runtime API lists
    for the two colors, and its dry run of the generated checks passes on green without
    switching anything."""
    replicas.serve("blue", 0, 1)
    replicas.serve("green", 0, 1)
    templated.wait_filled("blue", 0, 1)
    templated.wait_filled("green", 0, 1)
    before = templated.states()
    project = templated.workdir / "project"
    result = subprocess.run(
        [*BLUEGREEN, "init", "--haproxy-config", str(ROOT / "haproxy" / "haproxy.cfg"),
         "--dir", str(project)],
        env={**os.environ, **templated.stack.haproxy.env, "PYTEST_ADDOPTS": ""},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, _out(result)
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert "bluegreen: green is idle (HAProxy sends the traffic to blue)" in lines, lines
    assert any(
        "SWITCH: dry run: would switch because 1 check(s) for green passed" in line
        for line in lines
    ), lines
    settings = resolve({}, {}, {}, project)
    runs = {
        f"{s.backend}/{s.server}"
        for s in templated.stack.api().servers_state()
        if s.backend in {"api_backend", "frontend_backend"}
    }
    written = {str(ref) for color in ("blue", "green") for ref in settings.topology.servers(color)}
    assert written == runs
    assert len(written) == 4 * SLOTS
    assert templated.states() == before  # a dry run


def test_sticky_users_keep_their_slot_and_spread_over_the_replicas(
    templated: Templated, replicas: Replicas, tls_cert: Path
) -> None:
    """A canary on slots (haproxy/sticky.py): each backend's own dynamic cookie names a slot,
    so a sticky client keeps one replica per backend through the TLS frontend (its API and
    its frontend cookies do not overwrite each other), and sticky clients spread over every
    filled slot as the weights do (one color's cookie would pile them onto its first slot);
    off, a client holding both cookies is balanced again."""
    for color in ("blue", "green"):
        replicas.serve(color, 0, 1)
        templated.wait_filled(color, 0, 1)
    api = templated.stack.api()

    def frontends_up() -> bool:
        rows = [
            r
            for r in api.show_stat()
            if r.backend == "frontend_backend" and r.server != "BACKEND" and not r.empty
        ]
        return len(rows) == 4 and all(r.is_up for r in rows)

    wait_for(frontends_up, 20, "four frontend_backend slots filled and UP")
    for state in api.servers_state():
        if state.backend in {"api_backend", "frontend_backend"}:
            api.set_weight(state.ref, 50)  # a 50/50 canary, empty slots included
    api.set_sticky(True)
    base = f"https://127.0.0.1:{templated.stack.ports['https']}"

    def served(session: requests.Session, path: str) -> str:
        response = session.get(f"{base}{path}", timeout=5)
        assert response.status_code == 200, response.text[:200]
        return response.headers["X-Bluegreen-Server"]  # backend/slot address, per answer

    firsts: dict[str, set[str]] = {"/api/echo": set(), "/": set()}
    for _ in range(8):
        with requests.Session() as session:
            session.trust_env = False
            session.verify = str(tls_cert)
            first = {path: served(session, path) for path in firsts}
            for _ in range(5):
                for path, server in first.items():
                    assert served(session, path) == server, path
            assert set(session.cookies.keys()) == {*SLOT_COOKIES.values(), CANARY_COOKIE}
            for path, server in first.items():
                firsts[path].add(server)
    for path, seen in firsts.items():
        assert len(seen) == 4, (path, seen)  # every filled slot, both colors

    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(tls_cert)
        served(session, "/api/echo")
        served(session, "/")
        api.set_sticky(False)
        assert len({served(session, "/api/echo") for _ in range(8)}) == 4
        assert set(session.cookies.keys()) == {*SLOT_COOKIES.values(), CANARY_COOKIE}  # held


def test_slot_cookies_from_an_earlier_canary_count_for_nothing(
    templated: Templated, replicas: Replicas, tls_cert: Path
) -> None:
    """Users given green slots' cookies in an earlier canary (aborted: persistence off with
    the cookies held) come back at the next one, green at 5: the weights place them, each is
    given the new canary's id and its slots' fresh cookies, and keeps those slots."""
    for color in ("blue", "green"):
        replicas.serve(color, 0)
        templated.wait_filled(color, 0)
    api = templated.stack.api()
    base = f"https://127.0.0.1:{templated.stack.ports['https']}"
    paths = ("/api/echo", "/")
    names = (SLOT_COOKIES["api_backend"], SLOT_COOKIES["frontend_backend"])  # the paths'

    def weigh(blue: int, green: int) -> None:
        for state in api.servers_state():
            if state.backend in SLOT_COOKIES:
                api.set_weight(state.ref, blue if state.server.startswith("blue-") else green)

    def session() -> requests.Session:
        made = requests.Session()
        made.trust_env = False
        made.verify = str(tls_cert)
        return made

    def colors(user: requests.Session) -> tuple[str, ...]:
        answers = [user.get(f"{base}{path}", timeout=5) for path in paths]
        assert all(a.status_code == 200 for a in answers), [a.text[:200] for a in answers]
        return tuple(a.headers["X-Bluegreen-Color"] for a in answers)

    weigh(0, 100)
    api.set_sticky(True)
    with session() as earlier:
        assert colors(earlier) == ("green", "green")
        held = dict(earlier.cookies)
    assert set(held) == {*SLOT_COOKIES.values(), CANARY_COOKIE}
    api.set_sticky(False)

    weigh(95, 5)
    api.set_sticky(True)
    current = api.sticky_id()
    users = [session() for _ in range(20)]
    try:
        for user in users:
            for name, value in held.items():
                user.cookies.set(name, value, domain="127.0.0.1", path="/")
        got = [colors(user) for user in users]
        greens = sum(c.count("green") for c in got)
        assert greens <= 4, got  # 5% of 40 answers is 2; all 40 before the ids
        for user, first in zip(users, got, strict=True):
            assert user.cookies.get(CANARY_COOKIE) == current
            for name, color in zip(names, first, strict=True):  # a blue slot's, given now
                assert (user.cookies.get(name) == held[name]) is (color == "green"), name
            assert colors(user) == first  # a user of this canary now: it stays
    finally:
        for user in users:
            user.close()
