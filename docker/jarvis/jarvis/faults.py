"""Request faults of the drill's known-bad builds that depend on how a request was routed.

Standard library only, and nothing of the package: the suite loads this file on its own
(tests/shipped/test_jarvis_faults.py) where the API's database clients are not installed.
"""

from __future__ import annotations

import threading

# HAProxy's public frontends set it on every request: "routed" (user traffic, by the weights)
# or "preview" (the preview route); the colors' direct ports take it out, so a request made to
# a color's own port (the gate's checks) carries none
ROUTE_HEADER = "X-Bluegreen-Route"
ROUTED_FLAKY_EVERY = 20  # a "-routedflaky" build answers 500 on every 20th routed /api/* (5%)


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
