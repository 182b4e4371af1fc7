"""What the dashboard's page draws at one moment (``GET /api/snapshot``): each panel's series
from Prometheus over the chosen range, and the gate's runs as markers on the time axis.

A marker comes from the history (the state file, when it is readable: outcome, tag, colors)
or from an increase of ``bluegreen_gate_runs_total`` (outcome and target color: runs the
history here does not hold, another host's); the two of one run are one marker, the
history's. A switch back after a failed bake is ``bake-failed`` (the history's reason says
so; the counter knows it as ``rolled-back``). A counter's increase is seen from the second
scrape of the counter on: the very first run a Pushgateway ever holds is the history's only.

Prometheus that does not answer makes the whole snapshot an error (the page says it, in place
of the charts); a query Prometheus refuses (a ``[dashboard]`` series it cannot parse) is that
panel's error. Nothing here holds a secret: the Prometheus URL is shown without its
credentials, and the history's reasons (which may quote a setting) are not served.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_bluegreen.judge.prometheus import (
    Prometheus,
    PrometheusUnreachable,
    PromQLError,
    QueryResult,
)
from pytest_bluegreen.record.history import (
    BAKE_REASON,
    HistoryEntry,
    Outcome,
    StateFileError,
    read_history,
)
from pytest_bluegreen.redaction import shown_url
from pytest_bluegreen.settings.judging import DashboardSettings

from .panels import GATE_RUNS, Panel, panels

__all__ = [
    "BAKE_FAILED",
    "RANGES",
    "Marker",
    "Source",
    "history_markers",
    "kind_of",
    "merged",
    "prometheus_markers",
    "snapshot",
    "steps_of",
]

RANGES = {"15m": 900, "1h": 3600, "6h": 21600}  # the page's time ranges, in seconds
POINTS = 180  # points per series: a range's step is its length / POINTS
SHORTEST_WINDOW = 60  # seconds a rate is taken over, at least (a few scrapes of 5 s or 15 s)
BAKE_FAILED = "bake-failed"


@dataclass(frozen=True)
class Source:
    """Where the page's data comes from: Prometheus' URL (credentials allowed: never shown),
    the colors' series, the state file (None: no history markers), the colors' names."""

    prometheus_url: str
    series: DashboardSettings
    state_file: Path | None
    colors: tuple[str, ...]
    timeout: float = 5.0


@dataclass(frozen=True)
class Marker:
    """One gate run on the time axis."""

    time: float  # Unix seconds
    kind: str  # an Outcome's value, or bake-failed
    target: str
    source: str | None = None
    tag: str | None = None
    seen_in: str = "history"  # or "prometheus"


def steps_of(seconds: int) -> tuple[float, int]:
    """A range's step (seconds between two points) and the window its rates are taken over."""
    step = max(1.0, seconds / POINTS)
    return step, max(SHORTEST_WINDOW, math.ceil(4 * step))


def kind_of(entry: HistoryEntry) -> str:
    if entry.outcome is Outcome.ROLLED_BACK and entry.reason.startswith(BAKE_REASON):
        return BAKE_FAILED
    return entry.outcome.value


def history_markers(entries: Iterable[HistoryEntry], start: float, end: float) -> list[Marker]:
    """The history's entries between ``start`` and ``end``, as markers."""
    found = []
    for entry in entries:
        try:
            at = datetime.fromisoformat(entry.time).timestamp()
        except ValueError:
            continue  # a time this version cannot read: no place on the axis
        if start <= at <= end:
            found.append(Marker(at, kind_of(entry), entry.to_color, entry.from_color, entry.tag))
    return found


def prometheus_markers(result: QueryResult, start: float, step: float) -> list[Marker]:
    """A marker where each series of :data:`GATE_RUNS` begins a stretch of points (the counter
    rose within the window before it); a stretch under way at the range's start began before
    it, and is not this range's."""
    found = []
    for series in result.series:
        outcome, target = (series.labels.get(name, "") for name in GATE_RUNS.legend)
        previous = None
        for at in series.times:
            begins = previous is None or at - previous > step * 1.5
            if begins and at - start > step * 0.5:
                found.append(Marker(at, outcome, target, seen_in="prometheus"))
            previous = at
    return found


def merged(history: Sequence[Marker], counted: Sequence[Marker], slack: float) -> list[Marker]:
    """The history's markers, and the counter's that none of them accounts for: one of the
    same outcome and target, at most ``slack`` seconds apart, is the same run."""
    left = list(counted)
    for marker in history:
        outcome = Outcome.ROLLED_BACK.value if marker.kind == BAKE_FAILED else marker.kind
        same = [
            c
            for c in left
            if c.kind == outcome
            and c.target == marker.target
            and abs(c.time - marker.time) <= slack
        ]
        if same:
            left.remove(min(same, key=lambda c: abs(c.time - marker.time)))
    return sorted([*history, *left], key=lambda m: m.time)


@dataclass
class _Snapshot:
    range: int
    start: float
    end: float
    step: float
    window: str
    colors: list[str]
    prometheus: str
    panels: list[dict[str, Any]] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def snapshot(source: Source, seconds: int, now: float | None = None) -> dict[str, Any]:
    """The page's data for the last ``seconds`` (a JSON document)."""
    end = time.time() if now is None else now
    step, window = steps_of(seconds)
    start = end - seconds
    shot = _Snapshot(
        seconds,
        start,
        end,
        step,
        f"{window}s",
        list(source.colors),
        shown_url(source.prometheus_url),
    )
    try:
        with Prometheus(source.prometheus_url, source.timeout) as client:
            for panel in panels(source.series):
                shot.panels.append(_panel(client, panel, shot))
            runs = client.query_range(
                GATE_RUNS.render(shot.window), start=start, end=end, step=step
            )
    except PrometheusUnreachable as exc:
        shot.error = _short(str(exc))
        return asdict(shot)
    except PromQLError as exc:
        runs = QueryResult("", "matrix", ())
        shot.notes.append(f"gate runs not read: {exc}")
    history: list[Marker] = []
    if source.state_file is not None:
        try:
            history = history_markers(_history(source.state_file), start, end)
        except StateFileError as exc:
            shot.notes.append(f"history not read: {exc}")
    counted = prometheus_markers(runs, start, step)
    shot.markers = [asdict(m) for m in merged(history, counted, window + 2 * step)]
    return asdict(shot)


_READ: dict[Path, tuple[tuple[int, ...], list[HistoryEntry]]] = {}
_READ_LOCK = threading.Lock()


def _history(path: Path) -> list[HistoryEntry]:
    """The history at ``path``, read again only when the file changed (a gate writes a new
    file and renames it over the old: another inode): the page refreshes every few seconds,
    and a long history takes a second to read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    except OSError:
        return read_history(path)  # its own one-line error
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _READ_LOCK:
        known = _READ.get(path)
    if known is not None and known[0] == key:
        return known[1]
    entries = read_history(path)
    with _READ_LOCK:
        _READ[path] = (key, entries)
    return entries


def _short(text: str) -> str:
    """``Prometheus at URL does not answer: [Errno 111] Connection refused``, not urllib3's
    paragraph (with the query in it)."""
    head, said, _ = text.partition(" does not answer: ")
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return f"{head}{said}{found.group()}" if said and found else text


def _panel(client: Prometheus, panel: Panel, shot: _Snapshot) -> dict[str, Any]:
    drawn: dict[str, Any] = {
        "key": panel.key,
        "title": panel.title,
        "unit": panel.unit,
        "stacked": panel.stacked,
        "series": [],
        "error": None,
    }
    try:
        result = client.query_range(
            panel.query.render(shot.window), start=shot.start, end=shot.end, step=shot.step
        )
    except PromQLError as exc:
        drawn["error"] = str(exc)
        return drawn
    color_label = panel.query.legend[0]
    for series in sorted(result.series, key=lambda s: sorted(s.labels.items())):
        drawn["series"].append(
            {
                "name": " ".join(series.labels.get(name, "?") for name in panel.query.legend),
                "color": series.labels.get(color_label, ""),
                "points": [
                    [at, value if math.isfinite(value) else None]
                    for at, value in zip(series.times, series.values, strict=True)
                ],
            }
        )
    return drawn
