"""A child pytest whose gate must end by itself: ``bluegreen switch-to``, ``rollback``,
``deploy``, ``check``, ``drill`` and ``init`` run the checks in a child process, and a Ctrl-C or
SIGTERM to ``bluegreen`` must reach that child's gate as a signal it defers (it reverts before
its point of no return, completes after it), never as a SIGKILL halfway through a switch.

``subprocess.run`` kills its child when the parent is interrupted (after a 0.25 s grace): here
the child runs in its own process group (so a terminal's Ctrl-C reaches it once, through us),
SIGINT, SIGTERM and SIGHUP sent to ``bluegreen`` are passed on to it, and ``bluegreen`` waits
for its exit status, which is the documented one of the gate.

A child that dies of a signal (a pytest with no gate has no handler for SIGTERM) has no exit
status of its own: its death becomes the documented code, never Python's -N taken modulo 256
(241 for SIGTERM): 2 "interrupted" for the signals passed on (SIGINT, SIGTERM, SIGHUP), 3
"internal error" for any other (SIGKILL, SIGSEGV), with one line saying which.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from .errors import ExitCode

__all__ = ["exit_code_of", "run_child"]

PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def run_child(command: Sequence[str], **popen: Any) -> int:
    """Run ``command`` to its end, passing on the signals we get; its exit status."""
    in_main = threading.current_thread() is threading.main_thread()
    process = subprocess.Popen(list(command), process_group=0 if in_main else None, **popen)
    if not in_main:  # no handlers outside the main thread: the child shares our fate
        return exit_code_of(process.wait())

    def pass_on(signum: int, frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in PASSED_ON}
    try:
        return exit_code_of(process.wait())
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
