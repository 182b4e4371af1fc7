"""The files the gate keeps between runs, when they are damaged or cannot be written.

- a warm-window, pending-promotion or reconcile record that is not its shape: one line naming
  the file and what clears it, in every command (a rollback is never blocked by it);
- the history and the records written durably (file and folder synced), the history's
  read-modify-write and a pending promotion's end (abort, expiry) under a lock;
- a journal folder or state folder that cannot be made: one line, nothing changed;
- a journal whose first record was torn by a crash: discarded with a warning (it is safe, see
  ``journal._torn_first``); no whole record anywhere else: ``bluegreen recover --to COLOR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.engines.compose import TagsFile
from pytest_bluegreen.haproxy.answers import ServerState
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import (
    FAULTS,
    PENDING,
    RECONCILE,
    WARM,
    HistoryEntry,
    Outcome,
    PendingPromotion,
    StateFileError,
    WarmWindow,
)
from pytest_bluegreen.report.verdict import write_verdict
from pytest_bluegreen.switch.journal import Journal, JournalError, _encode, read_journal
from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.gate import deployment_folder
from tests.support.stack import Stack, wait_for

LOADERS = {
    WARM: history.load_warm,
    PENDING: history.load_pending,
    RECONCILE: history.load_reconcile,
    FAULTS: history.load_faults,
}
CLEARED_BY = {
    WARM: "remove it to end the warm window",
    PENDING: "'bluegreen abort' discards it",
    RECONCILE: "'bluegreen recover --to COLOR' brings them in line",
    FAULTS: "deploy the idle color again (bluegreen deploy --target-color COLOR), then remove it",
}
NOW = 1_800_000_000.0


# --- records that are not their shape ------------------------------------------------------------

MALFORMED = [
    (WARM, "[]", "a JSON object was expected, not list"),
    (WARM, '"blue"', "not str"),
    (WARM, "{}", "it has no 'old'"),
    (WARM, '{"old": "blue", "new": "green", "tag": null, "until": "soon", "action": "keep"}',
     "'until' is \"soon\", not float"),
    (WARM, '{"old": "blue", "new": "green", "tag": null, "until": NaN, "action": "keep"}',
     "'until' is not a finite number"),
    (WARM, '{"old": "blue", "new": "green", "tag": null, "until": 1' + "0" * 400
     + ', "action": "keep"}', "'until' is not a finite number"),  # past a float: OverflowError
    (WARM, '{"old": "blue"', "Expecting"),
    (PENDING, "[1, 2]", "a JSON object was expected"),
    (PENDING, '{"target": "green"}', "it has no 'source'"),
    (PENDING, '{"target": "green", "source": "blue", "tag": 3, "image": null, '
     '"checks_passed": 2, "verified_at": 1, "created_at": 1}', "'tag' is 3, not str"),
    (PENDING, '{"target": "green", "source": "blue", "tag": null, "image": null, '
     '"checks_passed": true, "verified_at": 1, "created_at": 1}', "'checks_passed' is true"),
    (RECONCILE, '{"instances": "lb-2", "color": "green", "since": 1}', "'instances' is not a list"),
    (RECONCILE, "null", "a JSON object was expected, not NoneType"),
    (FAULTS, '{"color": "green", "tag": "v1", "what": "x", "since": 1, "host": "h", '
     '"pid": "1"}', "'pid' is \"1\", not int"),
    (RECONCILE, "\xff\xfe", ""),
    # a parser's recursion, not a traceback
    (WARM, "[" * 100_000 + "]" * 100_000, "nested too deeply to be read"),
    (PENDING, '{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply to be read"),
    (RECONCILE, "[" * 100_000, "nested too deeply to be read"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "why"), MALFORMED)
def test_a_record_not_its_shape_is_one_line_naming_the_file_and_the_way_out(
    tmp_path: Path, name: str, content: str, why: str
) -> None:
    state_file = tmp_path / "state.json"
    (tmp_path / name).write_bytes(content.encode("latin-1"))
    with pytest.raises(StateFileError) as caught:
        LOADERS[name](state_file)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"state file {tmp_path / name} is not readable (")
    assert why in message
    assert CLEARED_BY[name] in message


ENTRY = '"time": "2026-01-01T00:00:00+00:00", "from_color": "blue", "to_color": "green", '
HISTORY_MALFORMED = [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply to be read"),
    ("[]", 'a JSON object with a "history" list was expected'),
    ('{"history": {"a": 1}}', 'a JSON object with a "history" list was expected'),
    ('{"history": ["x"]}', "a JSON object was expected, not str"),
    ('{"history": [{' + ENTRY + '"tag": null, "outcome": "switched", "host": 1}]}',
     "'host' is 1, not str"),
    ('{"history": [{"time": 5, "from_color": 7, "to_color": ["x"], "tag": {}, '
     '"outcome": "switched", "host": "h"}]}', "'time' is 5, not str"),
    ('{"history": [{' + ENTRY + '"tag": null, "outcome": "nope", "host": "h"}]}',
     "'nope' is not a valid Outcome"),
    ('{"history": [{' + ENTRY + '"tag": null, "outcome": "switched", "host": "h", '
     '"forced": "yes"}]}', "'forced' is \"yes\", not bool"),
    ('{"history": [{' + ENTRY + '"tag": null, "outcome": "switched", "host": "h", "x": 1}]}',
     "an entry has 'x', which this version does not know"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "why"), HISTORY_MALFORMED)
def test_a_history_not_its_shape_is_one_line(tmp_path: Path, content: str, why: str) -> None:
    """Each field of each entry of its type, as the records' (a wrong type was shown by status
    as the last switch: '5 7 -> ['x'] switched'); nesting too deep for the parser is one line
    too, not a RecursionError traceback."""
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError) as caught:
        history.read_history(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"state file {path} is not readable history (")
    assert why in message
    with pytest.raises(StateFileError):  # nothing is appended to it either
        history.append(path, _entry("green"))
    assert path.read_text() == content


def test_a_whole_history_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    entries = [_entry("green"), replace(_entry("blue"), forced=True, tag="v1")]
    for entry in entries:
        history.append(path, entry)
    assert history.read_history(path) == entries


def test_a_journal_slot_nested_too_deeply_is_not_a_record(tmp_path: Path) -> None:
    """A slot whose checksum holds but whose JSON the parser cannot nest that deep: not a
    whole record (as a torn one), never a RecursionError traceback."""
    path = tmp_path / "journal.json"
    payload = ("[" * 100_000 + "]" * 100_000).encode()
    Journal(path).prepare()
    path.write_bytes(
        f"bluegreen-journal 2 {zlib.crc32(payload)} {len(payload)}\n".encode() + payload
    )
    with pytest.raises(JournalError, match="no slot holds a whole record"):
        read_journal(path)


def test_a_record_loads_whatever_keys_a_newer_version_added(tmp_path: Path) -> None:
    """Fields follow the dataclass: keys it does not know are left out."""
    state_file = tmp_path / "state.json"
    window = WarmWindow("blue", "green", "v1.1.0", NOW, "keep")
    data = {**json.loads(json.dumps(window.__dict__)), "image": "sha256:ab", "later": [1]}
    (tmp_path / WARM).write_text(json.dumps(data))
    assert history.load_warm(state_file) == window
    pending = PendingPromotion("green", "blue", None, None, 3, NOW, NOW)
    history.save_record(state_file, PENDING, pending)
    assert history.load_pending(state_file) == pending
    history.save_record(state_file, RECONCILE, history.Reconcile(("lb-2",), "green", NOW))
    assert history.load_reconcile(state_file) == history.Reconcile(("lb-2",), "green", NOW)


# --- durable writes ------------------------------------------------------------------------------


@dataclass
class Syncs:
    """Which files and folders were synced, by path (fds read back through /proc)."""

    calls: list[tuple[str, str]]

    def record(self, kind: str, fd: int) -> None:
        self.calls.append((kind, os.readlink(f"/proc/self/fd/{fd}")))


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    found = Syncs([])
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def fsync(fd: int) -> None:
        found.record("fsync", fd)
        real_fsync(fd)

    def fdatasync(fd: int) -> None:
        found.record("fdatasync", fd)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return found


def _entry(to_color: str) -> HistoryEntry:
    return HistoryEntry.now(
        from_color="blue", to_color=to_color, tag=None, outcome=Outcome.SWITCHED, reason="x"
    )


def test_history_and_records_are_synced_file_and_folder(tmp_path: Path, syncs: Syncs) -> None:
    folder = tmp_path / "state"
    state_file = folder / "state.json"
    writes: list[Callable[[], None]] = [
        lambda: history.append(state_file, _entry("green")),
        lambda: history.save_record(
            state_file, PENDING, PendingPromotion("green", "blue", None, None, 1, NOW, NOW)
        ),
        lambda: history.clear_record(state_file, PENDING),
    ]
    for write in writes:
        syncs.calls.clear()
        write()
        kinds = {kind for kind, path in syncs.calls if path == str(folder)}
        assert "fsync" in kinds, syncs.calls  # the rename (or removal) made durable
    syncs.calls.clear()
    history.save_record(state_file, WARM, WarmWindow("blue", "green", None, NOW, "keep"))
    files = [p for kind, p in syncs.calls if kind == "fdatasync"]
    assert files, syncs.calls
    assert all(Path(p).parent == folder and Path(p).name.startswith(f".{WARM}.") for p in files)
    assert not (folder / PENDING).exists()


WRITER = """
import pathlib, sys, time
from pytest_bluegreen.record import history
path, color, go = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
go.with_name(f"ready-{color}").touch()
deadline = time.monotonic() + 60  # the test gone: end, do not spin on
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
for n in range(40):
    history.append(path, history.HistoryEntry.now(
        from_color=None, to_color=color, tag=str(n), outcome=history.Outcome.NOOP))
"""


def test_writers_at_once_never_lose_each_others_history_entry(tmp_path: Path) -> None:
    """Three processes append at the same moment: every entry is there."""
    path, go = tmp_path / "state.json", tmp_path / "go"
    colors = ("blue", "green", "red")
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), color, str(go)])
        for color in colors
    ]
    wait_for(
        lambda: all((tmp_path / f"ready-{c}").exists() for c in colors),
        60,
        "the writers",
        watch=procs,
    )
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=180) == 0
    entries = history.read_history(path)
    assert sorted((e.to_color, int(e.tag or -1)) for e in entries) == sorted(
        (color, n) for color in colors for n in range(40)
    )


# --- a folder that cannot be made ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["/proc/bluegreen/journal.json", "file/journal.json"])
def test_a_journal_folder_that_cannot_be_made_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(JournalError) as caught:
        Journal(path).prepare()
    message = str(caught.value)
    assert str(path) in message
    assert "(set journal_file to a file in a folder this user can" in message
    assert "\n" not in message


# --- a torn first record -------------------------------------------------------------------------

INSTANCE = InstanceIdentity("127.0.0.1:9999", pid=42, start_time=1_700_000_000)
PRIOR = {
    s.ref: s
    for s in (
        ServerState("api_backend", "blue-api", "127.0.0.1", 2, 0, 100, 100, 6, 0),
        ServerState("api_backend", "green-api", "127.0.0.1", 2, 0, 0, 100, 6, 0),
    )
}


def _intent(path: Path, seq: int = 1) -> bytes:
    """The bytes a switch's intent record would be (sequence ``seq``)."""
    journal = Journal(path)
    entry = journal.begin(source="blue", target="green", instance=INSTANCE, prior=PRIOR)
    for name in (path, path.with_name(path.name + ".alt")):
        name.unlink()
    return _encode(seq, entry)


def _tear(slot: Path, record: bytes, keep: int) -> None:
    """``slot`` as a crash leaves it: the first ``keep`` bytes of ``record`` over blanks."""
    with slot.open("r+b") as handle:
        handle.write(record[:keep])


@pytest.mark.parametrize("main_slot", ["blank", "absent"])
@pytest.mark.parametrize("keep", [40, 300], ids=["header-only", "half-record"])
def test_a_torn_first_record_is_discarded_with_a_warning(
    tmp_path: Path, main_slot: str, keep: int
) -> None:
    path = tmp_path / "journal.json"
    record = _intent(path)
    Journal(path).prepare()  # both slots blank, as a gate leaves them
    _tear(path.with_name("journal.json.alt"), record, keep)  # the intent: seq 1, .alt slot
    if main_slot == "absent":
        path.unlink()
    assert read_journal(path) is None  # nothing unfinished: no switch got past its intent
    journal = Journal(path)
    notes = journal.prepare()
    assert len(notes) == 1
    assert notes[0].startswith(f"warning: journal {path}: its only record")
    assert "was discarded" in notes[0]
    journal.begin(source="blue", target="green", instance=INSTANCE, prior=PRIOR)
    journal.close("switched")
    entry = read_journal(path)
    assert entry is not None
    assert entry.outcome == "switched"
    assert Journal(path).prepare() == []


@pytest.mark.parametrize("case", ["both-torn", "later-record-torn", "main-slot-only"])
def test_no_whole_record_that_may_hide_a_switch_names_recover_to(tmp_path: Path, case: str) -> None:
    path = tmp_path / "journal.json"
    first, second, third = _intent(path, 1), _intent(path, 2), _intent(path, 3)
    Journal(path).prepare()
    alt = path.with_name("journal.json.alt")
    if case == "both-torn":
        _tear(alt, first, 300)
        _tear(path, second, 300)
    elif case == "later-record-torn":  # main slot blank, but the .alt record is sequence 3
        _tear(alt, third, 300)
    else:  # only the main slot written: not the shape a first record leaves
        _tear(path, second, 300)
    for read in (lambda: read_journal(path), lambda: Journal(path).prepare()):
        with pytest.raises(JournalError) as caught:
            read()
        message = str(caught.value)
        assert "\n" not in message
        assert f"journal {path}: no slot holds a whole record" in message
        assert "'bluegreen recover --to COLOR'" in message


# --- the commands on a real HAProxy --------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, stack: Stack) -> Path:
    return deployment_folder(tmp_path / "work", stack)


def bluegreen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def gate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "checks", *args],
        cwd=cwd,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def history_of(stack: Stack) -> list[dict[str, object]]:
    if not stack.state_file.exists():
        return []
    entries: list[dict[str, object]] = json.loads(stack.state_file.read_text())["history"]
    return entries


@pytest.mark.parametrize("name", [WARM, PENDING, RECONCILE, FAULTS])
def test_every_command_says_a_malformed_record_in_one_line(
    workdir: Path, stack: Stack, name: str
) -> None:
    record = stack.state_file.with_name(name)
    record.write_text('{"target": ["green"]}')
    commands = [("status",), ("export-state",)]
    commands += [("promote",)] if name == PENDING else []  # abort discards it: below
    for command in commands:
        result = bluegreen(workdir, *command)
        assert result.returncode == 4, (command, _out(result))
        assert "Traceback" not in _out(result)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"bluegreen: error: state file {record} is not readable ("), line
        assert CLEARED_BY[name] in line
    assert stack.served_color() == "blue"


def test_abort_discards_a_malformed_pending_promotion(workdir: Path, stack: Stack) -> None:
    record = stack.state_file.with_name(PENDING)
    record.write_text("[]")
    result = bluegreen(workdir, "abort")
    assert result.returncode == 0, _out(result)
    assert (
        f"the pending promotion in {record} could not be read (a JSON object was expected, "
        "not list) and was discarded; traffic unchanged" in result.stdout
    )
    assert not record.exists()
    assert [e["outcome"] for e in history_of(stack)] == ["aborted"]
    assert bluegreen(workdir, "status").returncode == 0


def test_a_malformed_warm_window_never_blocks_a_rollback(workdir: Path, stack: Stack) -> None:
    record = stack.state_file.with_name(WARM)
    record.write_text('{"old": "green"}')
    result = bluegreen(workdir, "rollback")
    assert result.returncode == 0, _out(result)
    assert f"warning: state file {record} is not readable" in result.stdout
    assert "this rollback runs the checks" in result.stdout
    assert "Traceback" not in _out(result)
    assert stack.served_color() == "green"  # blue was live: the checked rollback went back


def _pending(stack: Stack, *, age: float) -> PendingPromotion:
    verified = time.time() - age
    record = PendingPromotion("green", "blue", "v1.1.0", None, 2, verified, verified)
    history.save_record(stack.state_file, PENDING, record)
    return record


def test_abort_waits_for_no_gate_it_takes_the_lock(workdir: Path, stack: Stack) -> None:
    _pending(stack, age=5)
    with stack.lock().hold():  # a gate runs
        result = bluegreen(workdir, "abort")
    assert result.returncode == 7, _out(result)
    assert "another gate holds" in result.stderr
    assert history.load_pending(stack.state_file) is not None
    assert history_of(stack) == []
    done = bluegreen(workdir, "abort")
    assert done.returncode == 0, _out(done)
    assert [e["outcome"] for e in history_of(stack)] == ["aborted"]


def test_an_expired_promotion_is_recorded_under_the_lock(workdir: Path, stack: Stack) -> None:
    (workdir / "bluegreen.toml").write_text(stack.settings_toml(promotion_timeout=60))
    _pending(stack, age=3600)
    with stack.lock().hold():  # a gate runs: the expiry is not written beside it
        result = bluegreen(workdir, "promote")
    assert result.returncode == 7, _out(result)
    assert "expired" in result.stdout
    assert "the pending promotion in" in result.stdout
    assert "another gate holds" in result.stdout
    assert history.load_pending(stack.state_file) is not None
    assert history_of(stack) == []
    again = bluegreen(workdir, "promote")
    assert again.returncode == 7, _out(again)
    assert history.load_pending(stack.state_file) is None
    assert [e["outcome"] for e in history_of(stack)] == ["expired"]
    assert stack.served_color() == "blue"


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("journal_file", "/proc/bluegreen/journal.json", "cannot write the journal"),
        ("state_file", "/proc/bluegreen/state.json", "cannot write in /proc/bluegreen"),
    ],
)
def test_a_folder_that_cannot_be_made_is_one_line_and_nothing_moves(
    workdir: Path, stack: Stack, setting: str, value: str, says: str
) -> None:
    overrides: dict[str, Any] = {setting: value}
    (workdir / "bluegreen.toml").write_text(stack.settings_toml(**overrides))
    before = stack.live_weights()
    results = {
        "gate": gate(workdir, "--env", "green", "--switch"),
        "switch-to --force": bluegreen(workdir, "switch-to", "green", "--force"),
        "rollback --force": bluegreen(workdir, "rollback", "--force"),
    }
    for name, result in results.items():
        out = _out(result)
        assert result.returncode == 4, (name, out)
        assert says in out, (name, out)
        assert "INTERNALERROR" not in out, name
        assert "Traceback" not in out, name
        assert stack.live_weights() == before, name
    status = bluegreen(workdir, "status")
    assert status.returncode == 0, _out(status)


def test_a_gate_after_a_torn_first_record_switches_with_a_warning(
    workdir: Path, stack: Stack
) -> None:
    record = _intent(stack.journal_file)
    Journal(stack.journal_file).prepare()
    _tear(stack.journal_file.with_name("journal.json.alt"), record, 300)
    assert bluegreen(workdir, "status").returncode == 0
    result = gate(workdir, "--env", "green", "--switch")
    assert result.returncode == 0, _out(result)
    assert "its only record, a switch's intent torn by a crash" in result.stdout
    assert stack.served_color() == "green"


def test_recover_to_gets_past_a_journal_with_no_whole_record(workdir: Path, stack: Stack) -> None:
    path = stack.journal_file
    first, second = _intent(path, 1), _intent(path, 2)
    Journal(path).prepare()
    _tear(path.with_name("journal.json.alt"), first, 300)
    _tear(path, second, 300)
    stack.api().execute("set server api_backend/green-api weight 100")  # half a switch, maybe
    refused = gate(workdir, "--env", "green", "--switch")
    assert refused.returncode == 4, _out(refused)
    assert "no slot holds a whole record" in _out(refused)
    assert "'bluegreen recover --to COLOR'" in _out(refused)
    plain = bluegreen(workdir, "recover")
    assert plain.returncode == 4, _out(plain)
    assert "'bluegreen recover --to COLOR'" in plain.stderr
    fixed = bluegreen(workdir, "recover", "--to", "blue")
    assert fixed.returncode == 0, _out(fixed)
    assert "blue made live" in fixed.stdout
    assert f"journal {path} started anew" in fixed.stdout
    assert stack.served_color() == "blue"
    assert read_journal(path) is None
    result = gate(workdir, "--env", "green", "--switch")
    assert result.returncode == 0, _out(result)
    assert stack.served_color() == "green"


# --- files the gate would write through a symbolic link ---------------------------------------


@pytest.mark.parametrize("slot", ["journal.json", "journal.json.alt"])
@pytest.mark.parametrize("content", ["", "   \n"], ids=["empty", "blank"])
def test_a_journal_slot_that_is_a_symbolic_link_is_refused(
    tmp_path: Path, slot: str, content: str
) -> None:
    """A slot is written in place: a link planted at its name (a journal folder another user
    can write) had the gate, root, write its records into the file it named (seen: an empty
    file became 'bluegreen-journal 9 ...'). One line; the file it names is left alone."""
    path = tmp_path / "journal.json"
    victim = tmp_path / "victim"
    victim.write_text(content)
    (tmp_path / slot).symlink_to(victim)
    journal = Journal(path)
    with pytest.raises(JournalError) as caught:
        journal.prepare()
    message = str(caught.value)
    assert "\n" not in message
    assert f"journal {tmp_path / slot} is a symbolic link" in message
    with pytest.raises(JournalError):
        journal.begin(source="blue", target="green", instance=INSTANCE, prior=PRIOR)
    assert victim.read_text() == content


def test_a_journal_record_is_never_written_through_a_link(tmp_path: Path) -> None:
    """A link that appears at a slot's name after prepare(): the write fails, nothing is
    written into what it names."""
    path = tmp_path / "journal.json"
    journal = Journal(path)
    journal.prepare()
    victim = tmp_path / "victim"
    victim.write_text("")
    alt = path.with_name("journal.json.alt")
    alt.unlink()
    alt.symlink_to(victim)
    with pytest.raises(OSError, match=r"symbolic links|Too many levels"):
        journal.begin(source="blue", target="green", instance=INSTANCE, prior=PRIOR)
    assert victim.read_text() == ""


@pytest.mark.parametrize("name", ["state.json", WARM, PENDING, RECONCILE, FAULTS])
def test_a_state_file_or_record_that_is_a_symbolic_link_is_refused_before_anything(
    tmp_path: Path, name: str
) -> None:
    """The history and the records are written to a new file renamed over the old one: a link
    at their name was replaced by a plain file, and the file it named (a persistent volume's)
    silently left behind. The gate's check before anything changes says so in one line."""
    state_file = tmp_path / "state.json"
    target = tmp_path / "elsewhere" / name
    target.parent.mkdir()
    target.write_text("{}")
    (tmp_path / name).symlink_to(target)
    with pytest.raises(StateFileError) as caught:
        history.ensure_folder(state_file, "state_file")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / name} is a symbolic link (to {target})")
    assert (tmp_path / name).is_symlink()


def test_a_gate_refuses_a_journal_slot_that_is_a_symbolic_link(workdir: Path, stack: Stack) -> None:
    victim = workdir / "victim"
    victim.write_text("")
    stack.journal_file.with_name("journal.json.alt").symlink_to(victim)
    before = stack.live_weights()
    for result in (
        gate(workdir, "--env", "green", "--switch"),
        bluegreen(workdir, "switch-to", "green", "--force"),
    ):
        out = _out(result)
        assert result.returncode == 4, out
        assert "journal.json.alt is a symbolic link" in out
        assert "Traceback" not in out
        assert stack.live_weights() == before
    assert victim.read_text() == ""


# --- a history the gate could not write after its switch ----------------------------------------


def _history_unreadable(stack: Stack) -> str:
    stack.state_file.parent.mkdir(parents=True, exist_ok=True)
    stack.state_file.write_text("{not json")
    return "is not readable history"


def _history_lock_of_another_user(stack: Stack) -> str:
    """A gate once run as another user (or that user's file planted in a shared folder)."""
    lock = stack.state_file.with_name(f".{stack.state_file.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    os.chown(lock, 65534, 65534)
    return "is not a plain file of this user's (owner "


@pytest.mark.parametrize(
    "given", [_history_unreadable, _history_lock_of_another_user], ids=["unreadable", "lock"]
)
def test_a_history_that_cannot_be_written_refuses_the_switch_before_it(
    workdir: Path, stack: Stack, given: Callable[[Stack], str]
) -> None:
    """The history is appended after the switch: a history that could not be read, or its
    lock file another user's, switched traffic and then lost the entry, with a warning and
    exit 0. Checked with the folder, before anything changes: one line, exit 4."""
    said = given(stack)
    before = stack.live_weights()
    history_before = stack.state_file.read_bytes() if stack.state_file.exists() else None
    for args in (("--switch",), ("--switch", "--dry-run")):
        result = gate(workdir, "--env", "green", *args)
        out = _out(result)
        assert result.returncode == 4, out
        assert said in out
        assert "Traceback" not in out
        assert stack.live_weights() == before
        assert (stack.state_file.read_bytes() if stack.state_file.exists() else None) == (
            history_before
        )


@pytest.mark.parametrize(
    "given", [_history_unreadable, _history_lock_of_another_user], ids=["unreadable", "lock"]
)
def test_abort_refuses_before_the_record_goes_when_the_history_cannot_be_written(
    workdir: Path, stack: Stack, given: Callable[[Stack], str]
) -> None:
    """abort removed the pending promotion, then could not record that it did (a warning,
    exit 0): the record gone and no trace of it. One line, exit 4, the record kept."""
    said = given(stack)
    record = _pending(stack, age=10)
    result = bluegreen(workdir, "abort")
    out = _out(result)
    assert result.returncode == 4, out
    assert said in out
    assert "Traceback" not in out
    assert history.load_pending(stack.state_file) == record


def test_an_expired_promotion_is_kept_when_its_end_cannot_be_recorded(
    workdir: Path, stack: Stack
) -> None:
    """The expiry path removed the record, then could not write the history: both lost."""
    said = _history_unreadable(stack)
    record = _pending(stack, age=90000)
    result = bluegreen(workdir, "promote")
    out = _out(result)
    assert result.returncode == 7, out
    assert f"the pending promotion in {stack.state_file} was left: " in out
    assert said in out
    assert history.load_pending(stack.state_file) == record


# --- a file at a state file's name that is not one ----------------------------------------------

READER = """
import sys
from pathlib import Path
from pytest_bluegreen.switch import journal
from pytest_bluegreen.record import history
journal.JOURNAL_LIMIT = history.HISTORY_LIMIT = history.RECORD_LIMIT = 4096
folder, name = Path(sys.argv[1]), sys.argv[2]
try:
    if name.startswith("journal"):
        journal.read_journal(folder / "journal.json")
    elif name == "state.json":
        history.read_history(folder / name)
    else:
        {"warm-window.json": history.load_warm, "pending-promotion.json": history.load_pending,
         "reconcile.json": history.load_reconcile}[name](folder / "state.json")
except (journal.JournalError, history.StateFileError) as exc:
    print("refused:", exc)
else:
    print("read")
"""


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "not a plain file"


def _link_to_dev_zero(path: Path) -> str:
    path.symlink_to("/dev/zero")
    return "symbolic link"


def _grown(path: Path) -> str:
    with path.open("wb") as handle:
        handle.truncate(4097)
    return "larger than the 4096 bytes"


@pytest.mark.parametrize(
    "name", ["journal.json", "journal.json.alt", "state.json", WARM, PENDING, RECONCILE]
)
@pytest.mark.parametrize("make", [_fifo, _link_to_dev_zero, _grown], ids=["fifo", "zero", "huge"])
def test_a_state_file_that_is_not_a_plain_file_is_one_line_not_a_hang(
    tmp_path: Path, name: str, make: Callable[[Path], str]
) -> None:
    """A FIFO planted at the name blocked status, recover, every gate for ever; a link to
    /dev/zero (or a file grown without end) was read into memory until MemoryError."""
    said = make(tmp_path / name)
    try:
        result = subprocess.run(
            [sys.executable, "-c", READER, str(tmp_path), name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {name} ({make.__name__}) did not end")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert out.startswith("refused: "), out
    assert said in out
    assert str(tmp_path / name) in out
    assert out.count("\n") == 1


def test_the_tags_file_is_never_written_through_a_link_beside_it(tmp_path: Path) -> None:
    """It was written to a fixed ``compose-tags.tmp`` beside it, following a link planted
    there: the gate, root, overwrote the file the link named with the tags."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "compose-tags.tmp").symlink_to(victim)
    tags = TagsFile(tmp_path / "compose-tags.env")
    tags.write({"GREEN_TAG": "v1.1.0"})
    assert victim.read_text() == "precious\n"
    assert tags.tag_of("green") == "v1.1.0"
    assert not (tmp_path / "compose-tags.env").is_symlink()


def test_the_verdict_is_never_written_through_a_link_at_its_name(tmp_path: Path) -> None:
    """reports/verdict.json was written in place: a link planted there while the checks ran
    (the old verdict is removed when the gate starts) had the gate overwrite what it named."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "reports" / "verdict.json"
    path.parent.mkdir()
    path.symlink_to(victim)
    assert write_verdict(path, {"decision": "switch"}) is None
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink()
    assert json.loads(path.read_text()) == {"decision": "switch"}
    assert path.stat().st_mode & 0o777 == 0o644  # CI may read it as another user


def test_the_history_is_written_one_entry_per_line_and_read_back_the_same(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    entries = [
        history.HistoryEntry.now(
            from_color=None, to_color="blue", tag=None, outcome=history.Outcome.SWITCHED
        ),
        history.HistoryEntry.now(
            from_color="blue", to_color="green", tag='v2 "ü"', outcome=history.Outcome.ROLLED_BACK,
            reason="checks failed:\n  test_api[green]", forced=True,
        ),
    ]  # fmt: skip
    for entry in entries:
        history.append(path, entry)
    text = path.read_text()
    lines = text.splitlines()
    assert lines[:3] == ["{", '  "version": 1,', '  "history": [']
    assert [json.loads(line.strip().rstrip(",")) for line in lines[3:5]] == [
        {**e.__dict__, "outcome": e.outcome.value} for e in entries
    ]
    assert lines[5:] == ["  ]", "}"]
    assert json.loads(text)["history"][1]["reason"] == "checks failed:\n  test_api[green]"
    assert history.read_history(path) == entries
