"""The backup before a deploy, the same for every engine: the backup command's output, run in
the backup service through the engine's own ``exec`` (``docker compose exec -T postgres`` or
``docker exec <a running task's container>``), streamed into ``backup_dir`` (mode 0600, a
temporary file renamed when complete), bounded by ``backup_timeout``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.settings import ComposeSettings

__all__ = ["run_backup"]


def run_backup(
    s: ComposeSettings,
    exec_prefix: Sequence[str],
    color: str,
    tag: str,
    progress: Callable[[str], None],
) -> Path:
    """Run ``backup_command`` after ``exec_prefix``; the backup's path. Raises DeployError."""
    assert s.backup_command, "run_backup needs a backup_command"
    progress(f"backing up {s.backup_service} ({s.backup_command[0]}) before deploying {color}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = s.backup_dir / f"{stamp}-{color}-{tag}.backup"
    partial = path.with_name(path.name + ".partial")
    command = [*exec_prefix, *s.backup_command]
    try:
        s.backup_dir.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(partial, flags, 0o600)  # a link planted at the name is not followed
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
        os.replace(partial, path)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise DeployError(
            f"backup timed out after {s.backup_timeout:g}s ({s.backup_command[0]} in "
            f"{s.backup_service}); raise backup_timeout or check the service"
        ) from None
    except OSError as exc:  # disk full, no permission, no docker CLI
        partial.unlink(missing_ok=True)
        raise DeployError(f"backup could not be written to {path}: {exc}") from None
    except DeployError:
        partial.unlink(missing_ok=True)
        raise
    return path
