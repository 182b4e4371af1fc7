"""The exit codes of a gated run and the errors that carry them: one table, one hierarchy.

Every error the gate raises on purpose is a :class:`BluegreenError` whose ``exit_code`` says how
the run ends, so the plugin and the ``bluegreen`` command each need one ``except``. Codes 0-5
keep pytest's meaning.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar

from .redaction import mask_credentials

__all__ = [
    "EXIT_CODES",
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
    "outside the gate (by hand): nothing switched back",
    ExitCode.REFUSED: "refused: target not UP in HAProxy, an HAProxy slot of the target does not "
    "run the deployed image, vetoed by a hook, another gate holds the lock (or the lock folder is "
    "one another user could change, or the held lock was removed), an unfinished switch waits "
    "for `bluegreen recover`, or the Runtime API is unreachable or not admin; nothing changed",
    ExitCode.SWITCH_REVERTED: "the switch failed or was interrupted before its point of no "
    "return (Runtime API error, verification, HAProxy reload, a signal, a step hook) and every "
    "server's previous state was restored (and saved to the server-state file)",
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
    "back to the old color",
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
