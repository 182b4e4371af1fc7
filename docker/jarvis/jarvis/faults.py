"""Request faults of the Jarvis API: the drill's known-bad builds' fault that depends on how a
request was routed (:class:`RoutedFlaky`), and the faults injected from the environment at
deploy time (:class:`InjectedFaults`: extra latency, a share of 500 answers), which
``bluegreen drill --power`` deploys to the idle color to measure how sensitive the gate is.

Standard library only, and nothing of the package: the suite loads this file on its own
(tests/shipped/test_jarvis_faults.py) where the API's database clients are not installed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping

# HAProxy's public frontends set it on every request: "routed" (user traffic, by the weights)
# or "preview" (the preview route); the colors' direct ports take it out, so a request made to
# a color's own port (the gate's checks) carries none
ROUTE_HEADER = "X-Bluegreen-Route"
ROUTED_FLAKY_EVERY = 20  # a "-routedflaky" build answers 500 on every 20th routed /api/* (5%)

# the injected faults' variables (docker/docker-compose.blue-green.yml passes each color's
# <COLOR>_FAULT_... to its backend under these names)
LATENCY_MS = "JARVIS_FAULT_LATENCY_MS"  # extra milliseconds on /api/* (0: none)
LATENCY_SHARE = "JARVIS_FAULT_LATENCY_SHARE"  # the share of /api/* requests delayed (1: all)
ERROR_RATE = "JARVIS_FAULT_ERROR_RATE"  # the share of /api/* requests answering 500 (0: none)
MOST_LATENCY_MS = 60_000.0
_SCALE = 1_000_000  # a share counted in millionths: the accumulator adds whole numbers


class RoutedFlaky:
    """A "-routedflaky" build's fault: every ROUTED_FLAKY_EVERY-th /api/* request that HAProxy
    routed to the color as user traffic fails. Direct and preview requests neither fail nor
    count, so every check before the switch passes and only a canary on routed traffic sees
    it. Safe across the threads the API serves requests on: exactly one in 20 routed fails."""

    def __init__(self, every: int = ROUTED_FLAKY_EVERY) -> None:
        self.every = every
        self._routed = 0
        self._lock = threading.Lock()

    def fails(self, route: str | None) -> bool:
        """Whether this request fails; ``route``: its ROUTE_HEADER value (None: not sent)."""
        if route != "routed":
            return False
        with self._lock:
            self._routed += 1
            return self._routed % self.every == 0


class EvenShare:
    """Picks ``share`` of the events, spread evenly: of the first n, exactly round(n * share)
    (halves up), the picked ones as far apart as they can be (an accumulator of millionths,
    not a random draw, so a short check sees its share). Safe across threads."""

    def __init__(self, share: float) -> None:
        if math.isnan(share) or not 0.0 <= share <= 1.0:
            raise ValueError(f"a share is in 0..1, got {share!r}")
        self.step = round(share * _SCALE)
        self._sum = _SCALE // 2  # half a step ahead: the first pick at n = 1 / (2 * share)
        self._lock = threading.Lock()

    def pick(self) -> bool:
        if self.step == 0:
            return False
        with self._lock:
            self._sum += self.step
            if self._sum < _SCALE:
                return False
            self._sum -= _SCALE
            return True


def _number(environ: Mapping[str, str], name: str, default: float, high: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if math.isnan(value) or not 0.0 <= value <= high:
        raise ValueError(f"{name}={raw!r} is not in 0..{high:g}")
    return value


class InjectedFaults:
    """Faults on every /api/* request, from the environment (none by default): ``latency_ms``
    more on a ``latency_share`` of them, and a 500 answer on an ``error_rate`` of them."""

    def __init__(
        self, latency_ms: float = 0.0, latency_share: float = 1.0, error_rate: float = 0.0
    ) -> None:
        self.latency_ms = latency_ms
        self.latency_share = latency_share
        self.error_rate = error_rate
        self._delayed = EvenShare(latency_share if latency_ms else 0.0)
        self._failed = EvenShare(error_rate)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> InjectedFaults:
        """Raises ValueError naming the variable whose value is not one."""
        return cls(
            latency_ms=_number(environ, LATENCY_MS, 0.0, MOST_LATENCY_MS),
            latency_share=_number(environ, LATENCY_SHARE, 1.0, 1.0),
            error_rate=_number(environ, ERROR_RATE, 0.0, 1.0),
        )

    @property
    def any(self) -> bool:
        return bool(self.latency_ms and self.latency_share) or bool(self.error_rate)

    def delay(self) -> float:
        """Seconds to add to this /api/* request (0.0 for most, when only a tail is slowed)."""
        return self.latency_ms / 1000 if self._delayed.pick() else 0.0

    def fails(self) -> bool:
        """Whether this /api/* request answers 500."""
        return self._failed.pick()

    def describe(self) -> str:
        parts = []
        if self.latency_ms and self.latency_share:
            on = "every" if self.latency_share == 1 else f"{self.latency_share:.0%} of the"
            parts.append(f"+{self.latency_ms:g} ms on {on} /api/* request(s)")
        if self.error_rate:
            parts.append(f"HTTP 500 on {self.error_rate:.2%} of /api/* requests")
        return "; ".join(parts) or "none"
