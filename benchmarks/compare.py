"""Benchmark: how well the comparison with the live color tells a slower build from noise.

Two identical backend processes (tests/support/backend_app.py, ~20 ms per request with a
lognormal spread), one of them slowed down by a known share (0%, 5%, 10%, 20%), or with a
regression in its tail only (each request 300 ms slower with probability 10%, its median
unchanged), compared with the default sample size (compare_requests, 300 per color,
interleaved over 4 connections) by ``sidebyside.measure`` -- the code path of
checks/test_compare.py -- over repeated runs. The rules have no tolerance (``p(95) <= live``,
``med <= live``): what is measured is the test's own power and false alarm rate. It prints

    shift=0% false_alarms=Y% seconds=Z
    shift=10% detected=X% seconds=Z
    tail=10%+300ms detected=X% seconds=Z

(``detected``: runs where a rule failed; ``false_alarms``: the same count on identical builds;
``seconds``: wall time per comparison; then how many runs each rule failed). Goal: detected
>= 90% at shift=10% and at the tail, false alarms <= 5%, seconds <= 20. Asserts nothing. Run
from the repository root:

    .venv/bin/python -m benchmarks.compare [--runs 30] [--only shift=0%] [--record FILE]

``--record FILE`` appends every comparison's samples to FILE, so that the statistics can be
iterated offline on one recording (``benchmarks/compare_replay.py FILE``) instead of loading
the machine again.

With ``--jarvis``: identical builds on the real stack instead, the repository's [compare] rules
(bluegreen.toml, with their tolerance) on /api/items between the two colors' direct URLs, 20
times (``--runs``; tests/stack/test_docker_stack.py runs 5 of these): each failure is a false one.
On the local stack with blue at v1.0.0 and green at v1.1.0 (the same code, scripts/demo):

    .venv/bin/python -m benchmarks.compare --jarvis http://127.0.0.1:21010 http://127.0.0.1:21011
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

from pytest_bluegreen.judge.compare import CompareDecision
from pytest_bluegreen.judge.comparerules import parse_compare_rule, parse_compare_table
from pytest_bluegreen.judge.sidebyside import SideBySide, measure
from pytest_bluegreen.settings import ChecksSettings
from tests.support.stack import Backend, backends

BASE_MS = 20.0
JITTER = 0.2  # sigma of the lognormal spread around BASE_MS
SHIFTS = (0.0, 0.05, 0.10, 0.20)
TAIL_SHARE, TAIL_MS = 0.10, 300.0  # each request of the new build this much slower, this often
RULES = (parse_compare_rule("p(95) <= live"), parse_compare_rule("med <= live"))


def compare_once(live: Backend, new: Backend, requests: int) -> SideBySide:
    return measure(
        "/api/echo",
        RULES,
        (("green", new.url), ("blue", live.url)),
        requests=requests,
        duration=120,
        concurrency=4,
        timeout=5,
        color_header="X-Bluegreen-Color",
        confidence=0.95,
        min_samples=50,
    )


def identical_jarvis(blue: str, green: str, runs: int) -> int:
    """The repository's [compare] rules between two identical builds: false failures."""
    table = tomllib.loads((Path(__file__).parents[1] / "bluegreen.toml").read_text())["compare"]
    rules = parse_compare_table(table)["/api/items"]
    false, seconds = [], []
    for _ in range(runs):
        started = time.monotonic()
        result = measure(
            "/api/items", rules, (("blue", blue), ("green", green)),
            requests=300, duration=30, concurrency=4, timeout=5,
            color_header="X-Bluegreen-Color", confidence=0.95, min_samples=50,
        )  # fmt: skip
        seconds.append(time.monotonic() - started)
        false += result.failed
    for comparison in false:
        print(f"  false failure: {comparison.line()}")
    print(
        f"identical builds, {runs} comparisons x {len(rules)} rules: false failures="
        f"{len(false)} seconds={sum(seconds) / len(seconds):.1f}"
    )
    return 0


def record(path: Path, scenario: str, result: SideBySide) -> None:
    line = {
        "scenario": scenario,
        "new": list(result.new.latencies_ms),
        "live": list(result.live.latencies_ms),
        "failed": [c.rule.text for c in result.failed],
    }
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="comparisons per scenario (30; --jarvis: 20)")
    parser.add_argument(
        "--jarvis", nargs=2, metavar=("BLUE_URL", "GREEN_URL"),
        help="identical Jarvis builds at these direct URLs, the repository's [compare] rules",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="append", metavar="NAME",
        help="run only this scenario (shift=0%%, shift=10%%, tail=10%%+300ms ...; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--record", type=Path, metavar="FILE",
        help="append each comparison's samples (latencies in the order sent) to FILE as JSON "
        "lines, to judge them again offline (benchmarks/compare_replay.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.jarvis:
        blue, green = args.jarvis
        return identical_jarvis(blue, green, args.runs or 20)
    args.runs = args.runs or 30
    requests = ChecksSettings.__dataclass_fields__["compare_requests"].default  # the default
    assert isinstance(requests, int)
    rules = ", ".join(r.text for r in RULES)
    print(
        f"{args.runs} comparisons per scenario, {requests} requests per color, rules: {rules}; "
        f"base {BASE_MS:g} ms, spread sigma {JITTER:g}"
    )
    for blue, green in backends():
        blue.control(delay_ms=BASE_MS, jitter=JITTER)
        scenarios: list[tuple[str, str, dict[str, float]]] = [
            (
                f"shift={shift * 100:.0f}%",
                "false_alarms" if shift == 0 else "detected",
                {"delay_ms": BASE_MS * (1 + shift)},
            )
            for shift in SHIFTS
        ]
        scenarios.append(
            (
                f"tail={TAIL_SHARE * 100:.0f}%+{TAIL_MS:.0f}ms",
                "detected",
                {"delay_ms": BASE_MS, "tail_ms": TAIL_MS, "tail_share": TAIL_SHARE},
            )
        )
        for name, label, faults in scenarios:
            if args.only and name not in args.only:
                continue
            green.control(reset=True, jitter=JITTER, **faults)
            failed, seconds, by_rule = 0, [], dict.fromkeys((r.text for r in RULES), 0)
            for _ in range(args.runs):
                started = time.monotonic()
                result = compare_once(blue, green, requests)
                seconds.append(time.monotonic() - started)
                if args.record is not None:
                    record(args.record, name, result)
                failures = [c for c in result.comparisons if c.decision is CompareDecision.FAILED]
                failed += bool(failures)
                for comparison in failures:
                    by_rule[comparison.rule.text] += 1
            share = 100 * failed / args.runs
            each = ", ".join(f"{text} {count}" for text, count in by_rule.items())
            print(
                f"{name} {label}={share:.0f}% ({failed}/{args.runs}) "
                f"seconds={sum(seconds) / len(seconds):.1f} (failed per rule: {each})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
