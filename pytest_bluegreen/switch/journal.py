"""The switch's write-ahead record: intent, prior states, steps done, outcome.

Before the first Runtime API command that changes anything, the switch writes the intent
(target, every server's prior weight and admin state, the HAProxy instance's identity) to the
journal, durably (see :class:`Journal`). Each step appends its progress the same way; the
outcome closes it. A journal that is still
``open`` means a switch was cut off (``SIGKILL``, power loss): every later gate run and every
``bluegreen`` command that changes traffic refuses until ``bluegreen recover`` has brought
HAProxy to a consistent state and closed it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import OutOfOrder, Refused, UsageError
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef, ServerState
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.record.durable import read_plain, write_durably
from pytest_bluegreen.redaction import mask_credentials

__all__ = [
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalMember",
    "PriorState",
    "UnfinishedJournal",
    "read_journal",
]

OPEN, CLOSED = "open", "closed"


class JournalError(UsageError):
    """The journal file exists but cannot be read."""


class UnfinishedJournal(Refused):
    """A switch was cut off: nothing changes traffic until ``bluegreen recover``."""

    def __init__(self, path: Path, entry: JournalEntry) -> None:
        self.path = path
        self.entry = entry
        steps = ", ".join(s["step"] for s in entry.steps) or "none"
        super().__init__(
            f"refused: an unfinished switch {entry.source or '(none)'} -> {entry.target} "
            f"(started {entry.started} by pid {entry.pid} on {entry.host}; steps done: {steps}) "
            f"is recorded in {path}; run 'bluegreen recover' (or 'bluegreen recover --to "
            "COLOR') to bring HAProxy to a consistent state first"
        )


def _flat(record: Any) -> dict[str, Any]:
    """A record's fields as they are: ``asdict`` without its deep copy, which cost a switch
    over twenty instances more than its sync before the first change."""
    kind = type(record)
    if kind not in _FIELDS:
        _FIELDS[kind] = tuple(f.name for f in fields(kind))
    return {name: getattr(record, name) for name in _FIELDS[kind]}


_FIELDS: dict[type, tuple[str, ...]] = {}  # a record type's field names, read once


@dataclass(frozen=True)
class PriorState:
    server: str  # backend/server
    weight: int
    admin: str  # ready | drain | maint

    @classmethod
    def of(cls, state: ServerState) -> PriorState:
        return cls(str(state.ref), state.uweight, state.admin.value)

    @property
    def ref(self) -> ServerRef:
        return ServerRef.parse(self.server)

    @property
    def admin_state(self) -> AdminState:
        return AdminState(self.admin)


@dataclass(frozen=True)
class JournalMember:
    """One HAProxy instance of a switch over several: its name, process and prior states."""

    name: str
    instance: InstanceIdentity
    prior: tuple[PriorState, ...]

    @classmethod
    def of(
        cls, name: str, instance: InstanceIdentity, prior: Mapping[ServerRef, ServerState]
    ) -> JournalMember:
        return cls(name, instance, tuple(PriorState.of(s) for s in prior.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instance": _flat(self.instance),
            "prior": [_flat(p) for p in self.prior],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalMember:
        return cls(
            name=str(data["name"]),
            instance=InstanceIdentity(**data["instance"]),
            prior=tuple(PriorState(**p) for p in data["prior"]),
        )


@dataclass(frozen=True)
class JournalEntry:
    id: str
    status: str  # open | closed
    started: str
    host: str
    pid: int  # the gate's process
    source: str | None
    target: str
    instance: InstanceIdentity
    prior: tuple[PriorState, ...]
    steps: tuple[dict[str, Any], ...] = ()
    outcome: str | None = None
    detail: str = ""
    # every instance of the switch; empty in a single-instance record (``instance``/``prior``)
    members: tuple[JournalMember, ...] = ()

    @property
    def open(self) -> bool:
        return self.status == OPEN

    def every_member(self, default_name: str) -> tuple[JournalMember, ...]:
        """The instances to restore: the members, else the one instance as ``default_name``."""
        return self.members or (JournalMember(default_name, self.instance, self.prior),)

    def to_json(self) -> dict[str, Any]:
        data = _flat(self)
        data["instance"] = _flat(self.instance)
        data["steps"] = list(self.steps)
        data["prior"] = [_flat(p) for p in self.prior]
        data["members"] = [m.to_json() for m in self.members]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalEntry:
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            started=str(data["started"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            source=data.get("source"),
            target=str(data["target"]),
            instance=InstanceIdentity(**data["instance"]),
            prior=tuple(PriorState(**p) for p in data["prior"]),
            steps=tuple(data.get("steps", ())),
            outcome=data.get("outcome"),
            detail=str(data.get("detail", "")),
            members=tuple(JournalMember.from_json(m) for m in data.get("members", ())),
        )


def _slots(path: Path) -> tuple[Path, Path]:
    """The journal's two slots: records are written to them in turn."""
    return path, path.with_name(path.name + ".alt")


SLOT_SIZE = 65536  # slots are made this big once, so a record's sync writes data only
JOURNAL_LIMIT = 64 * 1024 * 1024  # a slot read is at most this (a record of many servers)
_BLANK = " " * (SLOT_SIZE - 1) + "\n"
_MAGIC = "bluegreen-journal"


def _encode(seq: int, entry: JournalEntry) -> bytes:
    """``bluegreen-journal SEQ CRC LENGTH`` then the record's JSON: the header says how much
    of the slot is this record (an older, longer record's tail may follow)."""
    payload = json.dumps(entry.to_json(), separators=(",", ":")).encode()  # no indent: C-fast
    return f"{_MAGIC} {seq} {zlib.crc32(payload)} {len(payload)}\n".encode() + payload


def _decode(data: bytes) -> tuple[int, JournalEntry] | None:
    """A slot's record, or None when the slot is empty or was torn by a crash mid-write."""
    head, sep, rest = data.partition(b"\n")
    fields = head.decode(errors="replace").split()
    if not sep or len(fields) != 4 or fields[0] != _MAGIC:
        return None
    try:
        seq, crc, length = (int(f) for f in fields[1:])
        payload = rest[:length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        return seq, JournalEntry.from_json(json.loads(payload))
    except (ValueError, KeyError, TypeError, RecursionError):  # not a record: as a torn one
        return None


@dataclass(frozen=True)
class _Latest:
    seq: int
    entry: JournalEntry | None
    torn_first: bool = False  # the one record ever written is torn: see _torn_first


def _latest(path: Path) -> _Latest:
    found: list[tuple[int, JournalEntry]] = []
    written: list[tuple[int, bytes]] = []  # (slot index, content) of the slots not blank
    for index, slot in enumerate(_slots(path)):
        try:
            data = read_plain(slot, JOURNAL_LIMIT)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise JournalError(
                f"journal {slot} is not readable: {exc.strerror or exc} (set journal_file to a "
                "file in a folder this user can read and write)"
            ) from None
        if data.strip():
            written.append((index, data))
        record = _decode(data)
        if record is not None:
            found.append(record)
    if found:
        seq, entry = max(found, key=lambda record: record[0])
        return _Latest(seq, entry)
    if not written:
        return _Latest(0, None)
    if _torn_first(written):
        return _Latest(0, None, torn_first=True)
    raise JournalError(
        f"journal {path}: no slot holds a whole record, so it cannot say what a switch "
        "changed; look at HAProxy ('bluegreen status'), then 'bluegreen recover --to COLOR' "
        "makes COLOR live on every instance and starts a new journal"
    )


def _torn_first(written: Sequence[tuple[int, bytes]]) -> bool:
    """No slot holds a whole record: is it the journal's *first* record that is torn?

    The write order makes that case safe. The first record of a journal is a switch's intent,
    sequence 1, written into the ``.alt`` slot (``seq % 2``) and synced before
    :meth:`Journal.begin` returns, and ``begin`` returns before the switch's first Runtime API
    command. Records then alternate between the two slots, so once a second record exists
    both slots have been written, and a later torn write leaves the other slot's record
    whole. So when the main slot was never written (blank or absent) and the ``.alt`` slot's
    header, where it is legible, says sequence 1, the one record ever written is an intent
    that never became durable: the switch it announced sent no command, and HAProxy is as
    that gate found it. Anything else (both slots written, another sequence) may hide a
    switch cut off half-way, and is refused."""
    if len(written) != 1 or written[0][0] != 1:
        return False
    fields = written[0][1].partition(b"\n")[0].decode(errors="replace").split()
    if len(fields) >= 2 and fields[0] == _MAGIC:
        return fields[1] == "1"
    return True  # the header itself was not written whole


def _plain_or_absent(slot: Path) -> None:
    """A slot is written in place: through a symbolic link at its name, a record would go into
    whatever file the link names (a gate run as root into any file). JournalError, one line."""
    try:
        info = os.lstat(slot)
    except (FileNotFoundError, NotADirectoryError):
        return  # absent (a folder that cannot be made is said by prepare's own write)
    except OSError as exc:
        raise JournalError(
            f"cannot read the journal {slot}: {exc.strerror or exc} (set journal_file to a "
            "file in a folder this user can write)"
        ) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a plain file"
        raise JournalError(
            f"journal {slot} is {what}: a switch writes its records in place and would write "
            "them into what it names; remove it, or set journal_file to a plain file's path"
        )


def read_journal(path: Path) -> JournalEntry | None:
    """The journal's latest whole record, or None when there is none (a torn first record
    counts as none: see :func:`_torn_first`)."""
    return _latest(path).entry


@dataclass
class Journal:
    """The journal kept in ``path`` (and its ``.alt`` twin).

    Records go to two slot files in turn, each with a sequence number, a length and a
    checksum, written in place and synced with one ``fdatasync``: a write torn by a crash
    leaves the other slot's record, the one before, whole. The slots are created once,
    durably and at their full size, by :meth:`prepare` (a gate calls it under its lock,
    before any switch), so that the intent before the first change costs one data-only sync
    (about 0.1 ms here, against 1 ms for a new file renamed into place).
    """

    path: Path
    entry: JournalEntry | None = field(default=None)
    seq: int = 0
    _checked: bool = field(default=False, repr=False)  # prepare() read the latest record
    # what a step's text facts and the outcome's detail go through before they are written (an
    # error names the routed URL, with its password): the session's Secrets.redact, else the
    # rule that hides any URL's password
    redact: Callable[[str], str] = field(default=mask_credentials, repr=False)

    def prepare(self) -> list[str]:
        """Refuse an unfinished journal; create the slot files (durably) if they are missing;
        discard a torn first record (see :func:`_torn_first`). Called by a gate under its
        lock, so that :meth:`begin` need not read them again. Returns the warnings to show.

        Raises UnfinishedJournal, JournalError (no whole record where one may matter, or the
        journal's folder cannot be written: one line, nothing changed)."""
        for slot in _slots(self.path):
            _plain_or_absent(slot)
        latest = _latest(self.path)
        if latest.entry is not None and latest.entry.open:
            raise UnfinishedJournal(self.path, latest.entry)
        notes: list[str] = []
        try:
            if latest.torn_first:
                write_durably(_slots(self.path)[1], _BLANK)
                notes.append(
                    f"warning: journal {self.path}: its only record, a switch's intent torn by "
                    "a crash before it was written whole, was discarded (that switch sent no "
                    "command: nothing follows an intent that is not whole)"
                )
            for slot in _slots(self.path):
                if not slot.exists():
                    write_durably(slot, _BLANK)
        except OSError as exc:
            raise JournalError(
                f"cannot write the journal {self.path}: {exc.strerror or exc} (set "
                "journal_file to a file in a folder this user can write)"
            ) from None
        self.seq, self._checked = latest.seq, True
        return notes

    def restart(self) -> None:
        """Start a new journal: both slots blank, durably (``bluegreen recover --to`` after a
        journal with no whole record, once HAProxy is consistent again)."""
        for slot in _slots(self.path):
            write_durably(slot, _BLANK)
        self.seq, self.entry, self._checked = 0, None, False

    def begin(
        self,
        *,
        source: str | None,
        target: str,
        instance: InstanceIdentity,
        prior: Mapping[ServerRef, ServerState],
        members: Sequence[JournalMember] = (),
    ) -> JournalEntry:
        if not self._checked:
            self.prepare()
        self._checked = False  # the next begin (after this switch) reads again
        self.entry = JournalEntry(
            id=uuid.uuid4().hex,
            status=OPEN,
            started=datetime.now(UTC).isoformat(timespec="milliseconds"),
            host=socket.gethostname(),
            pid=os.getpid(),
            source=source,
            target=target,
            instance=instance,
            prior=tuple(PriorState.of(s) for s in prior.values()),
            members=tuple(members) if len(members) > 1 else (),
        )
        self._write()
        return self.entry

    def resume(self, entry: JournalEntry) -> None:
        """Continue an existing record (recovery closes what a cut-off switch left open)."""
        self.seq = _latest(self.path).seq
        self.entry = entry

    def step(self, name: str, **facts: Any) -> None:
        if self.entry is None:
            raise OutOfOrder("journal: a step before begin()")
        facts = {k: self.redact(v) if isinstance(v, str) else v for k, v in facts.items()}
        record = {"step": name, "at": round(time.time(), 3), **facts}
        self.entry = replace(self.entry, steps=(*self.entry.steps, record))
        self._write()

    def close(self, outcome: str, detail: str = "") -> None:
        if self.entry is None:
            raise OutOfOrder("journal: close() before begin()")
        detail = self.redact(detail)
        self.entry = replace(self.entry, status=CLOSED, outcome=outcome, detail=detail)
        self._write()

    def _write(self) -> None:
        """The record into the next slot, in place, then one fdatasync."""
        if self.entry is None:
            raise OutOfOrder("journal: a write before begin()")
        self.seq += 1
        slot = _slots(self.path)[self.seq % 2]
        record = _encode(self.seq, self.entry)
        if not slot.exists():  # not prepared: create it durably (two syncs)
            write_durably(slot, record.decode())
            return
        # never through a symbolic link planted at a slot's name (prepare refuses one too)
        fd = os.open(slot, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.pwrite(fd, record, 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
