"""The new color measured side by side with its baseline (the live color), and judged by the
``[compare]`` rules (:mod:`compare`).

Both colors get the same bounded keep-alive load, interleaved in time
(:func:`load.run_interleaved`: every connection sends one request to each color in turn), so a
noisy machine slows both alike. ``measure`` returns the judged result; ``attach`` puts the
table, every rule's line and a plot of both latency distributions on the Allure result (when
allure-pytest and matplotlib are installed; without them, nothing is attached).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from .compare import Comparison, compare, summary_table
from .comparerules import CompareRule, Samples
from .judgement import Judgement
from .load import CaFile, LoadResult, run_interleaved

__all__ = ["SideBySide", "measure", "samples_of"]


def samples_of(result: LoadResult) -> Samples:
    """The comparison's view of a load: successful latencies (ms), failed count, total."""
    ok = tuple(s.latency * 1000 for s in result.samples if not s.failed)
    return Samples(ok, len(result.failed), result.count)


@dataclass(frozen=True)
class SideBySide:
    endpoint: str
    new_color: str
    live_color: str
    new: Samples
    live: Samples
    comparisons: tuple[Comparison, ...]
    seconds: float

    @property
    def failed(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.decision is Judgement.FAILED]

    @property
    def inconclusive(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.decision is Judgement.INCONCLUSIVE]

    def table(self) -> str:
        return summary_table(self.endpoint, self.new, self.live, self.new_color, self.live_color)

    def text(self) -> str:
        """The table and one line per rule."""
        return "\n".join([self.table(), *(c.line() for c in self.comparisons)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "new_color": self.new_color,
            "live_color": self.live_color,
            "seconds": round(self.seconds, 3),
            "comparisons": [c.as_dict() for c in self.comparisons],
        }

    def attach(self, config: pytest.Config) -> None:
        """The table, the rules' lines and the plot on the current Allure result, when Allure
        results are being written (``--alluredir``)."""
        if not config.pluginmanager.has_plugin("allure_listener"):
            return
        import allure  # noqa: PLC0415 - present: its listener is registered

        allure.attach(
            self.text(),
            name=f"{self.endpoint}: {self.new_color} vs {self.live_color}",
            attachment_type=allure.attachment_type.TEXT,
        )
        allure.attach(
            json.dumps(self.as_dict(), indent=2, allow_nan=False),
            name=f"{self.endpoint}: comparison",
            attachment_type=allure.attachment_type.JSON,
        )
        from .compare import plot_distributions  # noqa: PLC0415

        image = plot_distributions(
            self.endpoint, self.new, self.live, self.new_color, self.live_color
        )
        if image is not None:
            allure.attach(
                image,
                name=f"{self.endpoint}: latency distributions",
                attachment_type=allure.attachment_type.PNG,
            )


def measure(
    endpoint: str,
    rules: Sequence[CompareRule],
    urls: tuple[tuple[str, str], tuple[str, str]],
    *,
    requests: int,
    duration: float,
    concurrency: int,
    timeout: float,
    color_header: str,
    confidence: float,
    min_samples: int,
    tls_ca: CaFile | None = None,
) -> SideBySide:
    """Load ``endpoint`` on both colors interleaved, then judge every rule.

    ``urls``: ((new color, its base URL), (baseline color, its base URL)); an ``https://`` one
    is loaded over TLS, verified against ``tls_ca`` when given (else requests' default trust):
    a handshake that fails raises :class:`load.TlsError`, an infrastructure error.
    """
    (new_color, new_url), (live_color, live_url) = urls
    loads = run_interleaved(
        {new_color: new_url + endpoint, live_color: live_url + endpoint},
        total_each=requests,
        duration=duration,
        concurrency=concurrency,
        timeout=timeout,
        color_header=color_header,
        tls_ca=tls_ca,
    )
    new, live = samples_of(loads[new_color]), samples_of(loads[live_color])
    judged = tuple(
        compare(
            rule,
            new,
            live,
            confidence=confidence,
            min_samples=min_samples,
            endpoint=endpoint,
        )
        for rule in rules
    )
    seconds = loads[new_color].wall
    return SideBySide(endpoint, new_color, live_color, new, live, judged, seconds)
