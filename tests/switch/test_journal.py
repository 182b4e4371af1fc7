"""The switch's journal: records in two slots, a torn write leaves the record before whole, an
open record refuses the next switch until it is closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.haproxy.answers import ServerState
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.switch.journal import (
    SLOT_SIZE,
    Journal,
    JournalError,
    UnfinishedJournal,
    read_journal,
)

INSTANCE = InstanceIdentity("127.0.0.1:9999", pid=42, start_time=1_700_000_000)


def server(name: str, weight: int, admin_state: int = 0) -> ServerState:
    return ServerState("api_backend", name, "127.0.0.1", 2, admin_state, weight, weight, 6, 0)


PRIOR = {s.ref: s for s in (server("blue-api", 100), server("green-api", 0))}


def begun(path: Path) -> Journal:
    journal = Journal(path)
    journal.prepare()
    journal.begin(source="blue", target="green", instance=INSTANCE, prior=PRIOR)
    return journal


def test_no_journal_is_none(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "journal.json") is None


def test_prepare_makes_two_full_size_slots(tmp_path: Path) -> None:
    Journal(tmp_path / "journal.json").prepare()
    slots = sorted(p.name for p in tmp_path.iterdir())
    assert slots == ["journal.json", "journal.json.alt"]
    assert all((tmp_path / s).stat().st_size == SLOT_SIZE for s in slots)
    assert read_journal(tmp_path / "journal.json") is None  # empty slots hold no record


def test_intent_steps_and_outcome(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    journal = begun(path)
    entry = read_journal(path)
    assert entry is not None
    assert entry.open
    assert (entry.source, entry.target, entry.instance) == ("blue", "green", INSTANCE)
    assert [(p.server, p.weight, p.admin) for p in entry.prior] == [
        ("api_backend/blue-api", 100, "ready"),
        ("api_backend/green-api", 0, "ready"),
    ]
    journal.step("promote")
    journal.step("verify", version="v1.1.0")
    entry = read_journal(path)
    assert entry is not None
    assert [s["step"] for s in entry.steps] == ["promote", "verify"]
    assert entry.steps[1]["version"] == "v1.1.0"
    journal.close("switched")
    closed = read_journal(path)
    assert closed is not None
    assert (closed.open, closed.outcome) == (False, "switched")
    assert all(p.stat().st_size == SLOT_SIZE for p in tmp_path.iterdir())  # written in place


def test_an_open_journal_refuses_the_next_switch(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    begun(path).step("drain")
    with pytest.raises(UnfinishedJournal) as info:
        Journal(path).prepare()
    message = str(info.value)
    assert "\n" not in message
    assert "an unfinished switch blue -> green" in message
    assert "steps done: drain" in message
    assert "bluegreen recover" in message
    assert info.value.exit_code == 7


def test_a_torn_write_leaves_the_record_before(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    journal = begun(path)  # seq 1: the intent, in .alt
    journal.step("promote")  # seq 2: in journal.json
    # a crash in the middle of writing seq 3 (into .alt): half a record
    journal.seq += 1
    torn = (tmp_path / "journal.json.alt").read_bytes()
    (tmp_path / "journal.json.alt").write_bytes(torn[:40] + b"\x00" * 100 + torn[140:])
    entry = read_journal(path)
    assert entry is not None
    assert entry.open
    assert [s["step"] for s in entry.steps] == ["promote"]


def test_a_journal_with_no_whole_record_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    path.write_text("bluegreen-journal 1 123 9999\n{not json")
    with pytest.raises(JournalError, match="no slot holds a whole record"):
        read_journal(path)


def test_resume_closes_what_a_cut_off_switch_left(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    begun(path).step("drain")
    entry = read_journal(path)
    assert entry is not None
    recovery = Journal(path)
    recovery.resume(entry)
    recovery.close("recovered", detail="prior states restored")
    closed = read_journal(path)
    assert closed is not None
    assert (closed.open, closed.outcome, closed.detail) == (
        False,
        "recovered",
        "prior states restored",
    )
    Journal(path).prepare()  # a new switch may begin


@pytest.mark.parametrize(
    ("info", "same"),
    [
        pytest.param({"Pid": "42", "Start_time_sec": "1700000000"}, True, id="same"),
        pytest.param({"Pid": "43", "Start_time_sec": "1700000000"}, False, id="new-pid"),
        pytest.param({"Pid": "42", "Start_time_sec": "1700000300"}, False, id="restarted"),
    ],
)
def test_instance_identity(info: dict[str, str], same: bool) -> None:
    now = InstanceIdentity.from_info("127.0.0.1:9999", info)
    assert now.same_process(INSTANCE) is same
