"""The gate's machine-readable verdict (``verdict.json``): decision, reason, colors, tag, counts."""

from __future__ import annotations

import enum
import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.gate.decision import Verdict
from pytest_bluegreen.record.durable import write_durably
from pytest_bluegreen.record.history import Outcome

if TYPE_CHECKING:
    from pytest_bluegreen.gate.report import GateReport

__all__ = ["DecisionWord", "decision_word", "verdict", "write_verdict"]


class DecisionWord(enum.StrEnum):
    """``verdict.json``'s ``decision``: what the run did, in a word (docs/json.md)."""

    SWITCHED = "switched"
    ROLLED_BACK = "rolled back"
    NO_CHANGE = "no change"  # the target was already live
    REFUSED = "refused"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    DEPLOYED = "deployed"  # --deploy without --switch, its checks passed
    PENDING = "pending promotion"  # --switch=manual: verified, nothing switched
    WOULD_SWITCH = "would switch"  # --dry-run: the gate would have switched


def decision_word(report: GateReport, *, dry_run: bool = False) -> DecisionWord:
    """What the run did (``dry_run``: the run changed nothing by design)."""
    decision = report.decision
    if report.result is not None:
        return DecisionWord.ROLLED_BACK if report.rolled_back else DecisionWord.SWITCHED
    if decision is None:
        return DecisionWord.DEPLOYED if report.exit_code == ExitCode.OK else DecisionWord.FAILED
    if decision.verdict is Verdict.SWITCH:
        if report.outcome is Outcome.PENDING:
            return DecisionWord.PENDING
        if dry_run and report.exit_code == ExitCode.OK:
            return DecisionWord.WOULD_SWITCH
        # a switch decided but not made, without its own verdict: it did not happen
        return DecisionWord.REFUSED if report.exit_code == ExitCode.REFUSED else DecisionWord.FAILED
    return {
        Verdict.NOOP: DecisionWord.NO_CHANGE,
        Verdict.REFUSED: DecisionWord.REFUSED,
        Verdict.FAILED: DecisionWord.FAILED,
        Verdict.INCONCLUSIVE: DecisionWord.INCONCLUSIVE,
    }[decision.verdict]


def verdict(report: GateReport) -> dict[str, Any]:
    """``verdict.json``'s data: what the run did, from its finished report (docs/json.md)."""
    decision = report.decision
    counts = {
        str(key or "untagged"): {
            "passed": c.passed,
            "failed": c.failed,
            "errors": c.errors,
            "skipped": c.skipped,
            "xfailed": c.xfailed,
            "xpassed": c.xpassed,
            "unreachable": c.unreachable,
        }
        for key, c in report.counts.items()
    }
    return {
        "decision": decision_word(report, dry_run=report.dry_run).value,
        "verdict": decision.verdict.value if decision else None,
        "reason": report.lines[0] if report.lines else "",
        "lines": list(report.lines),
        "exit_code": int(report.exit_code),
        "target": report.target,
        "live_before": decision.live if decision else None,
        "live_after": report.traffic_on,
        "tag": report.tag,
        "counts": counts,
        "failed_checks": {
            str(key or "untagged"): list(c.failed_ids)
            for key, c in report.counts.items()
            if c.failed_ids
        },
        "blame": report.blame.as_dict() if report.blame else None,
        "probe": report.probe.as_dict() if report.probe else None,
        "bake": None
        if report.bake is None
        else {
            "verdict": report.bake.judgement.value,
            "reason": report.bake.reason,
            "interrupted": report.bake.interrupted,
            "timeline": [i.as_dict() for i in report.bake.intervals],
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
    }


def write_verdict(path: Path, data: dict[str, Any]) -> str | None:
    """Write the verdict; returns a warning line when it could not be written."""
    try:
        # a new file renamed over: a symbolic link planted at its name (reports/ is often
        # shared with CI) is replaced, never written through; a reader never sees half of it
        write_durably(path, json.dumps(data, indent=2) + "\n", mode=0o644)
    except OSError as exc:
        return f"warning: verdict not written to {path}: {exc}"
    return None
