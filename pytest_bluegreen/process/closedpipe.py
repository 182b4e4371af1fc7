"""A reader that goes away (``bluegreen status | head -3``): the rest of the output is dropped,
the command runs to its end and exits with its own code, without a traceback.

Unix tools die of SIGPIPE there; ``bluegreen`` does not stop, because a command may be moving
traffic: a switch cut short because nobody reads its progress any more would leave HAProxy
half-switched. So stdout and stderr are replaced by streams over the same descriptors that,
when a write finds the pipe closed, point the descriptor at ``/dev/null`` (Python's own advice,
so that its final flush succeeds too) and carry on. The check suite's pytest, run as a child,
gets the same streams (``python -m pytest_bluegreen.process.closedpipe ARGS``).
"""

from __future__ import annotations

import atexit
import io
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["quiet_closed_pipes"]


class _DroppingWhenClosed(io.RawIOBase):
    """A descriptor's writes; once its reader is gone, to /dev/null instead."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        try:
            return os.write(self._fd, view)
        except BrokenPipeError:
            _to_devnull(self._fd)
            return len(view)


def _to_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def quiet_closed_pipes(*, line_buffering: bool | None = None) -> None:
    """Replace ``sys.stdout`` and ``sys.stderr`` (when they are files) by streams that drop
    what their closed pipe no longer takes. ``line_buffering``: the new streams' (default:
    the old ones'); a stream that nothing else flushes (pytest flushes the one its capture
    saved, not this one) needs it for its lines to come out as they are written."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not getattr(sys, f"__{name}__") or not isinstance(stream, io.TextIOWrapper):
            continue  # already replaced (captured by a test, or called twice)
        try:
            fd = stream.fileno()
        except (OSError, ValueError):
            continue  # not a file
        try:
            stream.flush()
        except BrokenPipeError:  # what it held goes to /dev/null, so no flush fails at exit
            _to_devnull(fd)
            stream.flush()
        quiet = io.TextIOWrapper(
            io.BufferedWriter(_DroppingWhenClosed(fd)),
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering if line_buffering is None else line_buffering,
            write_through=stream.write_through,
        )
        setattr(sys, name, quiet)
        # flushed at exit even when something else is sys.stdout by then (pytest's capture
        # restores the stream it saved; its terminal reporter keeps writing to this one)
        atexit.register(quiet.flush)


def _pytest_main() -> int:
    quiet_closed_pipes()
    import pytest  # noqa: PLC0415 - after the streams are replaced, so pytest writes to them

    return int(pytest.main())  # the arguments: sys.argv[1:]


if __name__ == "__main__":
    raise SystemExit(_pytest_main())
