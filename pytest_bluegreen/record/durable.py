"""Files written so that a crash leaves the old one or the new one, whole: the journal, the
history and the records, the tags file, the server-state file, ``verdict.json``; and read as
plain files at their own name, never through a link or a FIFO, never without a bound."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["read_plain", "remove_durably", "write_durably"]


def write_durably(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write ``text`` so that after a crash the file is either the old one or the new one:
    a temporary file in the same folder (mode 0600, or ``mode``), fdatasync, rename over,
    fsync of the folder. A symbolic link at ``path`` is replaced, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fdatasync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def read_plain(path: Path, limit: int) -> bytes:
    """The content of ``path``, read as a plain file at its own name and no further: never
    through a symbolic link (the gate writes these files at their name: it would not write
    what it read), never waiting (a FIFO planted at the name would block every command),
    never more than ``limit`` bytes (a link to /dev/zero, a file grown without end would take
    all memory). FileNotFoundError when absent, OSError (its strerror says why) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link, not a plain file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a plain file (a FIFO, a device or a folder)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than the {limit} bytes such a file may be")
        return b"".join(chunks)
    finally:
        os.close(fd)


def remove_durably(path: Path) -> None:
    """Remove ``path`` (if there) so that a crash cannot bring it back: the folder synced."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
