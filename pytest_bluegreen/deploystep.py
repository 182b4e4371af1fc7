"""``--deploy TAG`` around the engine: the guard against deploying over the serving color,
waiting until HAProxy counts the new color UP, and what happens to it when the gate fails."""

from __future__ import annotations

import time
from collections.abc import Callable

from . import switch
from .engines import DeployEngine, DeployResult, engine_for
from .errors import BluegreenError, DeployError, Refused
from .haproxy import RuntimeApi
from .settings import Settings

__all__ = ["DeployRefused", "DeployStep"]


class DeployRefused(Refused):
    """--deploy onto the live, serving color without --force-deploy: nothing changed."""


class DeployStep:
    def __init__(
        self,
        settings: Settings,
        api: RuntimeApi,
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
        """Refuse to deploy over the live color while it serves, unless forced."""
        topology = self.settings.topology
        live = switch.live_color(self.api, topology)
        serving = live == target and not switch.down_servers(self.api, topology, target)
        if serving and not self.settings.run.force_deploy:
            raise DeployRefused(
                f"refused: {target} is live; deploying {tag} over it would change what users get "
                "without a gate (--force-deploy to do it anyway)"
            )

    def deploy(self, target: str, tag: str) -> DeployResult:
        """Guard, deploy through the engine, then wait until HAProxy counts the color UP.

        Raises DeployRefused (nothing changed) or DeployError.
        """
        self.guard(target, tag)
        result = self.engine.deploy(target, tag, backup=not self.settings.run.skip_backup)
        # healthy for Docker is not yet UP for HAProxy (rise x inter): the checks would meet
        # HAProxy's 503 on the direct port. Wait, within what is left of deploy_timeout.
        left = max(1.0, self.settings.compose.deploy_timeout - result.seconds)
        deadline = time.monotonic() + left
        while down := switch.down_servers(self.api, self.settings.topology, target):
            if time.monotonic() >= deadline:
                raise DeployError(f"{target} {tag} is healthy but HAProxy reports {down}")
            time.sleep(0.2)
        return result

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
