"""A child pytest whose gate must end by itself: ``bluegreen switch-to``, ``rollback``,
``deploy``, ``check``, ``drill`` and ``init`` run the checks in a child process, and a Ctrl-C or
SIGTERM to ``bluegreen`` must reach that child's gate as a signal it defers (it reverts before
its point of no return, completes after it), never as a SIGKILL halfway through a switch.

``subprocess.run`` kills its child when the parent is interrupted (after a 0.25 s grace): here
the child runs in its own process group (so a terminal's Ctrl-C reaches it once, through us),
SIGINT, SIGTERM and SIGHUP sent to ``bluegreen`` are passed on to it, and ``bluegreen`` waits
for its exit status, which is the documented one of the gate.

A ``bluegreen`` that dies itself (SIGKILL, the OOM killer, a CI runner killing the command) can
pass nothing on, and its child, in a process group of its own, would go on alone: its gate
would switch minutes after the command that asked for it was gone. So the child asks the kernel
for a SIGTERM when ``bluegreen`` dies (:func:`follow_parent`, Linux's ``PR_SET_PDEATHSIG``), and
its gate ends as after a SIGTERM passed on (nothing moved before its point of no return, the
switch completed after it).

A child that dies of a signal (a pytest with no gate has no handler for SIGTERM) has no exit
status of its own: its death becomes the documented code, never Python's -N taken modulo 256
(241 for SIGTERM): 2 "interrupted" for the signals passed on (SIGINT, SIGTERM, SIGHUP), 3
"internal error" for any other (SIGKILL, SIGSEGV), with one line saying which.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from pytest_bluegreen.errors import ExitCode

__all__ = ["exit_code_of", "follow_parent", "run_child"]

PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARENT_VARIABLE = "BLUEGREEN_PARENT_PID"  # set by run_child, read by follow_parent
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_code_of(returncode: int) -> int:
    """A child's exit status as ours: its own, or for a death by signal the documented code
    (saying so on stderr)."""
    if returncode >= 0:
        return returncode
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode in PASSED_ON:
        print(f"bluegreen: the child pytest ended on {name}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    print(f"bluegreen: the child pytest was killed by {name}", file=sys.stderr)
    return int(ExitCode.INTERNAL_ERROR)


def run_child(
    command: Sequence[str], *, on_signal: Callable[[int], None] | None = None, **popen: Any
) -> int:
    """Run ``command`` to its end, passing on the signals we get (and telling ``on_signal``
    of each: the caller's own handlers are not called meanwhile); its exit status."""
    in_main = threading.current_thread() is threading.main_thread()
    env = {**popen.pop("env", os.environ), PARENT_VARIABLE: str(os.getpid())}
    process = subprocess.Popen(
        list(command), process_group=0 if in_main else None, env=env, **popen
    )
    if not in_main:  # no handlers outside the main thread: the child shares our fate
        return exit_code_of(process.wait())

    def pass_on(signum: int, frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)
        if on_signal is not None:
            on_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in PASSED_ON}
    try:
        return exit_code_of(process.wait())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def follow_parent() -> None:
    """In a pytest :func:`run_child` started (its plugin calls this when it configures): a
    SIGTERM from the kernel when ``bluegreen`` dies, as if it had passed one on; at once if it
    is gone already. Linux only (elsewhere nothing changes); the variable is removed, so the
    processes this one starts do not take ``bluegreen`` for their parent."""
    expected = os.environ.pop(PARENT_VARIABLE, None)
    if expected is None or not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415 - only in a child of bluegreen

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != expected:  # died before the request: no signal would come
        os.kill(os.getpid(), signal.SIGTERM)
