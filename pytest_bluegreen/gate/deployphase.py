"""The run's deploy phase: ``--deploy TAG`` to the target, the wait until every HAProxy slot of
the target runs the expected build, what the checks' answers said about which build sent them,
and what becomes of a deployed color when the gate fails.

``DeployPhase`` holds what the run deployed (``deployed``) and the engine's step
(:class:`.deploy.DeployStep`, loaded only when asked for: the engines load only to deploy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_bluegreen.engines import EngineBlind
from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.record.history import Outcome

from .builds import BuildEvidence, Heard, resolve

if TYPE_CHECKING:
    from pytest_bluegreen.engines import DeployEngine, DeployResult
    from pytest_bluegreen.haproxy.instances import Haproxies
    from pytest_bluegreen.process.signals import DeferredSignals
    from pytest_bluegreen.settings import Settings

    from .deploy import DeployStep
    from .outcomes import Outcomes
    from .report import GateReport

__all__ = ["DeployPhase"]


class DeployPhase:
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
        self._engine = engine  # the deploy engine; default: the one deploy_engine names
        self._step: DeployStep | None = None
        self.deployed: DeployResult | None = None
        self._said: set[str] = set()  # notes said once per run

    @property
    def step(self) -> DeployStep:
        if self._step is None:
            from .deploy import DeployStep  # noqa: PLC0415 - engines load only to deploy

            self._step = DeployStep(self.settings, self.haproxies, self.progress, self._engine)
        return self._step

    def deploy(self, target: str, tag: str) -> DeployResult:
        """``--deploy TAG`` to ``target``. Raises DeployRefused (nothing changed), DeployError."""
        self.deployed = self.step.deploy(target, tag)
        return self.deployed

    @property
    def expected_build(self) -> str | None:
        """The build the checks must judge: --deploy TAG, else --deployment-tag, else None
        (then the target's answers must at least all come from one build)."""
        run = self.settings.run
        return run.deploy or run.deployment_tag

    def before_checks(self, target: str | None, signals: DeferredSignals) -> None:
        """Every HAProxy slot of the target runs the expected build before any check runs
        (a deploy in this run waited for it already). Raises SlotsNotReady, RuntimeApiError."""
        tag = self.expected_build
        if tag is None or target is None or self.deployed is not None:
            return
        self.wait_slots(target, tag, signals)

    def wait_slots(self, target: str, tag: str, signals: DeferredSignals) -> None:
        """DeployStep's wait for the slots, within deploy_timeout; its note said once."""
        timeout = self.settings.compose.deploy_timeout
        note = self.step.wait_slots(target, tag, timeout=timeout, signals=signals)
        if note is not None and note not in self._said:
            self._said.add(note)
            self.progress(note)

    def version_problem(self, outcomes: Outcomes) -> str | None:
        """With --deploy TAG, the target must answer with TAG before anything else counts (an
        answer another build gave is counted with the checks' answers instead)."""
        if self.deployed is None:
            return None
        return self.step.version_problem(self.deployed, outcomes[self.deployed.color].heard)

    def evidence(self, target: str, heard: Counter[Heard]) -> tuple[BuildEvidence, list[str]]:
        """What the target's answers said about their build, resolved through the engine (the
        image at the address HAProxy sent each to), and the lines to say about it."""
        endpoints = {h.endpoint for h in heard if h.endpoint}
        lines = []
        expected = self.expected_build
        try:
            occupants = self.step.occupants(endpoints)
        except EngineBlind as exc:
            occupants = {}
            if expected is not None:
                lines.append(
                    f"what answered {target}'s checks behind HAProxy is not known ({exc}): "
                    "their version header says which build they came from"
                )
        found = resolve(heard, occupants)
        total, named = sum(heard.values()), sum(found.values())
        said = None
        if expected is not None and not total:
            said = (
                f"the checks noted no answer of {target} (the http fixture notes them; "
                "http.note_answers a load's)"
            )
        elif expected is not None and not named:
            said = (
                f"none of {target}'s {total} answer(s) said which build sent it (no "
                f"{self.settings.topology.version_header}, no "
                f"{self.settings.topology.server_header} the engine knows)"
            )
        unverified = None
        if said is not None and self.step.slots_shown.get(target) == expected:
            # the engine showed every HAProxy slot of the target running it: that ties them
            lines.append(
                f"warning: {said}; every HAProxy slot of {target} runs {expected}, as the "
                "deploy engine showed"
            )
        elif said is not None:
            unverified = (
                f"nothing ties the checks to {expected}: {said}, and the deploy engine did "
                f"not show what runs behind {target}'s HAProxy servers; the checks may have "
                "judged another build"
            )
        return BuildEvidence(expected, found, unverified), lines

    def after_failed_gate(self, report: GateReport) -> str | None:
        """A gate that failed after deploying: what becomes of the deployed color (never one
        that may be taking traffic); None when nothing is to be done or said."""
        deployed = self.deployed
        if (
            report.exit_code != ExitCode.OK
            and deployed is not None
            and report.traffic_on != deployed.color
            # where traffic is, is not known: the deployed color may be taking it
            and report.outcome not in (Outcome.REVERT_FAILED, Outcome.INCOMPLETE)
            and not (report.blame is not None and report.blame.environmental)  # not the build
        ):
            return self.step.after_failed_gate(deployed)
        return None
