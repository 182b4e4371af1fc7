"""The switch's ``verify`` step: the routed URL polled until the target answers
``verify_responses`` times in a row, through every instance's routed URL at once (the group's
threads, :meth:`~pytest_bluegreen.haproxy.instances.Haproxies.run`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial

import requests

from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.process.signals import DeferredSignals
from pytest_bluegreen.settings import SwitchingSettings, Topology

from .outcome import Abort, Verification, VerifyError

__all__ = ["POLL_INTERVAL", "verify", "verify_every", "verify_urls"]


POLL_INTERVAL = 0.02


def verify(
    switching: SwitchingSettings,
    topology: Topology,
    target: str,
    deadline: float,
    signals: DeferredSignals | None = None,
    *,
    url: str | None = None,
) -> Verification:
    """Poll the routed URL (``url``, default ``verify_url``) until ``verify_responses`` answers
    in a row come from ``target``. A signal noted in ``signals`` stops the wait (before the
    point of no return)."""
    url = url or switching.verify_url
    streak = 0
    first = 0.0
    version: str | None = None
    last = "no answer yet"
    with requests.Session() as session:
        while True:
            if signals is not None and signals.received:
                raise Abort(f"interrupted by {signals.received}")
            try:
                response = session.get(
                    url,
                    timeout=max(min(deadline - time.monotonic(), 2.0), 0.05),
                    headers={"Connection": "close"},
                )
                answer = topology.answered_by(response)
                if response.ok and answer.color == target:
                    if streak == 0:
                        first = time.monotonic()
                    streak += 1
                    version = answer.version or version
                    if streak >= switching.verify_responses:
                        return Verification(first, version, streak)
                else:
                    streak = 0
                    last = f"HTTP {response.status_code} from color {answer.color or 'unknown'}"
            except requests.RequestException as exc:
                streak = 0
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise VerifyError(
                    f"{url} did not answer from {target} {switching.verify_responses} time(s) "
                    f"in a row within {switching.verify_timeout:g}s (last: {last})"
                )
            time.sleep(POLL_INTERVAL)


def verify_urls(
    group: Haproxies, switching: SwitchingSettings, names: Sequence[str]
) -> dict[str, str]:
    """Each switched instance's routed verification URL (the settings' for one without)."""
    urls = {}
    for name in names:
        routed = group.instance(name).routed_api_url
        urls[name] = routed + switching.verify_path if routed else switching.verify_url
    return urls


def verify_every(
    switching: SwitchingSettings,
    topology: Topology,
    target: str,
    deadline: float,
    signals: DeferredSignals | None,
    *,
    urls: Mapping[str, str],
    group: Haproxies,
) -> Verification:
    """``verify`` through every routed URL (by instance) at once, on the group's threads (at
    most its bound at a time); all must answer from the target. The first response is when
    the last of them first did (traffic is moved when all have)."""
    done = group.run(
        {
            name: partial(verify, switching, topology, target, deadline, signals, url=url)
            for name, url in urls.items()
        }
    )  # the first error, in the instances' order
    every = list(done.values())
    return Verification(
        first_response=max(v.first_response for v in every),
        version=next((v.version for v in every if v.version), None),
        responses=min(v.responses for v in every),
    )
