"""The Swarm engine's rollout: waiting until every replica runs the new image and is healthy,
what a failed rollout says (the failing tasks, their health checks, the services' logs), Swarm's
own rollback of a failed deploy, and what a color is left with. :class:`SwarmRollout` is the
base of :class:`~.swarm.SwarmEngine`, which sets the attributes it uses; its Docker access (the
SDK, the docker CLI) is here too, as the rollback uses it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.extras import require
from pytest_bluegreen.settings import ComposeSettings, SwarmSettings

from .compose import docker_client, first_line, whales_error
from .swarmtasks import Replica, ServiceSpec, find_service, service_replicas

if TYPE_CHECKING:
    from python_on_whales import DockerClient, DockerException

    import docker

__all__ = ["FEATURE", "SwarmRollout"]

_FAILED_TASK_STATES = {"failed", "rejected", "orphaned"}
_ROLLBACK_STATES = {"rollback_started", "rollback_paused", "rollback_completed"}
FEATURE = "deploying with Docker Swarm"
_CLI_TIMEOUT = 120.0  # seconds a docker CLI command (detached: it does not wait) may take


class SwarmRollout:
    """A rollout of a color's services waited for, described when it fails, rolled back."""

    # set by SwarmEngine.__init__
    compose: ComposeSettings
    swarm: SwarmSettings
    progress: Callable[[str], None]
    _client: DockerClient | None
    _sdk: docker.DockerClient | None

    # python-on-whales (a fifth of a second to import) loads when a docker CLI command first
    # needs it, as ComposeEngine's
    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = require("python_on_whales", "docker", FEATURE).DockerClient()
        return self._client

    @property
    def _exception(self) -> type[DockerException]:
        return whales_error(FEATURE)

    @property
    def sdk(self) -> docker.DockerClient:
        if self._sdk is None:
            self._sdk = docker_client()
        return self._sdk

    def _wait_rolled_out(
        self,
        *,
        color: str,
        tag: str,
        image: str,
        services: list[str],
        deadline: float,
        previous: str | None,
        before: dict[str, tuple[str | None, str | None]],
        specs: Mapping[str, ServiceSpec | None],
    ) -> None:
        """Until every replica of every service runs ``image`` and is healthy, and Swarm's
        update is complete; a DeployError (after a rollback, where configured) otherwise."""
        wanted = self.swarm.replicas * len(services)
        said = -1
        while True:
            gone = [s for s in services if find_service(self.sdk, self.swarm, s) is None]
            replicas = service_replicas(self.sdk, self.swarm, services)
            current = [r for r in replicas if r.desired == "running"]
            healthy = [r for r in current if r.image == image and r.healthy]
            states = {s: self._update_state(s, before[s]) for s in services}
            if len(healthy) != said:
                said = len(healthy)
                self.progress(f"{color}: {said}/{wanted} replicas healthy")
            rolled_back = [s for s, st in states.items() if st in _ROLLBACK_STATES]
            done = all(st in (None, "completed") for st in states.values())
            complete = done and len(healthy) >= wanted and len(current) == wanted
            if complete and not (gone or rolled_back):
                return
            if gone or rolled_back or time.monotonic() >= deadline:
                if gone:
                    why = f"{', '.join(gone)} removed from stack {self.swarm.stack_name} meanwhile"
                elif rolled_back:
                    why = f"Swarm rolled back {', '.join(rolled_back)} (the new tasks failed)"
                else:
                    sick = self._first_health(current, image)
                    why = (
                        f"not healthy within {self.compose.deploy_timeout:g}s "
                        f"({len(healthy)}/{wanted} replicas healthy{sick})"
                    )
                detail = self._failure_detail(services, image, replicas)
                restored = self._roll_back(color, services, previous, rolled_back, specs)
                raise DeployError(f"deploy of {color} {tag} failed: {why}{restored}\n{detail}")
            time.sleep(0.25)

    def _update_status(self, service: str) -> tuple[str | None, str | None]:
        """Swarm's update of the service: its state and when it started (None: none yet)."""
        svc = find_service(self.sdk, self.swarm, service)
        status = (svc.attrs.get("UpdateStatus") or {}) if svc is not None else {}
        state, started = status.get("State"), status.get("StartedAt")
        return (str(state) if state else None, str(started) if started else None)

    def _update_state(self, service: str, before: tuple[str | None, str | None]) -> str | None:
        """The state of the update started after ``before`` was read; None while Swarm has not
        started one (an earlier update's state, such as a rollback, is not this one's)."""
        state, started = self._update_status(service)
        return None if started == before[1] else state

    def _health(self, replica: Replica) -> str:
        """The last health check of a replica's container on this node: ``health check
        exits 7: curl: (7) Failed to connect ...``; "" when it has none, or runs elsewhere."""
        if not replica.container_id:
            return ""
        try:
            attrs = self.sdk.api.inspect_container(replica.container_id)
        except Exception:  # on another node, or gone meanwhile
            return ""
        health = (attrs.get("State") or {}).get("Health") or {}
        runs = health.get("Log") or []
        if not runs:
            return f"health {health['Status']}, no check run yet" if health.get("Status") else ""
        last = runs[-1]
        output = " ".join(str(last.get("Output") or "").split())[:200]
        return f"health check exits {last.get('ExitCode')}: {output or 'no output'}"

    def _first_health(self, current: list[Replica], image: str) -> str:
        """``; blue-api.1: health check exits 7: ...`` for the first replica of ``image`` that
        is not healthy and has a health check run on this node, else ""."""
        for replica in current:
            if replica.image == image and not replica.healthy:
                said = self._health(replica)
                if said:
                    return f"; {replica.service}.{replica.slot}: {said}"
        return ""

    def _failure_detail(self, services: list[str], image: str, replicas: list[Replica]) -> str:
        failing = []
        for r in replicas:
            if r.image != image:
                continue
            starting = r.desired == "running" and not r.healthy
            if not (starting or r.state in _FAILED_TASK_STATES or r.error):
                continue
            health = self._health(r) if starting else ""
            failing.append(
                f"  {r.service}.{r.slot} on {r.node}: {r.state}"
                + (f" ({r.error})" if r.error else "")
                + (f", {health}" if health else "")
            )
        lines = ["failing tasks:", *failing[:6]] if failing else []
        lines.extend(self._own_logs(services, image, replicas))
        for service in services:
            try:
                logs = self.client.service.logs(self.swarm.service(service), tail=20)
            except self._exception as exc:
                logs = f"(no logs: {first_line(exc)})"
            lines.append(f"=== {service} (last lines)\n{str(logs or '').rstrip()}")
        return "\n".join(lines)

    def _own_logs(self, services: list[str], image: str, replicas: list[Replica]) -> list[str]:
        """The last lines of the new image's failed tasks themselves, one per service, from
        their containers on this node: the service's last lines may be its restored replicas'
        by the time they are read (a stop-first rollback starts them at once)."""
        lines = []
        for service in services:
            failed = [
                r
                for r in replicas
                if r.service == service
                and r.image == image
                and r.container_id
                and r.state in _FAILED_TASK_STATES
            ]
            for replica in failed:
                try:
                    raw = self.sdk.api.logs(replica.container_id, tail=10)
                except Exception:  # on another node, or removed meanwhile
                    raw = b""
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                if text.strip():
                    lines.append(
                        f"=== {service}.{replica.slot} on {replica.node}, "
                        f"{replica.state} (its last lines)\n{text.rstrip()}"
                    )
                    break
        return lines

    def _roll_back(
        self,
        color: str,
        services: list[str],
        previous: str | None,
        rolling: list[str],
        specs: Mapping[str, ServiceSpec | None],
    ) -> str:
        """Swarm's own rollback of the color's services to what they ran before: the ones
        Swarm is not rolling back already are told to (``docker service rollback``); done once
        every replica runs the previous image again. When it fails, what the color is left
        with, service by service."""
        if not self.swarm.rollback_failed_deploy:
            return (
                "; not rolled back (rollback_failed_deploy = false): "
                f"{color} is left so: {self.left(services)}"
            )
        failed: list[str] = []
        before: dict[str, tuple[str | None, str | None]] = {}
        for service in services:
            spec = specs.get(service)
            if spec is None:
                failed.append(f"{service} was created by this deploy: nothing to roll back to")
            elif find_service(self.sdk, self.swarm, service) is None:
                failed.append(f"{service} is not in stack {self.swarm.stack_name} any more")
            elif service in rolling:  # the rollback is the update under way: wait for it
                before[service] = (None, None)
            else:
                seen = self._update_status(service)
                why = self._docker("service", "rollback", "--detach", self.swarm.service(service))
                if why:
                    failed.append(f"'docker service rollback' of {service} failed: {why}")
                else:
                    self.progress(f"Swarm rolls {service} back to {spec.image}")
                    before[service] = seen
        failed += self._await_rollbacks(before, specs)
        if failed:
            return (
                f"; the rollback failed ({'; '.join(failed)}): "
                f"{color} is left so: {self.left(services)}"
            )
        return f"; Swarm rolled {color} back to {previous or 'its previous image'}"

    def _await_rollbacks(
        self,
        before: dict[str, tuple[str | None, str | None]],
        specs: Mapping[str, ServiceSpec | None],
    ) -> list[str]:
        """Until each service's rollback (started after ``before``) completed and its replicas
        run the previous image again; what failed (paused by Swarm, the service removed, not
        done within ``deploy_timeout``)."""
        failed: list[str] = []
        waiting = dict(before)
        deadline = time.monotonic() + self.compose.deploy_timeout
        while waiting:
            for service, seen in list(waiting.items()):
                svc = find_service(self.sdk, self.swarm, service)
                spec = specs[service]
                if svc is None or spec is None:
                    failed.append(
                        f"{service} was removed from stack {self.swarm.stack_name} during its "
                        "rollback"
                    )
                    del waiting[service]
                    continue
                state = self._update_state(service, seen)
                if state == "rollback_paused":
                    said = str((svc.attrs.get("UpdateStatus") or {}).get("Message") or "")
                    failed.append(f"Swarm paused the rollback of {service}: {said or 'no reason'}")
                    del waiting[service]
                elif state == "rollback_completed" and self._runs(service, spec):
                    del waiting[service]
            if waiting and time.monotonic() >= deadline:
                failed.append(
                    f"the rollback of {', '.join(waiting)} did not complete within "
                    f"{self.compose.deploy_timeout:g}s"
                )
                break
            if waiting:
                time.sleep(0.25)
        return failed

    def _docker(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """The docker CLI the client uses (its host and context), its output captured: none
        of it reaches the gate's output, and a failure says why in its own words
        (python-on-whales leaves the stderr of ``service scale`` uncaptured, and has no
        ``service rollback``). "" when it succeeded, else its last line of error."""
        command = [*map(str, self.client.client_config.docker_cmd), *args]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_CLI_TIMEOUT,
                check=False,
                env=None if env is None else {**os.environ, **env},
            )
        except subprocess.TimeoutExpired:
            return f"'docker {' '.join(args[:2])}' gave no answer within {_CLI_TIMEOUT:g}s"
        except OSError as exc:  # no docker CLI
            return f"'docker {' '.join(args[:2])}' could not run: {exc}"
        if done.returncode == 0:
            return ""
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
        return next((line for line in reversed(lines) if line), f"exit code {done.returncode}")

    def _runs(self, service: str, spec: ServiceSpec) -> bool:
        """Every replica Swarm wants running runs ``spec``'s image and is healthy, as many as
        it says."""
        current = [
            r for r in service_replicas(self.sdk, self.swarm, [service]) if r.desired == "running"
        ]
        count = len(current) if spec.replicas is None else spec.replicas
        return len(current) == count and all(r.image == spec.image and r.healthy for r in current)

    def left(self, services: Iterable[str]) -> str:
        """What each service is set to and runs now, for an operator to act on: ``blue-api:
        set to bluegreen/jarvis:v1.0.0 x2 (Swarm's update rollback_paused), tasks: 2 v1.2.0
        starting, the last task error: No such image: ...``."""
        parts = []
        for service in services:
            try:
                parts.append(self._state_of(service))
            except Exception as exc:  # the swarm stopped answering: say so, claim nothing
                said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                parts.append(f"{service}: unknown (the swarm did not answer: {said})")
        return "; ".join(parts)

    def _state_of(self, service: str) -> str:
        svc = find_service(self.sdk, self.swarm, service)
        if svc is None:
            return f"{service}: not in stack {self.swarm.stack_name}"
        spec = ServiceSpec.of(svc)
        state = (svc.attrs.get("UpdateStatus") or {}).get("State")
        count = "" if spec.replicas is None else f" x{spec.replicas}"
        update = f" (Swarm's update {state})" if state else ""
        replicas = service_replicas(self.sdk, self.swarm, [service])  # newest first
        tasks = Counter(f"{r.tag} {r.state}" for r in replicas if r.desired == "running")
        said = ", ".join(f"{n} {what}" for what, n in sorted(tasks.items())) or "none"
        error = next((f", the last task error: {r.error}" for r in replicas if r.error), "")
        return f"{service}: set to {spec.image}{count}{update}, tasks: {said}{error}"
