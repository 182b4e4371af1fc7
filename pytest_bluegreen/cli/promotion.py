"""``bluegreen promote`` and ``bluegreen abort``: a canary in progress (``pytest --switch
--canary``) told to skip its steps left or to return traffic; else a pending promotion (``pytest
--switch=manual``) switched to, re-verified when it cannot be tied to what runs now, or
discarded. Its end under the gate's lock is the record room's (:mod:`..record.pending`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.gate import aftercare
from pytest_bluegreen.record import history, pending, recording
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch import canary
from pytest_bluegreen.switch.journal import read_journal

from .inconfig import DRY_NOTHING, dry_flags, in_config, progress, report_lines, run_checks
from .switching import forced_switch

__all__ = ["cmd_abort", "cmd_promote"]


def _to_canary(settings: Settings, action: str) -> int | None:
    """A canary in progress (a gate runs it now): ask the gate to ``action`` it and wait until
    it did; None when no canary runs (the pending promotion is what the command is about)."""
    journal = settings.state.journal_file
    running = canary.in_progress(read_journal(journal))
    if running is None:
        return None
    if settings.run.dry_run:
        return report_lines(
            [
                f"dry run: would ask the gate (pid {running.pid}) to {action} its canary",
                DRY_NOTHING,
            ],
            ExitCode.OK,
        )
    progress(running.line())
    done, said = canary.request_and_wait(journal, running, action)
    return report_lines([said], ExitCode.OK if done else ExitCode.REFUSED)


def cmd_promote(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        asked = _to_canary(settings, "promote")
        if asked is not None:
            return asked
        state_file = settings.state.state_file
        record = history.load_pending(state_file)
        if record is None:
            raise aftercare.NothingPending("refused: no pending promotion (pytest --switch=manual)")
        found = aftercare.untied(settings, record.target, record.image)
        problem = aftercare.pending_problem(settings, record, now_untied=found)
        if problem is not None and settings.run.dry_run:
            return report_lines(
                [f"dry run: would refuse: {problem}", DRY_NOTHING], ExitCode.REFUSED
            )
        if problem is not None:
            warnings: list[str] = []
            if pending.expired(settings, record):
                warnings = pending.end_pending(settings, record, history.Outcome.EXPIRED, problem)
            return report_lines([f"refused: {problem}", *warnings], ExitCode.REFUSED)
        recheck = aftercare.recheck_reason(settings, record, now_untied=found)
        if recheck is not None:
            # nothing switches on a verification that cannot be tied to what runs now
            progress(f"{recheck}: the quick checks run again")
            flags = [f"--env={record.target}", "-m", "quick", "--switch", *dry_flags(settings)]
            code = run_checks(args, settings, [*flags, *extra])
        else:
            reason = (
                f"promoted {record.target} {record.tag or ''}: verified "
                f"{record.age():.0f}s ago ({record.checks_passed} check(s) passed), the same "
                "image runs"
            )
            code = forced_switch(
                config, settings, record.target, rollback=False, ignore_veto=False, reason=reason
            )
        if code == ExitCode.OK and not settings.run.dry_run:
            for line in pending.end_pending(settings, record, None, "promoted"):
                progress(line)
        return code

    return in_config(args, act)


def cmd_abort(args: argparse.Namespace, extra: Sequence[str]) -> int:
    def act(config: pytest.Config, settings: Settings) -> int:
        asked = _to_canary(settings, "abort")
        if asked is not None:
            return asked
        state_file = settings.state.state_file
        if settings.run.dry_run:  # no lock, nothing written
            try:
                record = history.load_pending(state_file)
            except history.RecordError as exc:
                line = f"dry run: would discard the unreadable pending promotion in {exc.path}"
                return report_lines([f"{line} ({exc.why})", DRY_NOTHING], ExitCode.OK)
            if record is None:
                raise aftercare.NothingPending("refused: no pending promotion to abort")
            line = f"dry run: would discard the pending promotion of {record.target}"
            return report_lines([f"{line} {record.tag or ''}".rstrip(), DRY_NOTHING], ExitCode.OK)
        with pending.gate_lock(settings).hold():
            # the history that records the abort, before the record goes (one line, exit 4)
            history.check_history(state_file, "state_file", create=True)
            try:
                record = history.load_pending(state_file)
            except history.RecordError as exc:  # abort is how an unreadable one goes
                history.clear_record(state_file, history.PENDING)
                reason = (
                    f"the pending promotion in {exc.path} could not be read ({exc.why}) and "
                    "was discarded"
                )
                entry = history.HistoryEntry.now(
                    from_color=None,
                    to_color="?",
                    tag=None,
                    outcome=history.Outcome.ABORTED,
                    reason=reason,
                )
                warnings = recording.record(settings, entry, secrets=settings.load_secrets())
                return report_lines([reason + "; traffic unchanged", *warnings], ExitCode.OK)
            if record is None:
                raise aftercare.NothingPending("refused: no pending promotion to abort")
            history.clear_record(state_file, history.PENDING)
            reason = f"the pending promotion of {record.target} {record.tag or ''} was discarded"
            warnings = pending.record_end(
                settings, record, history.Outcome.ABORTED, reason, code=ExitCode.OK
            )
        return report_lines([reason + "; traffic unchanged", *warnings], ExitCode.OK)

    return in_config(args, act)
