"""The bake while someone else acts on the same HAProxy, against a real HAProxy in front of two
real backends: a concurrent ``bluegreen rollback`` (the gate holds the lock through its bake:
refused, exit 7, the bake untouched) and a change made outside the lock (someone sets a
server's weight or state by hand through the Runtime API mid-bake)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef
from pytest_bluegreen.haproxy.instances import Haproxies, Instance
from pytest_bluegreen.judge.bake import ServerWatch
from pytest_bluegreen.switch.journal import read_journal
from tests.support.bake import BAKE, POST, BackgroundGate
from tests.support.cli import BLUEGREEN
from tests.support.gate import CHECKS, outcomes, prepare, verdict
from tests.support.stack import GREEN_LIVE, Stack, StackFactory


@pytest.fixture
def baking(pytester: pytest.Pytester, stack: Stack) -> Iterator[Callable[[float], BackgroundGate]]:
    """``baking(seconds)``: the gate started on ``stack`` (0.5 s intervals), killed after the
    test if it still runs."""
    prepare(pytester, stack, CHECKS + POST, **BAKE)
    started: list[BackgroundGate] = []

    def start(seconds: float) -> BackgroundGate:
        started.append(BackgroundGate(pytester.path, seconds))
        return started[-1]

    yield start
    for gate in started:
        gate.kill()


def bluegreen(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, "--checks", ".", *args],
        cwd=folder, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_rollback_during_the_bake_is_refused_and_the_bake_goes_on(
    pytester: pytest.Pytester, stack: Stack, baking: Callable[[float], BackgroundGate]
) -> None:
    """The gate holds its lock through the bake: ``bluegreen rollback`` (checked: its pytest
    child's gate) and ``bluegreen rollback --force`` (in the command) are refused, and the
    bake goes on judging green, every interval passed; then Ctrl-C ends it (a long bake, so
    that it outlasts the two commands however slow the machine)."""
    gate = baking(120)
    gate.wait_for_line("bluegreen: bake 1/")
    holder = next(stack.lock_dir.iterdir()).read_text().strip()
    assert holder.startswith(f"pid {gate.proc.pid} ")
    for how in ([], ["--force"]):
        refused = bluegreen(pytester.path, "rollback", *how)
        said = refused.stdout + refused.stderr
        assert refused.returncode == 7, said
        assert f"another gate holds {stack.lock_dir}" in said, said
        assert stack.served_color() == "green"
    gate.wait_for_line("bluegreen: bake ")  # an interval ended after both were refused
    gate.proc.send_signal(signal.SIGINT)
    code, out = gate.finish()
    assert code == 2, out
    assert "traffic stays on green (switched and verified)" in out
    timeline = verdict(pytester)["bake"]["timeline"]
    assert len(timeline) >= 2
    assert [i["verdict"] for i in timeline] == ["passed"] * len(timeline)
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["switched"]
    assert stack.live_weights() == GREEN_LIVE


# someone acting on HAProxy by hand (socat, the stats page) while the gate bakes
BY_HAND = {
    # blue back at full weight: the traffic is split between the two builds
    "split": (ServerRef("api_backend", "blue-api"), "weight", "100"),
    # green drained: nothing takes new requests, the post checks meet 503
    "drained": (ServerRef("api_backend", "green-api"), "state", "drain"),
}


@pytest.mark.parametrize("change", sorted(BY_HAND))
def test_a_change_made_outside_the_lock_stops_the_bake_and_is_not_undone(
    pytester: pytest.Pytester, stack: Stack, baking: Callable[[float], BackgroundGate], change: str
) -> None:
    """What the bake measures after such a change is not the switched build taking the
    traffic: judging it would blame (or clear) the build for someone else's change, and
    switching back would undo, unasked, what a person did by hand (an incident?) from states
    that are no longer the switch's. The bake stops at the interval's end, judges nothing more,
    switches nothing back, says what changed; exit 6, the switch's history entry stands
    (before, the bake switched back 'from (none)' and exited 11: a failed bake of green)."""
    ref, what, value = BY_HAND[change]
    gate = baking(30)
    gate.wait_for_line("bluegreen: bake 1/")
    answer = stack.api().execute(f"set server {ref} {what} {value}")
    assert answer.strip() == ""
    code, out = gate.finish()
    assert code == ExitCode.INCONCLUSIVE, out
    before = "0 ready" if change == "split" else "100 ready"
    after = "100 ready" if change == "split" else "100 drain"
    said = f"HAProxy's servers were changed outside the gate ({ref} weight {before} -> {after})"
    assert said in out
    assert "nothing switched back over that change; traffic is where it was set" in out
    assert "rolled back" not in out
    timeline = verdict(pytester)["bake"]["timeline"]
    assert timeline[-1]["verdict"] == "inconclusive"
    assert said in timeline[-1]["reason"]
    assert all(i["verdict"] == "passed" for i in timeline[:-1])
    assert len(timeline) < 60  # stopped, not baked to the end
    expected = dict(GREEN_LIVE)
    expected[ref.server] = (100, "ready") if change == "split" else (100, "drain")
    assert stack.live_weights() == expected  # as the person left it
    assert outcomes(stack) == ["switched"]
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert not journal.open


def test_the_watch_names_the_instance_whose_server_changed(
    stack_factory: StackFactory,
) -> None:
    stacks = {name: stack_factory(name) for name in ("lb-1", "lb-2")}
    group = Haproxies(
        [
            Instance(name, RuntimeApiAddress.parse(s.runtime), s.routed_url)
            for name, s in stacks.items()
        ]
    )
    servers = [ServerRef("api_backend", f"{c}-api") for c in ("blue", "green")]
    watch = ServerWatch(group, servers)
    assert watch.changed() == ""
    stacks["lb-2"].api().set_state(servers[1], AdminState.MAINT)
    assert watch.changed() == "lb-2: api_backend/green-api weight 0 ready -> 0 maint"
