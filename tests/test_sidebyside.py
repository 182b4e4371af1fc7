"""The interleaved load behind the comparison (two real backends), and the drill's scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_bluegreen.drill import DrillRow, caught_by, drill_table, run_variants
from pytest_bluegreen.load import run_interleaved
from tests.support.stack import Backend


@pytest.mark.infra
def test_the_interleaved_load_hits_both_colors_alike(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, green = color_backends
    for backend in (blue, green):
        backend.reset()
    loads = run_interleaved(
        {"blue": f"{blue.url}/api/echo", "green": f"{green.url}/api/echo"},
        total_each=120,
        duration=30,
        concurrency=3,
    )
    assert {name: load.count for name, load in loads.items()} == {"blue": 120, "green": 120}
    assert loads["blue"].colors() == {"blue": 120}
    assert loads["green"].colors() == {"green": 120}
    # in time: the n-th request to blue and the n-th to green were sent close together, never
    # one color's load first and the other's after it
    starts = {name: sorted(s.start for s in load.samples) for name, load in loads.items()}
    wall = loads["blue"].wall
    gaps = [abs(b - g) for b, g in zip(starts["blue"], starts["green"], strict=True)]
    assert max(gaps) < wall / 4, (max(gaps), wall)
    blue_first = sum(b < g for b, g in zip(starts["blue"], starts["green"], strict=True))
    assert 0 < blue_first < 120  # both colors lead on some connections


@pytest.mark.infra
def test_the_interleaved_load_counts_errors_per_color(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, green = color_backends
    blue.reset()
    green.reset()
    green.control(error_every=10)
    try:
        loads = run_interleaved(
            {"blue": f"{blue.url}/api/echo", "green": f"{green.url}/api/echo"},
            total_each=100,
            duration=30,
            concurrency=2,
        )
    finally:
        green.reset()
    assert len(loads["blue"].failed) == 0
    assert 9 <= len(loads["green"].failed) <= 11  # every 10th of ~100 (counted per process)


def test_bad_interleaved_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        run_interleaved({"a": "http://127.0.0.1:1/"}, total_each=0, duration=1)
    with pytest.raises(ValueError, match="must be positive"):
        run_interleaved({}, total_each=1, duration=1)


# --- the drill's scoring (no stack: deploy and gate are stand-ins) ------------------------------


def test_caught_by_names_the_first_failed_check_and_counts_the_rest() -> None:
    verdict = {
        "failed_checks": {
            "shared": ["checks/test_databases.py::test_redis"],
            "green": [
                "checks/test_perf.py::test_latency_thresholds[green-/api/items]",
                "checks/test_compare.py::test_compared_with_the_live_color[green-/api/items]",
            ],
        }
    }
    assert caught_by(verdict, "green") == (
        "test_perf.py::test_latency_thresholds[green-/api/items] (+2 more)"
    )
    assert caught_by({"failed_checks": {}}, "green") == ""


def test_a_variant_with_another_verdict_is_a_hole(tmp_path: Path) -> None:
    verdicts = {
        "v2-slow": {"verdict": "failed", "failed_checks": {"green": ["a.py::test_x[green]"]}},
        "v2-sneaky": {"verdict": "switch", "failed_checks": {}},
    }
    deployed: list[str] = []

    def gate(tag: str) -> tuple[int, Path]:
        path = tmp_path / f"{tag}.json"
        path.write_text(json.dumps(verdicts[tag]))
        return (0 if verdicts[tag]["verdict"] == "switch" else 1), path

    def deploy(tag: str) -> int:
        deployed.append(tag)
        return 9 if tag == "v2-unhealthy" else 0

    rows = run_variants(
        {"v2-slow": "failed", "v2-sneaky": "failed", "v2-unhealthy": "deploy-failed"},
        "green",
        deploy=deploy,
        gate=gate,
        progress=lambda line: None,
    )
    assert deployed == ["v2-slow", "v2-sneaky", "v2-unhealthy"]
    assert [(r.tag, r.actual, r.caught_by, r.ok) for r in rows] == [
        ("v2-slow", "failed", "a.py::test_x[green]", True),
        ("v2-sneaky", "switch", "", False),
        ("v2-unhealthy", "deploy-failed", "the deploy", True),
    ]
    table = drill_table(rows)
    assert table[0].split() == ["variant", "expected", "actual", "caught", "by"]
    assert table[2].split()[-1] == "MISSED"
    assert table[-1].startswith("drill: 2 of 3 variant(s) got the expected verdict in ")
    assert table[-1].endswith("the gate has a hole: see MISSED")


def test_a_gate_without_a_verdict_is_reported_not_guessed(tmp_path: Path) -> None:
    rows = run_variants(
        {"v3": "failed"},
        "green",
        deploy=lambda tag: 0,
        gate=lambda tag: (3, tmp_path / "missing.json"),
        progress=lambda line: None,
    )
    assert rows == [DrillRow("v3", "failed", "no verdict (exit 3)", "", rows[0].seconds)]
    assert not rows[0].ok
