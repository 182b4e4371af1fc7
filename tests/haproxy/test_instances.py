"""Several HAProxy instances switched as one: all move, or none does.

Three real HAProxy processes (lb-1..3, loopback ports, each its own Runtime API and
server-state file) in front of the same two colors; a bounded load spread over all three
routed URLs in every case where no instance is stopped. Six, for the group's threads: every
step on all six at once, a switch and a revert.
"""

from __future__ import annotations

import contextlib
import gc
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef, ServerState
from pytest_bluegreen.haproxy.instances import InstanceFailed
from pytest_bluegreen.haproxy.lock import lock_for
from pytest_bluegreen.haproxy.lockfile import GateLock, GroupLock, LockHeld
from pytest_bluegreen.record.history import load_reconcile
from pytest_bluegreen.settings import Settings, SettingsError, resolve
from pytest_bluegreen.switch.consistency import group_problems
from pytest_bluegreen.switch.journal import read_journal
from tests.support.fastcolors import FastColors
from tests.support.instances import NAMES, Group, SpreadLoad, names
from tests.support.stack import BLUE_LIVE, GREEN_LIVE, StackFactory, wait_for


def _weights(group: Group) -> dict[str, dict[str, tuple[int, str]]]:
    return group.weights()


def _all(state: dict[str, tuple[int, str]]) -> dict[str, dict[str, tuple[int, str]]]:
    return dict.fromkeys(NAMES, state)


# --- settings --------------------------------------------------------------------------------

INSTANCES = """
[instances.lb-1]
runtime_api = "127.0.0.1:9101"
routed_api_url = "http://127.0.0.1:20110"
[instances.lb-2]
runtime_api = "127.0.0.1:9102"
routed_api_url = "http://127.0.0.1:20120"
haproxy_state_file = "lb-2.state"
"""


def _resolve(tmp_path: Path, text: str, **cli: object) -> Settings:
    (tmp_path / "bluegreen.toml").write_text(text)
    return resolve(cli, {}, {}, tmp_path)


def test_one_instance_by_default(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, 'runtime_api = "127.0.0.1:9999"\n')
    [only] = settings.instances
    assert (only.name, str(only.runtime_api)) == ("haproxy", "127.0.0.1:9999")
    assert only.routed_api_url == "http://127.0.0.1:20010"


def test_instances_tables(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, INSTANCES)
    lb1, lb2 = settings.instances
    assert [str(i.runtime_api) for i in (lb1, lb2)] == ["127.0.0.1:9101", "127.0.0.1:9102"]
    assert lb2.state_file == tmp_path / "lb-2.state"
    # the first instance stands for "HAProxy" where one is meant (fixtures, the probe)
    assert str(settings.haproxy.runtime_api) == "127.0.0.1:9101"
    assert settings.switching.routed_api_url == "http://127.0.0.1:20110"
    assert settings.haproxies().several


def test_an_instance_over_tls_takes_its_own_or_the_top_level_files(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem", "ca.pem", "lb2-cert.pem"):
        (tmp_path / name).write_text("-")
    tls = 'runtime_api_cert = "cert.pem"\nruntime_api_key = "key.pem"\nruntime_api_ca = "ca.pem"\n'
    remote = (
        '[instances.lb-3]\nruntime_api = "tls://10.0.0.13:9999"\n'
        'routed_api_url = "http://127.0.0.1:20130"\nruntime_api_cert = "lb2-cert.pem"\n'
    )
    settings = _resolve(tmp_path, tls + INSTANCES + remote)
    lb3 = settings.instances[2]
    assert lb3.tls is not None
    assert (lb3.tls.cert, lb3.tls.key, lb3.tls.ca) == (
        tmp_path / "lb2-cert.pem",
        tmp_path / "key.pem",
        tmp_path / "ca.pem",
    )
    assert settings.instances[0].tls is None  # loopback TCP: no TLS
    with pytest.raises(SettingsError, match="runtime_api_cert is required"):
        _resolve(tmp_path, INSTANCES + remote.replace('runtime_api_cert = "lb2-cert.pem"\n', ""))


@pytest.mark.parametrize(
    ("text", "cli", "message"),
    [
        (INSTANCES + '[instances.lb-3]\nruntime_api = "127.0.0.1:9103"\n', {},
         "[instances.lb-3] needs routed_api_url"),
        (INSTANCES + '[instances.lb-3]\nruntime_api = "127.0.0.1:9101"\n'
         'routed_api_url = "http://127.0.0.1:1"\n', {}, "two instances share runtime_api"),
        (INSTANCES + '[instances.lb-3]\nruntime_api = "10.0.0.5:9999"\n'
         'routed_api_url = "http://127.0.0.1:1"\n', {}, "[instances.lb-3] runtime_api"),
        (INSTANCES + '[instances.lb-3]\nport = 1\n', {}, "unknown key 'port'"),
        (INSTANCES + '[instances."a b"]\nruntime_api = "127.0.0.1:1"\n', {}, "not a plain name"),
        ('runtime_api = "127.0.0.1:9100"\n' + INSTANCES, {}, "names one HAProxy"),
        ("instances = 3\n", {}, "instances must be tables"),
        (INSTANCES, {"allow_missing_instance": "lb-9"}, "'lb-9' is not an instance"),
    ],
)  # fmt: skip
def test_bad_instances_are_one_line(
    tmp_path: Path, text: str, cli: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _resolve(tmp_path, text, **cli)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_group_lock_is_all_or_none(tmp_path: Path) -> None:
    locks = [lock_for(tmp_path, f"127.0.0.1:{port}") for port in (9101, 9102, 9103)]
    elsewhere = GateLock(locks[1].path)
    elsewhere.acquire()  # another gate holds lb-2's lock
    group = GroupLock([lock_for(tmp_path, f"127.0.0.1:{p}") for p in (9103, 9101, 9102)])
    with pytest.raises(LockHeld):
        group.acquire()
    assert not any(lock.held for lock in group.locks)  # the ones taken were let go
    elsewhere.release()
    with group.hold():
        assert group.held
        with pytest.raises(LockHeld):
            GateLock(locks[0].path).acquire()
    assert not group.held


def _states(weights: dict[str, int]) -> dict[ServerRef, ServerState]:
    states = {}
    for name, weight in weights.items():
        backend = "api_backend" if name.endswith("-api") else "frontend_backend"
        states[ServerRef(backend, name)] = ServerState(backend, name, "-", 2, 0, weight, 100, 0, 0)
    return states


def test_group_problems_name_what_differs(tmp_path: Path) -> None:
    settings = _resolve(tmp_path, INSTANCES)
    blue = {"blue-api": 100, "blue-frontend": 100, "green-api": 0, "green-frontend": 0}
    half = {**blue, "blue-frontend": 50}
    every = {"lb-1": _states(blue), "lb-2": _states(half)}
    problems = group_problems(every, settings.haproxies(), settings.topology)
    assert problems == [
        "frontend_backend/blue-frontend: weight 50 ready on lb-2, weight 100 ready on lb-1"
    ]
    green = {"blue-api": 0, "blue-frontend": 0, "green-api": 100, "green-frontend": 100}
    every["lb-2"] = _states(green)
    problems = group_problems(every, settings.haproxies(), settings.topology)
    assert problems[0] == "instances disagree: lb-1 blue, lb-2 green"
    assert len(problems) == 5  # and each of the four servers


# --- three real HAProxy processes ------------------------------------------------------------


@pytest.fixture
def group(stack_factory: StackFactory) -> Iterator[Group]:
    started = Group.start(stack_factory)
    yield started
    started.close()


def _out(result: object) -> str:
    return f"{getattr(result, 'stdout', '')}{getattr(result, 'stderr', '')}"[-5000:]


def _no_failures(load: SpreadLoad) -> int:
    results = load.finish()
    failed = [f"{s.kind}: {s.error or s.status}" for r in results for s in r.failed]
    assert failed == [], failed
    return sum(r.count for r in results)


@pytest.mark.timing  # not one failed request under the load
def test_a_clean_switch_moves_all_three(group: Group) -> None:
    load = SpreadLoad(list(group.stacks.values()))
    load.wait_started()
    result = group.gate("--env", "green", "--switch")
    assert result.returncode == 0, _out(result)
    assert "every instance's routed URL (lb-1, lb-2, lb-3)" in result.stdout
    assert _weights(group) == _all(GREEN_LIVE)
    assert group.served() == dict.fromkeys(NAMES, "green")
    assert [e["outcome"] for e in group.history()] == ["switched"]
    entry = read_journal(group.main.journal_file)
    assert entry is not None
    assert not entry.open
    assert [m.name for m in entry.members] == list(NAMES)
    for stack in group.stacks.values():  # each instance's own server-state file
        assert "green-api" in stack.server_state_file.read_text()
    assert _no_failures(load) > 0

    status = group.bluegreen("status", "--json")
    assert status.returncode == 0, _out(status)
    shown = json.loads(status.stdout)
    assert {n: i["live"] for n, i in shown["instances"].items()} == dict.fromkeys(NAMES, "green")
    export = json.loads(group.bluegreen("export-state").stdout)
    assert sorted(export["instances"]) == list(NAMES)


@pytest.mark.timing  # not one failed request under the load
def test_one_instance_failing_mid_apply_reverts_all_three(group: Group) -> None:
    proxy = group.proxy("lb-2")
    load = SpreadLoad(list(group.stacks.values()))
    load.wait_started()
    gate = group.paused_gate("drain", "--env", "green", "--switch")
    # green was promoted on all three; lb-2 refuses the first drain command
    proxy.fail_prefix = b"set server"
    proxy.fail_next.set()
    group.go()
    out, _ = gate.communicate(timeout=120)
    assert gate.returncode == 8, out
    assert proxy.failed
    assert proxy.failed[0].startswith("set server")
    assert "lb-2:" in out
    assert "previous server states restored on every instance" in out
    assert _weights(group) == _all(BLUE_LIVE)  # every instance exactly as before
    assert group.served() == dict.fromkeys(NAMES, "blue")
    assert [e["outcome"] for e in group.history()] == ["reverted"]
    entry = read_journal(group.main.journal_file)
    assert entry is not None
    assert not entry.open
    assert _no_failures(load) > 0


@pytest.mark.timing  # not one failed request under the load
def test_one_instance_reloaded_mid_switch_is_detected(group: Group) -> None:
    load = SpreadLoad(list(group.stacks.values()))
    load.wait_started()
    gate = group.paused_gate("drain", "--env", "green", "--switch")
    group.stacks["lb-3"].haproxy.reload(group.stacks["lb-3"].runtime)
    group.go()
    out, _ = gate.communicate(timeout=120)
    assert gate.returncode == 8, out
    assert "lb-3: HAProxy" in out
    assert "reloaded or restarted" in out
    assert _weights(group) == _all(BLUE_LIVE)
    assert [e["outcome"] for e in group.history()] == ["reverted"]
    results = load.finish()
    # HAProxy 2.6 closes idle keep-alive connections on a soft reload
    # (see tests/switch/test_faults.py)
    failed = [f"{s.kind}: {s.error or s.status}" for r in results for s in r.failed]
    assert all(f.startswith("keepalive-") for f in failed), failed


@pytest.mark.timing  # not one failed request under the load
def test_an_instance_out_of_line_is_refused(group: Group) -> None:
    lb2 = group.stacks["lb-2"].api()  # someone switched lb-2 by hand
    for server, weight in (("green", 100), ("blue", 0)):
        for backend, suffix in (("api_backend", "api"), ("frontend_backend", "frontend")):
            lb2.execute(f"set server {backend}/{server}-{suffix} weight {weight}")
    load = SpreadLoad(list(group.stacks.values()))
    load.wait_started()
    result = group.gate("--env", "green", "--switch")
    assert result.returncode == 7, _out(result)
    assert "instances disagree: lb-1 blue, lb-2 green, lb-3 blue" in _out(result)
    assert "bluegreen recover" in _out(result)
    assert group.lives() == {"lb-1": "blue", "lb-2": "green", "lb-3": "blue"}  # nothing moved
    status = group.bluegreen("status")
    assert status.returncode == 1, _out(status)
    assert "instances disagree: lb-1 blue, lb-2 green, lb-3 blue" in status.stdout

    recovered = group.bluegreen("recover", "--to", "blue")
    assert recovered.returncode == 0, _out(recovered)
    assert _weights(group) == _all(BLUE_LIVE)
    assert group.bluegreen("status").returncode == 0
    assert _no_failures(load) > 0


@pytest.mark.timing  # not one failed request under the load
def test_recover_after_a_crash_restores_every_instance(group: Group) -> None:
    load = SpreadLoad(list(group.stacks.values()))
    load.wait_started()
    gate = group.paused_gate("drain", "--env", "green", "--switch")
    gate.kill()  # SIGKILL after green was promoted on all three
    gate.wait()
    entry = read_journal(group.main.journal_file)
    assert entry is not None
    assert entry.open
    assert [m.name for m in entry.members] == list(NAMES)
    recovered = group.bluegreen("recover")
    assert recovered.returncode == 0, _out(recovered)
    assert "on every instance (lb-1, lb-2, lb-3)" in recovered.stdout
    assert _weights(group) == _all(BLUE_LIVE)
    assert [e["outcome"] for e in group.history()] == ["recovered"]
    assert _no_failures(load) > 0


def test_recover_completes_on_every_instance_a_switch_killed_past_verify(group: Group) -> None:
    gate = group.paused_gate("idle", "--env", "green", "--switch")
    gate.kill()  # SIGKILL past the point of no return: green verified through all three
    out, _ = gate.communicate()
    assert (group.workdir / "at-step").exists(), out
    lb2 = group.stacks["lb-2"]
    lb2.haproxy.reload(lb2.runtime)  # meanwhile lb-2 reloaded its server-state file: blue
    assert group.lives()["lb-2"] == "blue"
    recovered = group.bluegreen("recover")
    assert recovered.returncode == 0, _out(recovered)
    assert "completed the switch blue -> green cut off after promote, drain, verify, " in (
        recovered.stdout
    )
    assert "on every instance (lb-1, lb-2, lb-3)" in recovered.stdout
    assert _weights(group) == _all(GREEN_LIVE)
    assert [e["outcome"] for e in group.history()] == ["recovered"]
    for stack in group.stacks.values():  # every server-state file saved
        stack.haproxy.reload(stack.runtime)
    assert _weights(group) == _all(GREEN_LIVE)


@pytest.mark.timing  # not one failed request under the load
def test_a_missing_instance_is_refused_then_allowed_and_brought_in_line(group: Group) -> None:
    lb3 = group.stacks["lb-3"]
    lb3.stop()  # down for maintenance
    refused = group.gate("--env", "green", "--switch")
    assert refused.returncode == 7, _out(refused)
    assert "lb-3" in _out(refused)
    assert "switched" not in [e["outcome"] for e in group.history()]

    present = [group.stacks["lb-1"], group.stacks["lb-2"]]
    load = SpreadLoad(present)
    load.wait_started()
    allowed = group.gate("--env", "green", "--switch", "--allow-missing-instance", "lb-3")
    assert allowed.returncode == 0, _out(allowed)
    assert "lb-3 left out (missing)" in allowed.stdout
    record = load_reconcile(group.main.state_file)
    assert record is not None
    assert (record.instances, record.color) == (("lb-3",), "green")
    assert {n: s.served_color() for n, s in (("lb-1", present[0]), ("lb-2", present[1]))} == {
        "lb-1": "green",
        "lb-2": "green",
    }
    status = group.bluegreen("status")
    assert status.returncode == 1
    assert "UNREACHABLE" in status.stdout

    lb3.start()  # back, with its own server-state file: still blue
    assert group.lives()["lb-3"] == "blue"
    recovered = group.bluegreen("recover")
    assert recovered.returncode == 0, _out(recovered)
    assert "lb-3 brought in line" in recovered.stdout
    assert _weights(group) == _all(GREEN_LIVE)
    assert load_reconcile(group.main.state_file) is None
    assert group.bluegreen("status").returncode == 0
    assert _no_failures(load) > 0
    lb3.haproxy.reload(lb3.runtime)  # its server-state file was saved: a reload keeps green
    assert group.lives()["lb-3"] == "green"

    # again, and this time the next gate brings it in line before it switches
    lb3.stop()
    back = group.gate("--env", "blue", "--switch", "--allow-missing-instance", "lb-3")
    assert back.returncode == 0, _out(back)
    lb3.start()
    wait_for(lambda: group.lives()["lb-3"] == "green", 10, "lb-3 to come back as it left")
    again = group.gate("--env", "green", "--switch")
    assert again.returncode == 0, _out(again)
    assert "lb-3 brought in line: blue live" in again.stdout
    assert _weights(group) == _all(GREEN_LIVE)
    outcomes = [e["outcome"] for e in group.history()]
    assert outcomes[-2:] == ["recovered", "switched"]


# --- the group's threads ---------------------------------------------------------------------


def test_a_call_from_the_groups_threads_runs_on_it(tmp_path: Path) -> None:
    """A step's call that asks the group again is not queued behind itself: with every
    thread of the group busy (two instances, two threads), it runs on the caller's."""
    group = _resolve(tmp_path, INSTANCES).haproxies()  # never contacted
    try:

        def outer(name: str) -> Callable[[], tuple[str, ...]]:
            def call() -> tuple[str, ...]:
                here = threading.current_thread().name
                inner = group.run(dict.fromkeys(group.names, threading.current_thread))
                return (here, *(thread.name for thread in inner.values()))

            return call

        found = group.run({name: outer(name) for name in group.names})
    finally:
        group.close()
    for here, *inner in found.values():
        assert here.startswith("bluegreen-lb")
        assert inner == [here, here]


def test_the_groups_threads_end_when_it_is_dropped(tmp_path: Path) -> None:
    """No group is closed by hand (a gate's, a status's, a metrics scrape's): dropped, its
    threads end, else a process that makes groups keeps every one's threads for good."""
    group = _resolve(tmp_path, INSTANCES).haproxies()  # never contacted
    ran = group.run(dict.fromkeys(group.names, threading.current_thread))
    assert all(thread.name.startswith("bluegreen-lb") for thread in ran.values())
    del group
    gc.collect()
    with contextlib.suppress(TimeoutError):  # the assertion below says what is left
        wait_for(
            lambda: not any(thread.is_alive() for thread in ran.values()),
            5,
            "the dropped group's threads to end",
        )
    assert [thread.name for thread in ran.values() if thread.is_alive()] == []


def test_every_call_ends_and_the_first_error_is_named(tmp_path: Path) -> None:
    group = _resolve(tmp_path, INSTANCES).haproxies()
    done: list[str] = []

    def refused() -> None:
        raise RuntimeApiError("set server api_backend/green-api weight 100", "No such server.")

    def applied() -> None:
        done.append("lb-1")

    try:
        with pytest.raises(InstanceFailed) as caught:
            group.run({"lb-1": applied, "lb-2": refused})
    finally:
        group.close()
    assert done == ["lb-1"]
    assert caught.value.instance == "lb-2"
    assert str(caught.value).startswith("lb-2: ")


# --- six real HAProxy processes: one switch, one revert, every step on all at once ---------

SIX = names(6)


@pytest.fixture
def six(stack_factory: StackFactory, tmp_path: Path) -> Iterator[Group]:
    """Six instances in front of colors answered by one more HAProxy (FastColors): six
    instances health-check each color four times a half-second, more than the Python
    stand-ins answer on time on two shared cores."""
    colors = FastColors.start(tmp_path / "colors")
    try:
        started = Group.start(stack_factory, count=6, addresses=colors.addresses())
        yield started
        started.close()
    finally:
        colors.stop()


@pytest.mark.timing  # not one failed request under the load
@pytest.mark.parametrize("step", ["promote", "drain"])
def test_six_instances_switch_and_revert_as_one(six: Group, step: str) -> None:
    """A gate switches the six at once (each step on all six, the group's threads), then a
    second gate meets an error answer from lb-5 at ``step``, the others changed in parallel
    meanwhile: all six are back to their exact prior states, the history and the journal say
    so, every server-state file holds them."""
    proxy = six.proxy("lb-5")
    load = SpreadLoad(list(six.stacks.values()), concurrency=1)
    load.wait_started()
    switched = six.gate("--env", "green", "--switch")
    assert switched.returncode == 0, _out(switched)
    assert "every instance's routed URL (lb-1, lb-2, lb-3, lb-4, lb-5, lb-6)" in switched.stdout
    assert _weights(six) == dict.fromkeys(SIX, GREEN_LIVE)
    assert six.served() == dict.fromkeys(SIX, "green")

    gate = six.paused_gate(step, "--env", "blue", "--switch")
    proxy.fail_prefix = b"set server"
    proxy.fail_next.set()
    six.go()
    out, _ = gate.communicate(timeout=120)
    assert gate.returncode == 8, out
    assert proxy.failed, out
    assert f"failed at '{step}': lb-5:" in out
    assert "previous server states restored on every instance" in out
    assert _weights(six) == dict.fromkeys(SIX, GREEN_LIVE)
    assert six.served() == dict.fromkeys(SIX, "green")
    assert six.problems() == {name: [] for name in SIX}
    assert [e["outcome"] for e in six.history()] == ["switched", "reverted"]
    entry = read_journal(six.main.journal_file)
    assert entry is not None
    assert not entry.open
    assert [m.name for m in entry.members] == list(SIX)
    assert _no_failures(load) > 0
    for stack in six.stacks.values():  # every server-state file holds the prior states
        stack.haproxy.reload(stack.runtime)
    assert _weights(six) == dict.fromkeys(SIX, GREEN_LIVE)
