"""The dashboard's markers and ranges, without Prometheus: where a run of the gate goes on
the time axis, from the history or from an increase of its counter, and one marker per run
(the real Prometheus and browser: test_dashboard.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_bluegreen.judge.prometheus import QueryResult, Series
from pytest_bluegreen.record.history import (
    HistoryEntry,
    Outcome,
    StateFileError,
    append,
    read_history,
)
from pytest_bluegreen.report import snapshot as snapshot_module
from pytest_bluegreen.report.dashboard import DashboardError, listen_address
from pytest_bluegreen.report.panels import with_matcher
from pytest_bluegreen.report.snapshot import (
    BAKE_FAILED,
    Marker,
    history_markers,
    kind_of,
    merged,
    prometheus_markers,
    steps_of,
)

START = 1_800_000_000.0
STEP = 5.0


def counted(*stretches: tuple[float, float], outcome: str = "switched") -> QueryResult:
    """One series of the gate runs' query, present from each start to each end (seconds after
    START, every STEP)."""
    times = tuple(
        START + start + STEP * n
        for start, end in stretches
        for n in range(int((end - start) / STEP) + 1)
    )
    labels = {"outcome": outcome, "target": "green"}
    return QueryResult("q", "matrix", (Series(labels, (1.0,) * len(times), times),))


def entry(at: float, outcome: Outcome = Outcome.SWITCHED, reason: str = "") -> HistoryEntry:
    stamp = datetime.fromtimestamp(START + at, UTC).isoformat(timespec="seconds")
    return HistoryEntry(stamp, "blue", "green", "v1.1.0", outcome, "host", reason)


@pytest.mark.parametrize(
    ("stretches", "expected"),
    [
        ([(100, 160)], [100]),
        ([(100, 160), (300, 360)], [100, 300]),
        ([(0, 60)], []),  # under way when the range begins: an earlier run
        ([(0, 60), (200, 260)], [200]),
        ([], []),
    ],
    ids=["one", "two", "before-the-range", "before-and-in", "none"],
)
def test_a_counted_run_is_where_its_increase_begins(
    stretches: list[tuple[float, float]], expected: list[float]
) -> None:
    markers = prometheus_markers(counted(*stretches), START, STEP)
    assert [m.time - START for m in markers] == expected
    assert all(
        (m.kind, m.target, m.seen_in) == ("switched", "green", "prometheus") for m in markers
    )


def test_the_history_gives_its_runs_in_the_range_with_their_tags() -> None:
    entries = [entry(-10), entry(100), entry(200, Outcome.REFUSED), entry(5000)]
    markers = history_markers(entries, START, START + 900)
    assert [(m.time - START, m.kind, m.tag) for m in markers] == [
        (100, "switched", "v1.1.0"),
        (200, "refused", "v1.1.0"),
    ]


def test_a_switch_back_after_a_bake_is_a_failed_bake() -> None:
    assert kind_of(entry(0, Outcome.ROLLED_BACK, "bake failed: 5xx 3% > 1%")) == BAKE_FAILED
    assert kind_of(entry(0, Outcome.ROLLED_BACK, "bake inconclusive: no traffic")) == BAKE_FAILED
    assert kind_of(entry(0, Outcome.ROLLED_BACK, "checks of blue passed")) == "rolled-back"


def test_a_run_in_both_is_one_marker_the_historys() -> None:
    history = [
        Marker(START + 100, "switched", "green", "blue", "v1.1.0"),
        Marker(START + 400, BAKE_FAILED, "blue", "green", "v1.1.0"),
    ]
    seen = [
        Marker(START + 105, "switched", "green", seen_in="prometheus"),
        Marker(START + 410, "rolled-back", "blue", seen_in="prometheus"),
        Marker(START + 600, "refused", "green", seen_in="prometheus"),  # another host's
        Marker(START + 900, "switched", "green", seen_in="prometheus"),  # too far: another run
    ]
    found = merged(history, seen, slack=70)
    assert [(m.time - START, m.kind, m.seen_in) for m in found] == [
        (100, "switched", "history"),
        (400, BAKE_FAILED, "history"),
        (600, "refused", "prometheus"),
        (900, "switched", "prometheus"),
    ]


@pytest.mark.parametrize(
    ("seconds", "step", "window"), [(900, 5, 60), (3600, 20, 80), (21600, 120, 480)]
)
def test_a_range_has_its_step_and_window(seconds: int, step: float, window: int) -> None:
    assert steps_of(seconds) == (step, window)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("x", 'x{code=~"5.."}'),
        ('x{job="a"}', 'x{job="a",code=~"5.."}'),
        ('x{job="a",}', 'x{job="a",code=~"5.."}'),
        ("x{}", 'x{code=~"5.."}'),
    ],
)
def test_a_matcher_is_added_to_a_selector(selector: str, expected: str) -> None:
    assert with_matcher(selector, 'code=~"5.."') == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [("127.0.0.1:10201", ("127.0.0.1", 10201)), ("[::1]:8080", ("::1", 8080))],
)
def test_a_listen_address_is_host_and_port(given: str, expected: tuple[str, int]) -> None:
    assert listen_address(given) == expected


@pytest.mark.parametrize("given", ["10201", ":10201", "host:", "host:http", "h:70000", "h:²"])
def test_a_bad_listen_address_is_refused(given: str) -> None:
    with pytest.raises(DashboardError, match="--listen expects HOST:PORT"):
        listen_address(given)


def test_the_history_is_read_again_only_when_a_gate_rewrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    reads: list[Path] = []
    real = read_history

    def counted(at: Path) -> list[HistoryEntry]:
        reads.append(at)
        return real(at)

    monkeypatch.setattr(snapshot_module, "read_history", counted)
    first = HistoryEntry.now(
        from_color="blue", to_color="green", tag="v2", outcome=Outcome.SWITCHED
    )
    append(path, first)
    assert snapshot_module._history(path) == [first]
    assert snapshot_module._history(path) == [first]
    assert len(reads) == 1  # the second refresh: the same file
    second = HistoryEntry.now(
        from_color="green", to_color="blue", tag="v1", outcome=Outcome.ROLLED_BACK
    )
    append(path, second)  # a new file renamed over the old
    assert snapshot_module._history(path) == [first, second]
    assert len(reads) == 2
    path.chmod(0o000)  # unreadable now: said, not the old entries
    try:
        if os.geteuid() != 0:
            with pytest.raises(StateFileError, match="not readable history"):
                snapshot_module._history(path)
        else:  # root reads it anyway: read again all the same (ctime changed)
            assert snapshot_module._history(path) == [first, second]
        assert len(reads) == 3
    finally:
        path.chmod(0o600)
