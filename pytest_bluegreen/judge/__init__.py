"""Judging a color: bounded load, k6-style thresholds, Prometheus queries, the comparison of
two colors and its statistics, the bake after a switch, the blame of a failed check."""
