"""``--deploy TAG`` around the engine: the guard against deploying over the serving color,
the end of what was recorded about the color (its warm window, its pending promotion: a new
build is not what was checked; a power drill's fault, once a deploy without one succeeded:
every deploy comes here), waiting until HAProxy counts the new color UP and until every
HAProxy slot of it runs the deployed image (and none the old one), and what happens to it when
the gate fails (never to a color HAProxy sends traffic to)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping

from pytest_bluegreen.engines import DeployEngine, DeployResult, EngineBlind, Occupant, engine_for
from pytest_bluegreen.engines.compose import injected_faults
from pytest_bluegreen.errors import BluegreenError, DeployError, Refused
from pytest_bluegreen.haproxy.answers import RuntimeApiError
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.process.signals import DeferredSignals, NoSignals
from pytest_bluegreen.record import faults
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch import transaction as switch

from . import aftercare, builds

__all__ = ["DeployRefused", "DeployStep", "SlotsNotReady"]


class DeployRefused(Refused):
    """--deploy onto the live, serving color without --force-deploy: nothing changed."""


class SlotsNotReady(Refused):
    """A slot of the target in HAProxy does not run the deployed image (an old replica still
    resolved, a container of another tag) within the deadline: nothing switched."""


class DeployStep:
    def __init__(
        self,
        settings: Settings,
        haproxies: Haproxies,
        progress: Callable[[str], None],
        engine: DeployEngine | None = None,
    ) -> None:
        self.settings = settings
        self.haproxies = haproxies
        self.progress = progress
        self._engine = engine
        # color -> the tag the engine last showed every HAProxy slot of it running (wait_slots)
        self.slots_shown: dict[str, str] = {}

    @property
    def engine(self) -> DeployEngine:
        if self._engine is None:
            self._engine = engine_for(self.settings, self.progress)
        return self._engine

    def guard(self, target: str, tag: str) -> None:
        """Refuse to deploy over the color while any of its servers takes traffic (live, or
        half of a half-switched HAProxy), unless forced."""
        if self.settings.run.force_deploy:
            return
        topology = self.settings.topology
        states = self.haproxies.server_states(topology.servers(target))
        up = switch.down_servers(self.haproxies, topology, target)
        serving = [str(r) for r, s in states.items() if s.takes_traffic and str(r) not in up]
        if serving:
            raise DeployRefused(
                f"refused: {target} takes traffic ({', '.join(serving)}); deploying {tag} over "
                "it would change what users get without a gate (--force-deploy to do it anyway)"
            )

    def deploy(self, target: str, tag: str) -> DeployResult:
        """Guard, deploy through the engine, then wait until HAProxy counts the color UP.

        Raises DeployRefused (nothing changed) or DeployError.
        """
        self.guard(target, tag)
        # the engine first: a missing extra (MissingExtra, exit 4) refuses before anything
        # changed, the color's warm window and pending promotion still recorded
        engine = self.engine
        for line in aftercare.forget(self.settings, target):
            self.progress(line)
        try:
            result = engine.deploy(target, tag, backup=not self.settings.run.skip_backup)
        except OSError as exc:  # disk full, a binary missing: a failed deploy, not a crash
            raise DeployError(f"deploy of {target} {tag} failed: {exc}") from None
        if not injected_faults(target, os.environ):  # a power drill's fault replaced
            said = faults.end(self.settings.state.state_file, target)
            if said is not None:
                self.progress(said)
        # healthy for Docker is not yet UP for HAProxy (rise x inter): the checks would meet
        # HAProxy's 503 on the direct port. Wait, within what is left of deploy_timeout.
        left = max(1.0, self.settings.compose.deploy_timeout - result.seconds)
        deadline = time.monotonic() + left
        self._wait_up(target, f"{target} {tag} is healthy", deadline, DeployError)
        # UP is not yet "the new build": DNS-filled slots may still reach the old replicas
        note = self.wait_slots(target, tag, timeout=max(1.0, deadline - time.monotonic()))
        if note is not None:
            self.progress(note)
        return result

    def _wait_up(self, color: str, what: str, deadline: float, error: type[BluegreenError]) -> None:
        """Until HAProxy counts every server of the color UP; ``error`` when not by
        ``deadline`` (or when HAProxy cannot be read), its message starting with ``what``."""
        try:
            while down := switch.down_servers(self.haproxies, self.settings.topology, color):
                if time.monotonic() >= deadline:
                    raise error(f"{what} but HAProxy reports {down}")
                time.sleep(0.2)
        except RuntimeApiError as exc:
            raise error(f"{what}, but HAProxy: {exc}") from None

    # -- which build HAProxy reaches ----------------------------------------------------------
    def occupants(self, endpoints: Collection[str]) -> Mapping[str, tuple[Occupant, ...]]:
        """What the engine knows runs at each endpoint; EngineBlind when it cannot look (no
        engine, the docker extra missing, not a swarm manager)."""
        if not endpoints:
            return {}
        try:
            engine = self.engine
        except BluegreenError as exc:  # the docker extra missing
            raise EngineBlind(exc.first_line) from None
        return engine.occupants(endpoints)

    def slots(self, color: str) -> list[tuple[str, str]]:
        """(label, ADDR:PORT) of every filled HAProxy slot of the color on every instance: its
        servers, and every server pointing where they point (its direct backend)."""
        group = self.haproxies
        wanted = set(self.settings.topology.servers(color))
        found = []
        for name, states in group.each(lambda _, api: api.servers_state()).items():
            for state in builds.color_slots(states, wanted):
                found.append((group.label(name, str(state.ref)), state.endpoint))
        return found

    def wait_slots(
        self,
        color: str,
        tag: str,
        *,
        timeout: float,
        signals: DeferredSignals | None = None,
    ) -> str | None:
        """Wait until every filled slot of the color in HAProxy runs ``tag`` now (a running
        container or task of that image), at most ``timeout`` seconds. Returns a note when
        the engine cannot tell (it cannot look, or runs none of the color's addresses: the
        answers' version header is all the gate has), else None. Raises SlotsNotReady naming
        each slot and what it runs, or RuntimeApiError."""
        signals = signals or NoSignals()
        deadline = time.monotonic() + timeout
        said: list[str] | None = None
        self.slots_shown.pop(color, None)  # until the engine shows it (again)
        while True:
            slots = self.slots(color)
            try:
                occupants = self.occupants({endpoint for _, endpoint in slots})
            except EngineBlind as exc:
                return (
                    f"what runs behind {color}'s HAProxy servers is not known ({exc}): the "
                    f"answers' version header alone says they came from {tag}"
                )
            problems = builds.slot_problems(slots, occupants, tag)
            if problems is None:
                return (
                    f"the deploy engine runs none of the addresses of {color}'s HAProxy servers "
                    f"({', '.join(sorted({e for _, e in slots})) or 'none filled'}): the "
                    f"answers' version header alone says they came from {tag}"
                )
            if not problems:
                if said is not None:  # new slots were filled meanwhile: UP again first
                    self.progress(f"every HAProxy slot of {color} runs {tag} now")
                    what = f"refused: every HAProxy slot of {color} runs {tag}"
                    self._wait_up(color, what, deadline, SlotsNotReady)
                self.slots_shown[color] = tag
                return None
            if problems != said:
                said = problems
                left = max(0.0, deadline - time.monotonic())
                self.progress(
                    f"waiting up to {left:.0f}s until every HAProxy slot of {color} runs {tag}: "
                    + "; ".join(problems)
                )
            if signals.received or time.monotonic() >= deadline:
                why = (
                    f"interrupted by {signals.received}"
                    if signals.received
                    else (f"after {timeout:.0f}s")
                )
                raise SlotsNotReady(
                    f"refused: not every HAProxy slot of {color} runs the deployed {tag} ({why}): "
                    + "; ".join(problems)
                )
            time.sleep(0.25)

    def version_problem(
        self, deployed: DeployResult, heard: Counter[builds.Heard] | None = None
    ) -> str | None:
        """What is wrong when the deployed color does not answer with the deployed tag (its
        color header or JSON body, on its direct URL + verify_path), or None. The answer is
        noted in ``heard``: when HAProxy sent it to another build than the deployed one
        (gate/builds.py), that build's claim is no fault of the deployed one (the gate's decision
        is inconclusive instead)."""
        import requests  # noqa: PLC0415 - HTTP only once a deploy is done

        settings, color = self.settings, deployed.color
        topology = settings.topology
        url = topology.color[color].api_url + settings.switching.verify_path
        try:
            response = requests.get(url, timeout=settings.checks.http_timeout)
        except requests.RequestException as exc:
            return f"{color} does not answer at {url} to show its version: {exc}"
        said = builds.Heard.of(
            response.headers,
            version_header=topology.version_header,
            server_header=topology.server_header,
        )
        if heard is not None:
            heard[said] += 1
        if said.endpoint:
            try:
                found = self.occupants({said.endpoint}).get(said.endpoint, ())
            except EngineBlind:
                found = ()
            if found and any(o.tag != deployed.tag for o in found):
                return None  # not the deployed build's answer: decide() says so
        version = topology.answered_by(response).version
        if version != deployed.tag:
            return (
                f"{color} answers version {version or '(none)'} at {url}, not the deployed "
                f"{deployed.tag}: the image is not what --deploy asked for"
            )
        return None

    def after_failed_gate(self, deployed: DeployResult) -> str:
        """The deployed color did not become live: keep it, tear it down or restore its
        previous tag (``on_failed_gate``). Returns the line that says what was done."""
        policy, color, previous = (
            self.settings.compose.on_failed_gate,
            deployed.color,
            deployed.previous_tag,
        )
        if policy in ("teardown", "restore"):
            serving = self._serving(color)
            if serving:
                return (
                    f"{color} {deployed.tag} kept: HAProxy sends it traffic ({serving}), so "
                    f"on_failed_gate = {policy} does not touch it"
                )
        try:
            if policy == "teardown":
                self.engine.teardown(color)
                return f"{color} torn down (on_failed_gate = teardown)"
            if policy == "restore" and previous:
                self.engine.deploy(color, previous, backup=False)
                return (
                    f"{color} restored to {previous}, its tag before this deploy "
                    "(on_failed_gate = restore)"
                )
        except BluegreenError as exc:
            return f"warning: {exc.first_line}"
        return f"{color} {deployed.tag} kept running for debugging (on_failed_gate = {policy})"

    def _serving(self, color: str) -> str:
        """The color's servers HAProxy sends traffic to, read now; "HAProxy cannot be read"
        counts as serving (nothing is stopped on a guess)."""
        try:
            states = self.haproxies.server_states(self.settings.topology.servers(color))
        except RuntimeApiError as exc:
            return f"HAProxy cannot be read: {exc}"
        return ", ".join(str(r) for r, s in states.items() if s.takes_traffic)
