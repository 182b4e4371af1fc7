"""The backup before a deploy (``engines/backup.py``), with a real command standing for the
backup service's ``pg_dump`` (the engine's ``exec`` prefix empty): the file is whole or not
there, 0600, never over another backup, and nothing half-written is left behind."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.engines import backup
from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.settings import ComposeSettings

DUMP = [sys.executable, "-c", "import sys; sys.stdout.write('dump of ' + sys.argv[1])"]


def settings(tmp_path: Path, command: list[str], timeout: float = 600.0) -> ComposeSettings:
    return replace(
        ComposeSettings(),
        backup_service="postgres",
        backup_command=tuple(command),
        backup_dir=tmp_path / "backups",
        backup_timeout=timeout,
    )


def left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "backups").iterdir())


class OneSecond(datetime):
    """The clock stopped in one second: both backups are taken in it."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> OneSecond:
        return cls(2026, 12, 7, 8, 0, 0, tzinfo=tz)


def test_two_backups_in_one_second_are_two_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name has the second it was taken in: the second backup of the same color and tag
    in that second gets ``-2``, the first stays as it was."""
    monkeypatch.setattr("pytest_bluegreen.engines.backup.datetime", OneSecond)
    first = backup.run_backup(settings(tmp_path, [*DUMP, "one"]), [], "green", "v1", print)
    second = backup.run_backup(settings(tmp_path, [*DUMP, "two"]), [], "green", "v1", print)
    assert first.name == "20261207T080000Z-green-v1.backup"
    assert second.name == "20261207T080000Z-green-v1-2.backup"
    assert (first.read_text(), second.read_text()) == ("dump of one", "dump of two")
    assert left(tmp_path) == sorted([first.name, second.name])
    assert stat.S_IMODE(first.stat().st_mode) == 0o600


def test_a_backup_cut_off_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM made an exception) while the dump runs: no ``.partial`` is left."""
    real_run = subprocess.run

    def interrupted(*args: Any, **kwargs: Any) -> object:
        real_run(*args, **kwargs)  # the dump has written part of its output
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)  # as the module calls it
    with pytest.raises(KeyboardInterrupt):
        backup.run_backup(settings(tmp_path, [*DUMP, "x"]), [], "green", "v1", print)
    assert left(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([sys.executable, "-c", "import sys; print('half'); sys.exit('pg_dump: no such db')"],
         "exit 1): pg_dump: no such db"),
        ([sys.executable, "-c", "import time; print('half', flush=True); time.sleep(30)"],
         "backup timed out after 0.5s"),
        (["/nonexistent/pg_dump"], "backup could not be written to"),
    ],
    ids=["fails", "times-out", "no-command"],
)  # fmt: skip
def test_a_failed_backup_is_one_line_and_leaves_nothing(
    tmp_path: Path, command: list[str], message: str
) -> None:
    with pytest.raises(DeployError, match=re.escape(message)) as raised:
        backup.run_backup(settings(tmp_path, command, timeout=0.5), [], "green", "v1", print)
    assert "\n" not in str(raised.value)
    assert left(tmp_path) == []


def test_a_link_planted_at_the_name_is_not_written_through(tmp_path: Path) -> None:
    """Someone links the names the next backup may take (this second's and the next's) to a
    file of theirs: the backup goes to a name of its own, their file is untouched."""
    s = settings(tmp_path, [*DUMP, "secret rows"])
    s.backup_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("theirs")
    now = time.time()
    for second in (now, now + 1):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        os.symlink(victim, s.backup_dir / f"{stamp}-green-v1.backup")
    made = backup.run_backup(s, [], "green", "v1", print)
    assert victim.read_text() == "theirs"
    assert made.read_text() == "dump of secret rows"
    assert not made.is_symlink()
    assert made.name.endswith("-green-v1-2.backup")
