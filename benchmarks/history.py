"""Benchmark: what a long history costs the gate and the dashboard.

Every gate run reads the whole history twice (``check_history`` before anything changes, then
``append``, which reads it and writes it back whole) and the dashboard reads it at each refresh.
A team that gates every merge has thousands of entries after a year. For each size this writes
a history of that many entries with the module's own ``append`` format, then times:

    read_ms     read_history: the file parsed, each entry checked field by field
    append_ms   append: read, one entry added, written durably (fsync'd)
    per_entry_us  read_ms per entry, in microseconds: flat when reading is linear

and prints ``read 100000/1000=X``: the ratio of the largest size's per-entry cost to the
smallest's (about 1: no entry costs more because there are more of them).

    .venv/bin/python -m benchmarks.history [--sizes 1000,10000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from pytest_bluegreen.record.history import (
    FORMAT_VERSION,
    HistoryEntry,
    Outcome,
    append,
    read_history,
)


def entry(i: int) -> HistoryEntry:
    return HistoryEntry(
        time=f"2026-12-{1 + i % 28:02d}T10:{i % 60:02d}:00+00:00",
        from_color="blue" if i % 2 else "green",
        to_color="green" if i % 2 else "blue",
        tag=f"v1.{i}.0",
        outcome=Outcome.SWITCHED if i % 5 else Outcome.ROLLED_BACK,
        host="ci-runner-7",
        reason="" if i % 5 else "checks failed: test_api_health[green] (+2 more)",
    )


def written(path: Path, size: int) -> None:
    payload = {"version": FORMAT_VERSION, "history": [asdict(entry(i)) for i in range(size)]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def best_ms(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    per_entry: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"state-{size}.json"
            written(path, size)
            read_ms = best_ms(args.repeat, partial(read_history, path))
            assert len(read_history(path)) == size
            append_ms = best_ms(1, partial(append, path, entry(size)))
            per_entry[size] = read_ms * 1000 / size
            print(
                f"history n={size} read_ms={read_ms:.0f} append_ms={append_ms:.0f} "
                f"per_entry_us={per_entry[size]:.1f} MB={path.stat().st_size / 1e6:.1f}"
            )
    first, last = sizes[0], sizes[-1]
    print(f"read {last}/{first}={per_entry[last] / per_entry[first]:.2f} (per entry)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
