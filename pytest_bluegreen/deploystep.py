"""``--deploy TAG`` around the engine: the guard against deploying over the serving color,
waiting until HAProxy counts the new color UP, and what happens to it when the gate fails."""

from __future__ import annotations

import time
from collections.abc import Callable

from . import switch
from .engines import DeployEngine, DeployResult, engine_for
from .errors import BluegreenError, DeployError, Refused
from .haproxy import RuntimeApiError
from .instances import AnyHaproxy
from .settings import Settings

__all__ = ["DeployRefused", "DeployStep"]


class DeployRefused(Refused):
    """--deploy onto the live, serving color without --force-deploy: nothing changed."""


class DeployStep:
    def __init__(
        self,
        settings: Settings,
        api: AnyHaproxy,
        progress: Callable[[str], None],
        engine: DeployEngine | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.progress = progress
        self._engine = engine

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
        states = self.api.server_states(topology.servers(target))
        up = switch.down_servers(self.api, topology, target)
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
        try:
            result = self.engine.deploy(target, tag, backup=not self.settings.run.skip_backup)
        except OSError as exc:  # disk full, a binary missing: a failed deploy, not a crash
            raise DeployError(f"deploy of {target} {tag} failed: {exc}") from None
        # healthy for Docker is not yet UP for HAProxy (rise x inter): the checks would meet
        # HAProxy's 503 on the direct port. Wait, within what is left of deploy_timeout.
        left = max(1.0, self.settings.compose.deploy_timeout - result.seconds)
        deadline = time.monotonic() + left
        try:
            while down := switch.down_servers(self.api, self.settings.topology, target):
                if time.monotonic() >= deadline:
                    raise DeployError(f"{target} {tag} is healthy but HAProxy reports {down}")
                time.sleep(0.2)
        except RuntimeApiError as exc:
            raise DeployError(f"{target} {tag} is healthy, but HAProxy: {exc}") from None
        return result

    def version_problem(self, deployed: DeployResult) -> str | None:
        """What is wrong when the deployed color does not answer with the deployed tag (its
        color header or JSON body, on its direct URL + verify_path), or None."""
        import requests  # noqa: PLC0415 - HTTP only once a deploy is done

        settings, color = self.settings, deployed.color
        url = settings.topology.color[color].api_url + settings.switching.verify_path
        try:
            response = requests.get(url, timeout=settings.checks.http_timeout)
        except requests.RequestException as exc:
            return f"{color} does not answer at {url} to show its version: {exc}"
        version = settings.topology.answered_by(response).version
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
