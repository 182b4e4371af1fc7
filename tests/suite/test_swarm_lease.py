"""The harness's guards around the machine's swarm (tests/support/swarm.py), which let the Compose
tests and the swarm tests run side by side: ``names_lock`` (real locks between real processes)
and ``LEASE`` (its bookkeeping, with the swarm's make and leave faked: logic only; the real
ones run in tests/engines/test_swarm.py, test_swarm_failures.py and
tests/suite/test_swarm_leave.py)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import swarm
from tests.support.stack import ROOT, wait_for

HOLDER = """
import sys
from pathlib import Path
from tests.support import swarm

swarm.NAMES_LOCK = Path(sys.argv[1])
with swarm.names_lock(exclusive=False):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def lock_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "swarm.lock"
    lock = swarm._NamesLock()
    monkeypatch.setattr(swarm, "NAMES_LOCK", path)
    monkeypatch.setattr(swarm, "names_lock", lock)
    yield path
    lock.close()


def held(path: Path, mode: int) -> bool:
    """Whether another holder keeps ``mode`` (LOCK_SH or LOCK_EX) from ``path`` now."""
    with path.open("ab") as probe:
        try:
            fcntl.flock(probe, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False


@pytest.fixture
def other_holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (a Compose test on another worker) holding the lock shared."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path)], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline() == "held\n"
    yield child
    if child.poll() is None:
        child.kill()
    child.wait(30)


def test_compose_tests_share_the_lock_and_a_leave_waits_for_them(
    lock_path: Path, other_holder: subprocess.Popen[str]
) -> None:
    with swarm.names_lock(exclusive=False):  # two Compose tests at once: no wait
        assert held(lock_path, fcntl.LOCK_EX)
    assert held(lock_path, fcntl.LOCK_EX)  # the other's still
    left = threading.Event()

    def leave() -> None:
        with swarm.names_lock(exclusive=True):
            left.set()

    leaving = threading.Thread(target=leave, daemon=True)
    leaving.start()
    # the leave waits, and keeps the turnstile: a Compose test starting now waits behind it
    wait_for(lambda: held(lock_path.with_suffix(".turn"), fcntl.LOCK_EX), 10, "the turnstile")
    assert not left.is_set()
    assert other_holder.stdin is not None
    other_holder.stdin.write("done\n")
    other_holder.stdin.flush()
    wait_for(left.is_set, 30, "the leave to take the lock once the Compose test let go")
    leaving.join(30)
    assert not held(lock_path, fcntl.LOCK_EX)  # and it let go


def test_a_process_holding_it_shared_may_leave_and_holds_it_shared_again(
    lock_path: Path,
) -> None:
    """The last Compose test's teardown ends the session, whose swarm is left then: the same
    process, holding the lock shared, takes it exclusively without waiting for itself."""
    with swarm.names_lock(exclusive=False):
        with swarm.names_lock(exclusive=True):
            assert held(lock_path, fcntl.LOCK_SH)  # exclusive: not even shared for others
        assert held(lock_path, fcntl.LOCK_EX)  # shared again
        assert not held(lock_path, fcntl.LOCK_SH)
    assert not held(lock_path, fcntl.LOCK_EX)


class FakeEngine:
    def __init__(self) -> None:
        self.active = False
        self.made = 0
        self.left = 0

    def make(self) -> None:
        self.active = True
        self.made += 1

    def leave(self, before: object = ()) -> None:
        self.active = False
        self.left += 1


@pytest.fixture
def engine(lock_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """A fake engine's swarm, and this test's own names_lock (never the machine's)."""
    fake = FakeEngine()
    monkeypatch.setattr(swarm, "swarm_node", lambda: "node-1")
    monkeypatch.setattr(swarm, "swarm_state", lambda: "active" if fake.active else "inactive")
    monkeypatch.setattr(swarm, "named_containers", list)
    monkeypatch.setattr(swarm, "make_swarm", fake.make)
    monkeypatch.setattr(swarm, "leave_swarm", fake.leave)
    return fake


def test_the_session_makes_one_swarm_for_every_module_and_leaves_it_at_its_end(
    engine: FakeEngine,
) -> None:
    lease = swarm.SwarmLease()
    with lease.hold():
        for _module in range(3):
            assert lease.acquire()
            lease.release()
            assert engine.active  # held: kept for the next module
        assert engine.made == 1
        assert engine.left == 0
    assert (engine.made, engine.left, engine.active) == (1, 1, False)


def test_a_test_that_needs_no_swarm_has_it_left_unless_a_stack_is_on_it(
    engine: FakeEngine,
) -> None:
    lease = swarm.SwarmLease()
    with lease.hold():
        lease.acquire()
        lease.vacate()  # a module's stack is on it: stays
        assert engine.active
        lease.release()
        lease.vacate()
        assert not engine.active
        assert lease.acquire()  # and the next that needs one makes it again
        lease.release()
    assert (engine.made, engine.left) == (2, 2)


def test_the_machines_own_swarm_is_never_left(engine: FakeEngine) -> None:
    engine.active = True  # active before the session: not the lease's
    lease = swarm.SwarmLease()
    with lease.hold():
        assert not lease.acquire()
        lease.release()
        lease.vacate()
    assert (engine.made, engine.left, engine.active) == (0, 0, True)


def test_without_a_session_hold_the_last_stack_leaves_it(engine: FakeEngine) -> None:
    """benchmarks/cycle.py --engine swarm: no test session keeps it."""
    lease = swarm.SwarmLease()
    lease.acquire()
    lease.acquire()
    lease.release()
    assert engine.active
    lease.release()
    assert (engine.made, engine.left, engine.active) == (1, 1, False)


def test_a_swarm_left_behind_by_a_killed_test_process_is_taken_over_and_left(
    engine: FakeEngine, lock_path: Path
) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owner = lock_path.with_suffix(".owner")
    owner.write_text(json.dumps({"node": "node-1", "pid": int(gone.stdout)}))
    engine.active = True
    lease = swarm.SwarmLease()
    with lease.hold():
        assert lease.acquire()
        lease.release()
    assert (engine.made, engine.left, engine.active) == (0, 1, False)
    assert not owner.exists()


def test_a_swarm_whose_maker_runs_or_another_node_is_not_taken_over(
    engine: FakeEngine, lock_path: Path
) -> None:
    owner = lock_path.with_suffix(".owner")
    engine.active = True
    for node, pid in (("node-1", os.getpid()), ("node-2", 2**22 + 1)):
        owner.write_text(json.dumps({"node": node, "pid": pid}))
        lease = swarm.SwarmLease()
        with lease.hold():
            assert not lease.acquire()
            lease.release()
    assert (engine.made, engine.left, engine.active) == (0, 0, True)


def test_a_failed_leave_keeps_the_swarm_the_leases_to_leave_again(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = swarm.SwarmLease()
    lease.acquire()

    def refused(before: object = ()) -> None:
        raise RuntimeError("docker swarm leave: refused")

    monkeypatch.setattr(swarm, "leave_swarm", refused)
    with pytest.raises(RuntimeError, match="refused"):
        lease.release()
    assert lease.made
    monkeypatch.setattr(swarm, "leave_swarm", engine.leave)
    lease.vacate()
    assert (engine.left, engine.active) == (1, False)


def test_a_failed_make_leaves_no_user_counted(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused() -> None:
        raise RuntimeError("docker swarm init: refused")

    monkeypatch.setattr(swarm, "make_swarm", refused)
    lease = swarm.SwarmLease()
    with pytest.raises(RuntimeError, match="refused"):
        lease.acquire()
    assert (lease.users, lease.made) == (0, False)


def test_a_forked_child_lets_go_of_nothing_and_holds_nothing(lock_path: Path) -> None:
    """tests/support/switching.py's load process is forked from a test that may hold the
    lock: the child's copies are closed at once, so the parent's hold is the parent's alone."""
    with swarm.names_lock(exclusive=False):
        pid = os.fork()
        if pid == 0:  # the child: exits at once, without pytest's teardown
            os._exit(0 if swarm.names_lock.fds is None else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert held(lock_path, fcntl.LOCK_EX)  # still the parent's
    assert not held(lock_path, fcntl.LOCK_EX)


def test_a_process_holding_it_exclusively_may_ask_again(lock_path: Path) -> None:
    """A test that checks names with no Compose test running holds it over the leave, which
    takes it too: the inner hold is the outer's, and letting go of it keeps the outer."""
    with swarm.names_lock(exclusive=True):
        with swarm.names_lock(exclusive=True), swarm.names_lock(exclusive=False):
            assert held(lock_path, fcntl.LOCK_SH)
        assert held(lock_path, fcntl.LOCK_SH)  # still exclusive
    assert not held(lock_path, fcntl.LOCK_SH)


def test_a_leave_restarting_a_container_its_owner_removes_meanwhile_goes_on(
    monkeypatch: pytest.MonkeyPatch, lock_path: Path
) -> None:
    """The Compose project of another worker goes down while the leave restarts the containers
    whose names Docker forgot: the one removed is no loss, the other is waited for (run C on
    1b53d54's successor: 'docker inspect ...: No such object' ended the session's teardown)."""
    kept = swarm.Named("kept-id", "net", ("api",))
    gone = swarm.Named("gone-id", "net", ("db",))
    present = {"kept-id", "gone-id"}
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
        calls.append(args)
        if args[:2] == ("ps", "-q"):
            return "\n".join(sorted(present))
        if args[0] == "inspect":
            if check and set(args[1:]) - present:
                raise RuntimeError(f"docker {' '.join(args)}: Error: No such object")
            return json.dumps([{"Id": i, "Name": f"/{i}", "State": {"Running": True}}
                               for i in args[1:] if i in present])  # fmt: skip
        return ""

    def restart(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        present.discard("gone-id")  # its owner took it down just after the restart
        return subprocess.CompletedProcess(command, 0, "", "")

    lost = [[kept, gone], []]
    monkeypatch.setattr(swarm, "docker", docker)
    monkeypatch.setattr(swarm, "unresolved", lambda named: lost.pop(0) if lost else [])
    monkeypatch.setattr("tests.support.swarm.subprocess.run", restart)
    swarm._leave_swarm([kept, gone])
    assert ("swarm", "leave", "--force") in calls
    assert present == {"kept-id"}
