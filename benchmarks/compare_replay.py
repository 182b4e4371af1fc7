"""Judge recorded comparisons again, offline: the samples ``benchmarks/compare.py --record FILE``
wrote (each comparison's latencies per color, in the order the requests were sent), judged by
today's statistics with the benchmark's rules, beside what was decided when they were recorded.
Also prints how dependent consecutive requests of one color were (the mean autocorrelation of
the log latencies at lags 1, 2, 5, 10) and, on identical builds, how much the difference varied
from one comparison to the next against the interval's own standard error (``spread ratio``:
about 1 when the interval is honest). Run from the repository root:

    .venv/bin/python -m benchmarks.compare_replay FILE [FILE ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare import RULES
from pytest_bluegreen.judge.compare import CompareDecision, compare
from pytest_bluegreen.judge.comparerules import Samples

LAGS = (1, 2, 5, 10)


def autocorrelation(values: list[float]) -> list[float]:
    logs = np.log(np.asarray(values))
    centred = logs - logs.mean()
    scale = float(np.dot(centred, centred)) or 1.0
    return [float(np.dot(centred[:-lag], centred[lag:])) / scale for lag in LAGS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in args.files:
        for line in path.read_text(encoding="utf-8").splitlines():
            run = json.loads(line)
            runs[run["scenario"]].append(run)
    for scenario, recorded in runs.items():
        then = sum(bool(run["failed"]) for run in recorded)
        now, by_rule, shifts, errors = 0, dict.fromkeys((r.text for r in RULES), 0), [], []
        correlations = []
        for run in recorded:
            new, live = Samples.of(run["new"]), Samples.of(run["live"])
            judged = [compare(rule, new, live) for rule in RULES]
            failed = [c for c in judged if c.decision is CompareDecision.FAILED]
            now += bool(failed)
            for comparison in failed:
                by_rule[comparison.rule.text] += 1
            shifts.append([c.shift for c in judged])
            errors.append([(c.interval[1] - c.interval[0]) / 3.92 for c in judged if c.interval])
            correlations += [autocorrelation(run["new"]), autocorrelation(run["live"])]
        total = len(recorded)
        each = ", ".join(f"{text} {count}" for text, count in by_rule.items())
        acf = " ".join(f"{v:.2f}" for v in np.mean(correlations, axis=0))
        print(
            f"{scenario}: failed when recorded {then}/{total}, now {now}/{total} "
            f"({100 * now / total:.0f}%; per rule: {each}); autocorrelation at lags "
            f"{', '.join(map(str, LAGS))}: {acf}"
        )
        if scenario in ("shift=0%", "identical") and total >= 10:
            ratios = np.std(np.asarray(shifts), axis=0) / np.mean(np.asarray(errors), axis=0)
            spread = ", ".join(f"{r.text} {v:.2f}" for r, v in zip(RULES, ratios, strict=True))
            print(
                f"  spread ratio (sd of the difference / the interval's standard error): {spread}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
