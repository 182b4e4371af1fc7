"""The end of scripts/demo: what Prometheus (127.0.0.1:10200) says after the demo's gate runs.

Waits (bounded, 60 s) until Prometheus has scraped every target since they came up and the
Pushgateway's copy of the gate's counters, then prints ``up`` per target and
``bluegreen_gate_runs_total`` per outcome and color. Exit 1 when a target is down or no gate
run is counted by the deadline.
"""

from __future__ import annotations

import sys
import time

from pytest_bluegreen.judge.prometheus import Prometheus, PrometheusUnreachable

URL = "http://127.0.0.1:10200"
DEADLINE_S = 60.0


def main() -> int:
    deadline = time.monotonic() + DEADLINE_S
    with Prometheus(URL) as prometheus:
        while True:
            try:
                targets = prometheus.targets()
                runs = prometheus.query("sum by (outcome, target) (bluegreen_gate_runs_total) > 0")
            except PrometheusUnreachable as exc:
                print(f"[demo] prometheus: {exc}", file=sys.stderr)
                return 1
            healthy = targets and all(t.health == "up" for t in targets)
            if (healthy and runs.series) or time.monotonic() >= deadline:
                break
            time.sleep(1)
    print(f"[demo] prometheus {URL}: {len(targets)} target(s)")
    for target in targets:
        color = target.labels.get("color")
        print(f"  up{{job={target.job!r}{f', color={color!r}' if color else ''}}} = "
              f"{1 if target.health == 'up' else 0}")  # fmt: skip
    for series in runs.series:
        print(f"  bluegreen_gate_runs_total{series.name} = {series.values[-1]:g}")
    return 0 if healthy and runs.series else 1


if __name__ == "__main__":
    raise SystemExit(main())
