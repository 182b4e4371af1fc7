"""A bounded load on the routed URL while traffic moves: the switch's own zero-downtime
evidence (``probe_requests`` > 0). Stops when the switch ends, or by its own bounds.

An ``https://`` routed URL is probed over TLS and verified as the switch's verification
verifies it (requests' trust: ``REQUESTS_CA_BUNDLE``, else certifi's bundle); a handshake that
fails measures nothing, and the summary says so (``error``) instead of counting failed requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_bluegreen.judge.load import LoadResult, TlsError, run_load
from pytest_bluegreen.settings import SwitchingSettings

__all__ = ["Probe", "ProbeSummary"]


@dataclass(frozen=True)
class ProbeSummary:
    """What the probe saw: requests sent, how many failed, answers per color, p99."""

    requests: int = 0
    failed: int = 0
    colors: Mapping[str, int] = field(default_factory=dict)
    p99_ms: float = 0.0
    error: str | None = None  # why nothing was measured (a TLS handshake that failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "colors": dict(self.colors),
            "p99_ms": self.p99_ms,
            "error": self.error,
        }

    def line(self, url: str) -> str:
        """``probe through URL: 120 requests during the switch, 0 failed``"""
        if self.error is not None:
            return f"probe through {url}: nothing measured: {self.error}"
        return (
            f"probe through {url}: {self.requests} requests during the switch, {self.failed} failed"
        )


class Probe:
    def __init__(self, switching: SwitchingSettings, color_header: str) -> None:
        self.stop = threading.Event()
        self.result: LoadResult | None = None
        self.error: str | None = None
        bound = switching.drain_timeout + switching.verify_timeout + 5

        def run() -> None:
            try:
                self.result = run_load(
                    switching.verify_url,
                    total=switching.probe_requests,
                    duration=bound,
                    concurrency=2,
                    stop=self.stop,
                    color_header=color_header,
                )
            except TlsError as exc:
                self.error = str(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> ProbeSummary:
        self.stop.set()
        self.thread.join(60)
        result = self.result
        if result is None:
            return ProbeSummary(error=self.error)
        return ProbeSummary(
            requests=result.count,
            failed=len(result.failed),
            colors={str(k): v for k, v in result.colors().items()},
            p99_ms=round(result.latency_ms(99), 2),
        )
