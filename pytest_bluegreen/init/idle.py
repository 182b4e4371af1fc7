"""Which color ``bluegreen init`` runs its first dry run on: the idle one, as HAProxy says, else
as the configuration starts it."""

from __future__ import annotations

from pytest_bluegreen.errors import BluegreenError
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch.reading import live_color

__all__ = ["idle_color"]


def idle_color(settings: Settings, configured: str | None, *, ask_haproxy: bool) -> tuple[str, str]:
    """The color taking no traffic, and why: as HAProxy says, else as the configuration starts
    it (``configured``), else the second color."""
    topology = settings.topology
    reason = "no Runtime API to ask"
    if ask_haproxy:
        try:
            live = live_color(settings.haproxies(), topology)
        except (BluegreenError, RuntimeApiError, OSError) as exc:
            reason = f"HAProxy's Runtime API does not answer: {exc}"
        else:
            if live is not None:
                return topology.other(live), f"HAProxy sends the traffic to {live}"
            reason = "HAProxy sends traffic to neither or both colors"
    if configured is not None:
        return configured, f"as the configuration starts it; {reason}"
    return topology.colors[1], f"guessed; {reason}"
