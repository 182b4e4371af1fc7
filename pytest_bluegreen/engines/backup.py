"""The backup before a deploy, the same for every engine: the backup command's output, run in
the backup service through the engine's own ``exec`` (``docker compose exec -T postgres`` or
``docker exec <a running task's container>``), streamed into ``backup_dir`` (mode 0600, a
temporary file linked at its name when complete, never over another backup), bounded by
``backup_timeout``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.settings import ComposeSettings

__all__ = ["run_backup"]

_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def run_backup(
    s: ComposeSettings,
    exec_prefix: Sequence[str],
    color: str,
    tag: str,
    progress: Callable[[str], None],
) -> Path:
    """Run ``backup_command`` after ``exec_prefix``; the backup's path. Raises DeployError.

    The output goes to a file of its own (``tempfile``: 0600, never a planted link), published
    under its final name only when complete and never over another backup (two in one second
    are two files); whatever ends the run early (a failure, a timeout, Ctrl-C) removes it."""
    if not s.backup_command:
        raise DeployError("no backup_command is set: nothing to back up with")
    progress(f"backing up {s.backup_service} ({s.backup_command[0]}) before deploying {color}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = s.backup_dir / f"{stamp}-{color}-{tag}.backup"
    command = [*exec_prefix, *s.backup_command]
    partial: Path | None = None
    try:
        s.backup_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=s.backup_dir, prefix=f".{path.name}.", suffix=".partial")
        partial = Path(name)
        with os.fdopen(fd, "wb") as out:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.PIPE,
                timeout=s.backup_timeout,
                check=False,
            )
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()
            raise DeployError(
                f"backup failed ({s.backup_command[0]} exit {done.returncode}): "
                f"{error[-1] if error else 'no message'}"
            )
        return _publish(partial, path)
    except subprocess.TimeoutExpired:
        raise DeployError(
            f"backup timed out after {s.backup_timeout:g}s ({s.backup_command[0]} in "
            f"{s.backup_service}); raise backup_timeout or check the service"
        ) from None
    except OSError as exc:  # disk full, no permission, no docker CLI
        raise DeployError(f"backup could not be written to {path}: {exc}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)  # published (a second name) or given up


def _publish(partial: Path, path: Path) -> Path:
    """``partial`` linked at ``path``, or at ``path`` with ``-2``, ``-3`` ... when another
    backup has that name: a link never replaces a file."""
    for n in range(1, 1000):
        wanted = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.link(partial, wanted)
        except FileExistsError:
            continue
        except OSError as exc:  # a file system without hard links (EPERM, ENOTSUP)
            if exc.errno not in _NO_LINKS:
                raise
            if wanted.exists():
                continue
            os.rename(partial, wanted)
        return wanted
    raise DeployError(f"backup not kept: {path} and 998 more of its names are taken")
