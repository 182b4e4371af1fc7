"""``bluegreen recover`` with several HAProxy instances: three real HAProxy processes (lb-1..3,
tests/support/instances.py) and a gate killed mid-switch (SIGKILL at a step, held there by the
fault harness's step hook), then one instance down, reloaded, removed from the settings, or
dying during the recovery itself. Whatever happens: nothing changes where the documentation
says it is refused (exit 7), a recovery that changed some instances and could not finish says
so (exit 10, the journal left open for the next one), and the next ``recover`` brings every
instance to one consistent color."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import pytest

from pytest_bluegreen.record.history import load_reconcile
from pytest_bluegreen.switch.journal import read_journal
from tests.support.faults import FAULTS
from tests.support.instances import NAMES, Group, run_group_cell
from tests.support.stack import BLUE_LIVE, GREEN_LIVE, StackFactory
from tests.support.tiers import diagonal


@pytest.fixture
def group(stack_factory: StackFactory) -> Iterator[Group]:
    started = Group.start(stack_factory)
    yield started
    started.close()


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return f"{result.stdout}{result.stderr}"[-5000:]


def _killed_at(group: Group, step: str) -> None:
    """A gate switching blue -> green, SIGKILLed when it reaches ``step`` (held there)."""
    gate = group.paused_gate(step, "--env", "green", "--switch")
    gate.kill()
    out, _ = gate.communicate()
    assert (group.workdir / "at-step").exists(), out
    assert _journal_open(group)


def _journal_open(group: Group) -> bool:
    entry = read_journal(group.main.journal_file)
    return entry is not None and entry.open


def _outcomes(group: Group) -> list[str]:
    return [e["outcome"] for e in group.history()]


# promoted, not yet drained: green weighted beside blue (the state a kill at drain leaves)
HALF = {
    "blue-api": (100, "ready"),
    "blue-frontend": (100, "ready"),
    "green-api": (100, "ready"),
    "green-frontend": (100, "ready"),
}


def test_an_instance_down_during_recover_is_refused_then_allowed_missing(group: Group) -> None:
    """Recover needs every instance: with lb-3 down it refuses and changes nothing (lb-1 and
    lb-2 stay half-switched, the journal open); allowed missing, it restores the other two and
    records lb-3; back, lb-3 is brought in line by the next recover."""
    _killed_at(group, "drain")
    assert group.weights() == dict.fromkeys(NAMES, HALF)
    lb3 = group.stacks["lb-3"]
    lb3.stop()
    refused = group.bluegreen("recover")
    assert refused.returncode == 7, _out(refused)
    assert "lb-3" in _out(refused)
    for name in ("lb-1", "lb-2"):
        assert group.stacks[name].live_weights() == HALF  # nothing changed
    assert _journal_open(group)
    assert _outcomes(group) == []

    allowed = group.bluegreen("--allow-missing-instance", "lb-3", "recover")
    assert allowed.returncode == 0, _out(allowed)
    assert "every server's state before it restored" in allowed.stdout
    assert "on every instance (lb-1, lb-2)" in allowed.stdout
    assert "instance(s) lb-3 missing: recorded to be brought in line" in allowed.stdout
    for name in ("lb-1", "lb-2"):
        assert group.stacks[name].live_weights() == BLUE_LIVE
    assert not _journal_open(group)
    record = load_reconcile(group.main.state_file)
    assert record is not None
    assert (record.instances, record.color) == (("lb-3",), "blue")

    lb3.start()  # its server-state file is the one before the switch
    back = group.bluegreen("recover")
    assert back.returncode == 0, _out(back)
    assert "lb-3 brought in line" in back.stdout
    assert group.weights() == dict.fromkeys(NAMES, BLUE_LIVE)
    assert load_reconcile(group.main.state_file) is None
    assert _outcomes(group) == ["recovered", "recovered"]
    assert group.bluegreen("status").returncode == 0


@pytest.mark.parametrize("step", ["confirm", "save-state"])  # idle: tests/haproxy/test_instances.py
def test_a_switch_killed_past_verify_is_completed_after_an_instance_reloaded(
    group: Group, step: str
) -> None:
    """Killed after every instance moved to green (confirm: before reading them back;
    save-state: before any server-state file was saved), then lb-2 reloads from its file,
    which still says blue: recover completes the switch on all three (lb-2 included, it was
    not left blue) and saves every file, so a reload of each keeps green."""
    _killed_at(group, step)
    assert group.weights() == dict.fromkeys(NAMES, GREEN_LIVE)
    lb2 = group.stacks["lb-2"]
    lb2.haproxy.reload(lb2.runtime)
    assert group.lives()["lb-2"] == "blue"
    recovered = group.bluegreen("recover")
    assert recovered.returncode == 0, _out(recovered)
    assert "completed the switch blue -> green cut off after promote, drain, verify" in (
        recovered.stdout
    )
    assert "on every instance (lb-1, lb-2, lb-3)" in recovered.stdout
    assert group.weights() == dict.fromkeys(NAMES, GREEN_LIVE)
    assert _outcomes(group) == ["recovered"]
    assert not _journal_open(group)
    for stack in group.stacks.values():
        stack.haproxy.reload(stack.runtime)
    assert group.weights() == dict.fromkeys(NAMES, GREEN_LIVE)


def test_a_journal_naming_an_instance_the_settings_no_longer_have(group: Group) -> None:
    """lb-3 was taken out of the settings after the kill: recover cannot restore what the
    journal holds for it, so it refuses and changes nothing; ``--to blue`` makes blue live on
    the instances the settings name, and leaves lb-3 (no longer the gate's) alone."""
    _killed_at(group, "drain")
    removed = group.stacks.pop("lb-3")
    group.write(hook=True)
    refused = group.bluegreen("recover")
    assert refused.returncode == 7, _out(refused)
    assert "the unfinished switch names instance(s) lb-3 that the settings no longer have" in (
        _out(refused)
    )
    assert group.weights() == {"lb-1": HALF, "lb-2": HALF}
    assert _journal_open(group)

    forced = group.bluegreen("recover", "--to", "blue")
    assert forced.returncode == 0, _out(forced)
    assert "blue made live, as asked (--to blue), on every instance (lb-1, lb-2)" in forced.stdout
    assert group.weights() == {"lb-1": BLUE_LIVE, "lb-2": BLUE_LIVE}
    assert removed.live_weights() == HALF
    assert not _journal_open(group)
    assert _outcomes(group) == ["recovered"]


@pytest.mark.parametrize(
    ("step", "live"),
    [("drain", BLUE_LIVE), ("idle", GREEN_LIVE)],  # before, after the point of no return
)
def test_an_instance_dying_during_recover_is_exit_10_and_the_next_recover_finishes(
    group: Group, step: str, live: dict[str, tuple[int, str]]
) -> None:
    """lb-2's HAProxy dies at recover's first change to it (SIGKILL, between the command and
    HAProxy): the other two were changed, so it is not 'refused, nothing changed' (7) but the
    recovery's own failure, exit 10, naming lb-2, the journal open, nothing recorded as
    recovered; lb-2 back, the next recover brings all three to one color."""
    proxy = group.proxy("lb-2")
    _killed_at(group, step)
    lb2 = group.stacks["lb-2"]
    died = threading.Event()

    def kill_at_first_change(command: bytes) -> None:
        if command.startswith(b"set server") and not died.is_set():
            died.set()
            lb2.haproxy.kill()

    proxy.before_forward = kill_at_first_change
    failed = group.bluegreen("recover")
    assert died.is_set(), _out(failed)
    assert failed.returncode == 10, _out(failed)
    assert "recovery of the switch blue -> green cut off after" in _out(failed)
    assert "lb-2" in _out(failed)
    assert _journal_open(group)
    assert "recovered" not in _outcomes(group)

    proxy.before_forward = None
    lb2.start()
    recovered = group.bluegreen("recover")
    assert recovered.returncode == 0, _out(recovered)
    assert group.weights() == dict.fromkeys(NAMES, live)
    assert not _journal_open(group)
    assert _outcomes(group)[-1] == "recovered"
    for stack in group.stacks.values():  # every server-state file saved
        stack.haproxy.reload(stack.runtime)
    assert group.weights() == dict.fromkeys(NAMES, live)


# --- the fault matrix on three ---------------------------------------------------------------

# tests/switch/test_faults.py runs every fault at each of the 7 steps on one HAProxy; on three,
# every fault runs once on each side of the point of no return, against lb-2 alone (a middle
# instance: neither the first, which holds the files, nor the last): 16 cells, not 56, because
# what a step does to each instance is the single-instance matrix's, and what three add (an
# instance out of step with the others, a revert or a completion of all three) shows as much
# at one step per side. 'drain': the target is promoted everywhere, the old color not yet
# drained; 'confirm': every instance moved, not yet read back.
GROUP_STEPS = ("drain", "confirm")


@pytest.mark.parametrize(("step", "fault"), diagonal(GROUP_STEPS, FAULTS))
def test_fault_at_step_on_three(group: Group, step: str, fault: str) -> None:
    cell = run_group_cell(group, step, fault, on="lb-2")
    assert cell.mismatches() == [], cell.output[-6000:]
    assert cell.requests > 0
