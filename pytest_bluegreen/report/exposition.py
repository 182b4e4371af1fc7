"""Prometheus' text exposition format (version 0.0.4), written and read by the official
client library, ``prometheus-client`` (the ``metrics`` extra). It is imported only when metrics
are written or read: the bare install, which never publishes them, never loads it.

- :func:`registry` holds the families in a ``CollectorRegistry`` (what ``push_to_gateway``
  sends), :func:`render` writes them with ``generate_latest``: ``# HELP``, ``# TYPE``, then
  one line per sample, label values and HELP text escaped by the library;
- :func:`parse` reads samples back (a textfile written before, a Pushgateway's ``/metrics``)
  with the library's parser, only the lines of the metric names asked for, so another
  exporter's lines never get in the way.

``promtool check metrics`` accepts what :func:`render` writes (tests/report/test_metrics.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.extras import require

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "ExpositionError",
    "Family",
    "Labels",
    "Sample",
    "client",
    "parse",
    "registry",
    "render",
]

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Kind = Literal["counter", "gauge"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
FEATURE = "the gate's metrics (metrics_textfile, metrics_push_url)"


class ExpositionError(BluegreenError, ValueError):
    """Text that is not in the exposition format (the line number says where). The gate's
    metrics are written and pushed as a warning's matter: one that escaped would be a bug of
    ours."""

    exit_code = ExitCode.INTERNAL_ERROR


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Labels
    value: float

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type, help, and its samples (labels -> value)."""

    name: str
    kind: Kind
    help: str
    samples: Mapping[Labels, float] = field(default_factory=dict)


def labels_of(**given: str) -> Labels:
    return tuple(sorted(given.items()))


def client() -> ModuleType:
    """``prometheus_client``, or MissingExtra naming the ``metrics`` extra."""
    return require("prometheus_client", "metrics", FEATURE)


def registry(families: Iterable[Family]) -> CollectorRegistry:
    """A registry that holds exactly ``families``: their samples in label order, no
    ``_created`` series (a family built here has none), nothing of the process's own."""
    client()
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - the metrics extra
    from prometheus_client.metrics_core import (  # noqa: PLC0415 - the metrics extra
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector  # noqa: PLC0415 - the metrics extra

    built: list[Metric] = []
    for family in families:
        kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
        metric = kind(family.name, family.help)  # a counter's family name drops _total
        for labels, value in sorted(family.samples.items()):
            metric.add_sample(family.name, dict(labels), float(value))
        built.append(metric)

    class Families(Collector):
        def collect(self) -> Iterable[Metric]:
            return built

    held = CollectorRegistry(auto_describe=False)
    held.register(Families())
    return held


def render(families: Iterable[Family]) -> str:
    client()
    from prometheus_client import generate_latest  # noqa: PLC0415 - the metrics extra

    return generate_latest(registry(families)).decode()


def parse(text: str, names: Iterable[str]) -> Iterator[Sample]:
    """The samples of the metrics ``names`` in ``text``; other lines are skipped unread.
    Raises ExpositionError on a line of those metrics that does not parse. Each line is read
    alone, so the error says which one."""
    client()
    from prometheus_client.parser import (  # noqa: PLC0415 - the metrics extra
        text_string_to_metric_families,
    )

    wanted = set(names)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = _NAME.match(stripped)
        if found is None or found.group() not in wanted:
            continue
        try:
            read = [s for f in text_string_to_metric_families(stripped + "\n") for s in f.samples]
        except (ValueError, IndexError, KeyError) as exc:
            raise ExpositionError(f"line {number}: {exc}: {line[:120]!r}") from None
        for sample in read:
            labels = tuple(sorted(sample.labels.items()))
            yield Sample(sample.name, labels, float(sample.value))
