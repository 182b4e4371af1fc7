"""The typed status as ``bluegreen`` prints it: plain lines, and the JSON documents of
``status --json`` and ``export-state`` (their schema, version :data:`SCHEMA_VERSION`, is
``docs/json.md``; a test holds the two together). Pure: the caller collects and redacts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from pytest_bluegreen.gate.aftercare import when
from pytest_bluegreen.haproxy.instances import DEFAULT_INSTANCE
from pytest_bluegreen.record.faults import refusal
from pytest_bluegreen.record.history import HistoryEntry
from pytest_bluegreen.switch.journal import JournalEntry
from pytest_bluegreen.switch.steps import POINT_OF_NO_RETURN

from .status import InstanceState, StateExport, Status

__all__ = ["SCHEMA_VERSION", "export_document", "status_document", "status_lines"]

# Bumped when a field is removed, renamed or changes its type; a new field keeps it.
SCHEMA_VERSION = 1

Paint = Callable[[str, str], str]


# --- JSON ------------------------------------------------------------------------------------


def status_document(status: Status) -> dict[str, Any]:
    """``bluegreen status --json``."""
    warm, pending = status.warm, status.pending
    return {
        "schema_version": SCHEMA_VERSION,
        "live": status.live,
        "consistent": status.healthy,
        "colors": {
            c.name: {
                "role": c.role,
                "tag": c.tag,
                "containers": c.containers,
                "api_url": c.api_url,
                "servers": [asdict(s) for s in c.servers],
                "replicas": [asdict(r) for r in c.replicas],
            }
            for c in status.colors
        },
        "instances": {
            i.name: {
                "address": i.address,
                "reachable": i.reachable,
                "live": i.live,
                "error": i.error,
                "servers": [{"server": s, "weight": w, "state": a} for s, w, a in i.weights],
            }
            for i in status.instances
        },
        "last_switch": _history(status.last_switch) if status.last_switch else None,
        "last_entry": _history(status.last_entry) if status.last_entry else None,
        "unfinished_switch": _unfinished(status.unfinished) if status.unfinished else None,
        "canary": status.canary.as_dict() if status.canary else None,
        "problems": list(status.problems),
        "reconcile": None if status.reconcile is None else asdict(status.reconcile),
        "faults_left": None if status.faults is None else asdict(status.faults),
        "warm_window": None
        if warm is None
        else {**asdict(warm), "remaining_seconds": round(warm.remaining(), 1)},
        "pending_promotion": None
        if pending is None
        else {
            **asdict(pending),
            "age_seconds": round(pending.age(), 1),
            "expired": status.pending_expired,
        },
    }


def export_document(export: StateExport) -> dict[str, Any]:
    """``bluegreen export-state``: the status document and what lies behind it."""
    status = status_document(export.status)
    return {
        "schema_version": SCHEMA_VERSION,
        "live": status["live"],
        "colors": {
            name: {**info, "variables": dict(export.variables[name])}
            for name, info in status["colors"].items()
        },
        "haproxy": _instance(export.instances[0]),
        "instances": {one.name: _instance(one) for one in export.instances},
        "secrets": dict(export.secrets),
        "history": [_history(entry) for entry in export.history],
        "status": status,
    }


def _history(entry: HistoryEntry) -> dict[str, Any]:
    return {**asdict(entry), "outcome": entry.outcome.value}


def _unfinished(entry: JournalEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "started": entry.started,
        "host": entry.host,
        "pid": entry.pid,
        "source": entry.source,
        "target": entry.target,
        "steps": [str(step["step"]) for step in entry.steps],
        "instances": [member.name for member in entry.every_member(DEFAULT_INSTANCE)],
    }


def _instance(one: InstanceState) -> dict[str, Any]:
    return {
        "address": one.address,
        "reachable": one.reachable,
        "version": one.version,
        "error": one.error,
        "servers": [
            {
                "backend": s.backend,
                "server": s.server,
                "weight": s.uweight,
                "configured_weight": s.iweight,
                "admin": s.admin.value,
            }
            for s in one.servers
        ],
    }


# --- plain lines -----------------------------------------------------------------------------


def status_lines(status: Status, paint: Paint) -> list[str]:
    """``bluegreen status``; ``paint(text, ansi_code)`` colors a part (or returns it)."""
    live = status.live
    lines = [
        f"live color: {paint(live, '1;32') if live else 'none (no single color takes traffic)'}",
        f"{'color':<8} {'role':<5} {'tag':<16} {'containers':<12} "
        f"{'server':<34} {'weight':>6} {'state':<6} health",
    ]
    for color in status.colors:
        for server in color.servers:
            health = server.health
            shown = paint(health, "32") if health.startswith("UP") else paint(health, "31")
            lines.append(
                f"{color.name:<8} {color.role:<5} {color.tag or '-':<16} {color.containers:<12} "
                f"{server.server:<34} {server.weight:>6} {server.state:<6} {shown}"
            )
    replicas = [(c.name, r) for c in status.colors for r in c.replicas]
    if replicas:  # a swarm: where each color's replicas run
        lines.append(f"{'color':<8} {'replica':<24} {'node':<20} {'state':<10} tag")
        for name, r in replicas:
            task = f"{r.service}.{r.slot}"
            lines.append(f"{name:<8} {task:<24} {r.node:<20} {r.state:<10} {r.tag}")
    if len(status.instances) > 1:
        lines += _instance_lines(status, paint)
    last = status.last_switch
    lines.append(f"last switch: {_entry_line(last)}" if last else "last switch: none recorded")
    entry = status.last_entry
    if entry is not None and entry != last:  # a later run that moved nothing: say what it did
        lines.append(f"last entry: {_entry_line(entry)}: {entry.reason}")
    return lines + _attention_lines(status, paint)


def _entry_line(entry: HistoryEntry) -> str:
    forced = " FORCED" if entry.forced else ""
    return (
        f"{entry.time} {entry.from_color or '(none)'} -> {entry.to_color} "
        f"{entry.outcome}{forced} (tag {entry.tag or '-'})"
    )


def _instance_lines(status: Status, paint: Paint) -> list[str]:
    lines = [f"{'instance':<12} {'runtime api':<34} {'live':<8} servers (weight state)"]
    for one in status.instances:
        if not one.reachable:
            lines.append(
                f"{one.name:<12} {one.address:<34} {paint('UNREACHABLE', '1;31')} {one.error}"
            )
            continue
        weights = ", ".join(f"{s.split('/')[-1]} {w} {a}" for s, w, a in one.weights)
        lines.append(f"{one.name:<12} {one.address:<34} {one.live or 'none':<8} {weights}")
    return lines


def _attention_lines(status: Status, paint: Paint) -> list[str]:
    """An unfinished switch, what is inconsistent, the warm window, a pending promotion."""
    lines = []
    if status.canary is not None:
        lines.append(paint(status.canary.line(), "1;33"))
    if status.unfinished is not None:
        entry = status.unfinished
        steps = ", ".join(s["step"] for s in entry.steps) or "none"
        does = (
            "to complete it (it passed its point of no return)"
            if any(s["step"] == POINT_OF_NO_RETURN for s in entry.steps)
            else "to restore the states before it"
        )
        lines.append(
            paint(
                f"UNFINISHED SWITCH: {entry.source or '(none)'} -> {entry.target} started "
                f"{entry.started} (steps done: {steps}); run 'bluegreen recover' {does}",
                "1;31",
            )
        )
    lines += [paint(f"INCONSISTENT: {problem}", "1;31") for problem in status.problems]
    if status.faults is not None:  # no switch goes to that color until it is deployed again
        lines.append(paint(f"FAULT LEFT: {refusal(status.faults)}", "1;31"))
    if status.warm is not None:
        w = status.warm
        rollback = (
            "bluegreen rollback needs no checks"
            if w.old_image is not None
            else "what it runs was not read, so bluegreen rollback runs the checks"
        )
        lines.append(
            f"warm window: {w.old} {w.old_tag or ''} kept warm for {w.remaining():.0f}s more "
            f"(until {when(w.until)}), then {w.action}; {rollback}".replace("  ", " ")
        )
    if status.pending is not None:
        p = status.pending
        state_word = "EXPIRED" if status.pending_expired else "pending"
        lines.append(
            f"promotion {state_word}: {p.target} {p.tag or ''} verified {p.age():.0f}s ago "
            f"({p.checks_passed} check(s) passed); bluegreen promote | bluegreen abort"
        )
    return lines
