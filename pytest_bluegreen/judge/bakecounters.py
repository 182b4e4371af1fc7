"""HAProxy's counters as the bake measures them: the metrics (their thresholds' grammar, which
the settings parse, is :mod:`.thresholds`'s, handed on from here), a reading of the new color's
servers on every HAProxy instance, and an interval's metrics from two readings. The bake that
judges them is in :mod:`.bake`.

HAProxy thresholds are k6-like: ``http_5xx_rate<0.01``, ``eresp<1``; the metrics are the
deltas over the interval of the new color's servers (``show stat``, summed over every HAProxy
instance): ``requests`` (responses), ``http_5xx``, ``http_5xx_rate``, ``eresp``, ``econ``,
``wretr``, ``wredis``, and ``qcur`` (the queue at the interval's end). A delta is taken only
between two readings of the same HAProxy process (``show info``'s Pid and Start_time_sec, read
before and after each ``show stat``): a reload, a restart or ``clear counters`` starts the
counters again, and a difference across it (10000/120 -> 300/0) is no measurement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef, StatRow
from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.runtime import RuntimeApi

from .thresholds import (
    BAKE_METRICS,
    DEFAULT_BAKE_THRESHOLDS,
    BakeThreshold,
    parse_bake_thresholds,
)

if TYPE_CHECKING:  # imported where used: a bake's, not every session's
    from pytest_bluegreen.haproxy.identity import InstanceIdentity

__all__ = [
    "DEFAULT_BAKE_THRESHOLDS",
    "METRICS",
    "BakeThreshold",
    "Reading",
    "compare_readings",
    "deltas",
    "parse_bake_thresholds",
    "read_counters",
]

_COUNTERS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
METRICS = BAKE_METRICS  # the metrics a bake threshold names (thresholds.py: the grammar)
_CUMULATIVE = (*_COUNTERS, "eresp", "econ", "wretr", "wredis")  # never go down in one process


@dataclass(frozen=True)
class Reading:
    """The new color's servers' cumulative counters on each HAProxy instance (summed over the
    servers), each with the process that answered them."""

    counters: Mapping[str, Mapping[str, float]]  # instance -> counter -> value
    processes: Mapping[str, InstanceIdentity]
    moved: Mapping[str, str]  # instances whose process changed while being read -> how

    def total(self) -> dict[str, float]:
        total = dict.fromkeys((*_CUMULATIVE, "qcur"), 0.0)
        for values in self.counters.values():
            for key in total:
                total[key] += values[key]
        return total


def _summed(rows: Iterable[StatRow], wanted: set[ServerRef]) -> dict[str, float]:
    """The counters of ``wanted`` summed; a field HAProxy leaves empty (not applicable) is 0.
    Raises ValueError for one that is not a count (``nan``, ``-1``, ``12x``): read as 0 it
    would make the interval's difference up."""
    total = dict.fromkeys((*_CUMULATIVE, "qcur"), 0.0)
    for row in rows:
        if row.ref in wanted:
            for key in total:
                text = row.raw.get(key) or "0"
                if not (text.isascii() and text.isdigit()):
                    raise ValueError(f"{row.ref} {key}={text[:20]!r} is not a count")
                total[key] += int(text)
    return total


def read_counters(group: Haproxies, servers: Iterable[ServerRef]) -> Reading:
    """Every instance's counters of ``servers``, between two ``show info`` of its process (so a
    reload during the read is seen). Raises RuntimeApiError."""
    from pytest_bluegreen.haproxy.identity import InstanceIdentity  # noqa: PLC0415 - a bake's, not every session's

    wanted = set(servers)

    def one(
        name: str, client: RuntimeApi
    ) -> tuple[InstanceIdentity, dict[str, float], InstanceIdentity]:
        first = InstanceIdentity.from_info(str(client.address), client.show_info())
        rows = client.show_stat()
        lacking = wanted - {row.ref for row in rows}
        if lacking:  # a server without a row reads as zero counters: no reading at all
            raise RuntimeApiError(
                "show stat",
                "",
                f"{group.label(name, 'HAProxy')} answered 'show stat' without "
                f"{', '.join(str(ref) for ref in sorted(lacking))} (cut short?)",
            )
        try:
            values = _summed(rows, wanted)
        except ValueError as exc:
            raise RuntimeApiError(
                "show stat", "", f"{group.label(name, 'HAProxy')} answered 'show stat' with {exc}"
            ) from None
        last = InstanceIdentity.from_info(str(client.address), client.show_info())
        return first, values, last

    found = group.each(one)
    return Reading(
        counters={name: values for name, (_, values, _) in found.items()},
        processes={name: last for name, (_, _, last) in found.items()},
        moved={
            name: f"{first} -> {last}"
            for name, (first, _, last) in found.items()
            if not first.same_process(last)
        },
    )


def compare_readings(before: Reading, after: Reading) -> tuple[dict[str, float], str]:
    """The interval's metrics from two readings, or ``({}, why)`` when they do not measure it:
    an instance whose process changed (a reload, a restart) or any of whose counters went down
    (``clear counters``) started counting again, so no difference means anything."""
    several = len(after.counters) > 1
    if before.counters.keys() != after.counters.keys():
        return {}, (
            f"HAProxy instances read at the start ({', '.join(before.counters)}) and at the end "
            f"({', '.join(after.counters)}) differ"
        )
    for name in after.counters:
        which = f"HAProxy {name}" if several else "HAProxy"
        moved = before.moved.get(name) or after.moved.get(name)
        if moved is None and not before.processes[name].same_process(after.processes[name]):
            moved = f"{before.processes[name]} -> {after.processes[name]}"
        if moved is not None:
            return {}, (
                f"{which} was reloaded or restarted during the interval ({moved}): its "
                "counters started again, so the interval measured nothing"
            )
        went_down = [
            f"{key} {before.counters[name][key]:g} -> {after.counters[name][key]:g}"
            for key in _CUMULATIVE
            if after.counters[name][key] < before.counters[name][key]
        ]
        if went_down:
            return {}, (
                f"{which}'s counters went down during the interval ({', '.join(went_down)}): "
                "they were cleared, so the interval measured nothing"
            )
    return deltas(before.total(), after.total()), ""


def deltas(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    requests = sum(after[k] - before[k] for k in _COUNTERS)
    errors = after["hrsp_5xx"] - before["hrsp_5xx"]
    return {
        "requests": requests,
        "http_5xx": errors,
        "http_5xx_rate": errors / requests if requests else math.nan,
        "eresp": after["eresp"] - before["eresp"],
        "econ": after["econ"] - before["econ"],
        "wretr": after["wretr"] - before["wretr"],
        "wredis": after["wredis"] - before["wredis"],
        "qcur": after["qcur"],
    }
