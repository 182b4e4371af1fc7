"""The gate's machine-readable verdict (``verdict.json``): decision, reason, colors, tag, counts."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gaterun import GateReport, GateRun

__all__ = ["decision_word", "verdict", "write_verdict"]


def decision_word(report: GateReport) -> str:
    """switched / rolled back / refused / inconclusive / failed / no change / deployed."""
    decision = report.decision
    if report.result is not None:
        return "rolled back" if report.rolled_back else "switched"
    if decision is None:
        return "deployed" if report.exit_code == 0 else "failed"
    return {"noop": "no change", "refused": "refused"}.get(
        decision.verdict.value, decision.verdict.value
    )


def verdict(run: GateRun, report: GateReport) -> dict[str, Any]:
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
        for key, c in run.outcomes.as_dict().items()
    }
    return {
        "decision": decision_word(report),
        "verdict": decision.verdict.value if decision else None,
        "reason": report.lines[0] if report.lines else "",
        "lines": list(report.lines),
        "exit_code": int(report.exit_code),
        "target": run.target,
        "live_before": decision.live if decision else None,
        "live_after": report.traffic_on,
        "tag": run.tag(report.result),
        "counts": counts,
        "failed_checks": {
            str(key or "untagged"): list(c.failed_ids)
            for key, c in run.outcomes.as_dict().items()
            if c.failed_ids
        },
        "blame": report.blame.as_dict() if report.blame else None,
        "probe": report.probe.as_dict() if report.probe else None,
        "bake": None
        if report.bake is None
        else {
            "verdict": report.bake.verdict.value,
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        return f"warning: verdict not written to {path}: {exc}"
    return None
