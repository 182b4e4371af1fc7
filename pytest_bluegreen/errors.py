"""The exit codes of a gated run and the errors that carry them: one table, one hierarchy.

Every exception the package defines is a :class:`BluegreenError` whose ``exit_code`` says how
the run ends, so the plugin and the ``bluegreen`` command each need one ``except``; one outside
the tree would be named in :data:`OUTSIDE_THE_TREE` with the reason (none is). Codes 0-5 keep
pytest's meaning; the numbers are written here only (:class:`ExitCode`), nowhere else.

The tree (class, its other bases, its module under ``pytest_bluegreen``, its exit code; a test,
tests/plugin/test_errors_tree.py, holds it to the code)::

    BluegreenError                        errors              7
      UsageError                          errors              4
        SettingsError (ValueError)        settings.files      4
        MissingExtra                      extras              4
        UsageProblem                      cli.inconfig        4
        InitError                         init.colors         4
        UnreadableCondition               haproxy.configtext  4
        SameHaproxy                       haproxy.lock        4
        JournalError                      switch.journal      4
        StateFileError                    record.history      4   the history and records
          RecordError                     record.history      4
        ThresholdError (ValueError)       judge.thresholds    4
        CompareRuleError (ValueError)     judge.comparerules  4
        CanaryPlanError                   switch.canary       4
        DashboardError                    report.dashboard    4   bluegreen dashboard's
      Refused                             errors              7
        RuntimeApiError                   haproxy.answers     7
          RuntimeApiUnreachable           haproxy.answers     7
          RuntimeApiPermissionError       haproxy.answers     7
          InstanceFailed                  haproxy.instances   7
        InstancesDisagree                 haproxy.instances   7
        LockHeld                          haproxy.lockfile    7
        LockLost                          haproxy.lockfile    7
        UnsafeLock                        haproxy.lockfile    7
        UnfinishedJournal                 switch.journal      7
        ImageUnknown                      engines.base        7
        DeployRefused                     gate.deploy         7
        SlotsNotReady                     gate.deploy         7
        NothingPending                    gate.aftercare      7
        FaultsLeftRefused                 record.faults       7   a power drill's fault left
        SwitchError                       switch.outcome      8
          RevertFailed                    switch.outcome      10
          SwitchIncomplete                switch.outcome      10
          CanaryReverted                  switch.outcome      11
          CanaryUnjudged                  switch.outcome      6
      DeployError                         errors              9
      OutOfOrder                          errors              3
      InfrastructureError                 eventually          1   a check's: INFRA-ERROR
        PrometheusUnreachable             judge.prometheus    1
        TlsError                          judge.load          1
      PromQLError (ValueError)            judge.prometheus    1   a check's own mistake
      EngineBlind                         engines.base        7   caught: the version header
      VerifyError                         switch.outcome      8   caught: a SwitchError
      Abort                               switch.outcome      8   caught: a SwitchError
        CanaryFailed                      switch.canary       11
          CanaryInconclusive              switch.canary       6
      NotSwitched                         switch.outcome      10  caught: SwitchIncomplete
      ServerStateFileError                switch.serverstate  10  the server-state file
        StateMoved                        switch.serverstate  10
      ExpositionError (ValueError)        report.exposition   3   caught: a warning
      PushFailed                          report.metrics      3   caught: a warning
      LocalPrometheusError (RuntimeError) local.prometheus    3   scripts/local_stack.py's

"caught": the class never leaves the module that raises it: the transaction turns the three of
the switch into the :class:`SwitchError` it ends with, the deploy step falls back on the
answers' version header when the engine is blind, the metrics' errors become warnings. None of
them derives from ``Refused`` (or ``SwitchError``): the gate catches those around the switch and
the deploy, and a class added under them would change what those handlers catch. A
``ValueError`` (``RuntimeError``) base stays where callers and check authors catch that.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar

from .redaction import mask_credentials

__all__ = [
    "CHECKS_RAN",
    "EXIT_CODES",
    "OUTSIDE_THE_TREE",
    "BluegreenError",
    "DeployError",
    "ExitCode",
    "OutOfOrder",
    "Refused",
    "UsageError",
]


class ExitCode(enum.IntEnum):
    OK = 0
    CHECKS_FAILED = 1
    INTERRUPTED = 2
    INTERNAL_ERROR = 3
    USAGE_ERROR = 4
    NO_TESTS_COLLECTED = 5
    INCONCLUSIVE = 6
    REFUSED = 7
    SWITCH_REVERTED = 8
    DEPLOY_FAILED = 9
    REVERT_FAILED = 10
    BAKE_FAILED = 11


# pytest's statuses of a session whose checks ran to an end the gate decides on: passed,
# failed, interrupted, or none collected (any other is pytest's own error: nothing moves)
CHECKS_RAN: frozenset[ExitCode] = frozenset(
    {ExitCode.OK, ExitCode.CHECKS_FAILED, ExitCode.INTERRUPTED, ExitCode.NO_TESTS_COLLECTED}
)

# exception classes of the package that are not BluegreenErrors: "module.Class" -> why
OUTSIDE_THE_TREE: Mapping[str, str] = {}

# docs/exit-codes.md's table, word for word (a test holds them)
EXIT_CODES: Mapping[ExitCode, str] = {
    ExitCode.OK: "checks passed and switched; or nothing to do: the target was already live "
    "(said so; `--force` too); or a dry run that would do it, changing nothing",
    ExitCode.CHECKS_FAILED: "checks failed; no switch, traffic kept on (or returned to) the "
    "last good color",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM, SIGHUP during the checks, also to the "
    "pytest that `bluegreen` runs): nothing moved",
    ExitCode.INTERNAL_ERROR: "internal error (also: the pytest that `bluegreen` runs was killed "
    "by another signal, before any switch)",
    ExitCode.USAGE_ERROR: "usage error: a bad option, argument or setting (`bluegreen`'s and "
    "the seed scripts' argument errors too), or no settings file for `bluegreen`",
    ExitCode.NO_TESTS_COLLECTED: "no tests collected",
    ExitCode.INCONCLUSIVE: "inconclusive: no check for the target color ran and passed, an "
    "answer of the target came from another build than the one deployed (or nothing ties the "
    "checks to it), the session was interrupted or incomplete, or the selection was narrowed; "
    "no switch. Or, after a switch, the bake stopped because HAProxy's servers were changed "
    "outside the gate (by hand): nothing switched back. Or a canary step could not be judged "
    "within its bound (too little traffic): every weight went back to where it was before the "
    "canary",
    ExitCode.REFUSED: "refused: target not UP in HAProxy, an HAProxy slot of the target does not "
    "run the deployed image, vetoed by a hook, another gate holds the lock (or the lock folder is "
    "one another user could change, or the held lock was removed), an unfinished switch waits "
    "for `bluegreen recover`, the target may still run a fault `bluegreen drill --power` left "
    "(`faults.json`: deploy it again), or the Runtime API is unreachable or not admin; nothing "
    "changed",
    ExitCode.SWITCH_REVERTED: "the switch failed or was interrupted before its point of no "
    "return (Runtime API error, verification, HAProxy reload, a signal, a step hook, `bluegreen "
    "abort` during a canary) and every server's previous state was restored (and saved to the "
    "server-state file)",
    ExitCode.DEPLOY_FAILED: "`--deploy` failed (engine, Compose, image, or not healthy in "
    "time); no check ran, no switch",
    ExitCode.REVERT_FAILED: "the switch failed and restoring the previous states failed too "
    "(`revert-failed`: HAProxy killed mid-switch, the pytest that `bluegreen` runs killed "
    "mid-switch, ...), or it passed its point of no return and could not be completed "
    "(`incomplete`: HAProxy's errors persisted, the server-state file not saved; nothing undone): "
    "HAProxy may be half-switched, the journal stays open, `bluegreen recover` (it completes a "
    "switch past its point of no return, restores the previous states of one before it); also "
    "`bluegreen recover` itself when it could not bring HAProxy to a consistent state or save "
    "the server-state file",
    ExitCode.BAKE_FAILED: "switched, then the bake failed (a post check, an HAProxy threshold, "
    "or it could not judge under `bake_on_inconclusive = rollback`) and traffic was switched "
    "back to the old color; or a canary step failed on real traffic (`--canary`) and every "
    "weight went back to where it was before the canary",
}


class BluegreenError(Exception):
    """A failure the gate expects and explains: its first line is for the operator."""

    exit_code: ClassVar[ExitCode] = ExitCode.REFUSED

    def __str__(self) -> str:
        # printed as is where no session's secrets are at hand (the command's error line)
        return mask_credentials(super().__str__())

    @property
    def first_line(self) -> str:
        text = str(self)
        return text.splitlines()[0] if text else type(self).__name__


class UsageError(BluegreenError):
    """Bad input (an option, a setting, a file): one line, nothing changed."""

    exit_code = ExitCode.USAGE_ERROR


class Refused(BluegreenError):
    """The gate would not act: nothing changed (lock held, HAProxy not ready, a veto)."""

    exit_code = ExitCode.REFUSED


class DeployError(BluegreenError):
    """A deploy step failed; the message's first line says which and why."""

    exit_code = ExitCode.DEPLOY_FAILED


class OutOfOrder(BluegreenError):
    """A step of the gate was called before what it needs (a switch journaled before the
    journal began, a bake without a switch): the package's own mistake, never the operator's.
    An explicit check, not an ``assert`` (``python -O`` strips those); nothing was changed."""

    exit_code = ExitCode.INTERNAL_ERROR
