"""Signals deferred while traffic moves.

While the gate decides and switches, SIGINT, SIGTERM and SIGHUP are only noted; the switch
looks at :attr:`DeferredSignals.received` between steps (and while it polls) and reverts, or
completes the switch when it is past its point of no return. Handlers can only be set from
the main thread; elsewhere nothing is deferred.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["DeferredSignals", "NoSignals"]

DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, FrameType | None], Any] | int | None


class DeferredSignals:
    """Notes SIGINT/SIGTERM/SIGHUP instead of acting on them, while in a ``with`` block."""

    def __init__(self) -> None:
        self.received: str | None = None  # the first signal's name
        self._previous: dict[int, Handler] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.notice(signum)

    def notice(self, signum: int) -> None:
        """Note ``signum`` as received: also when another handler caught it for us (a child
        pytest's, which passes it on: :func:`.child.run_child`'s ``on_signal``)."""
        if self.received is None:
            self.received = signal.Signals(signum).name

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in DEFERRED:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()


class NoSignals(DeferredSignals):
    """A stand-in that never receives anything (a caller that handles signals itself)."""

    def __enter__(self) -> NoSignals:
        return self
