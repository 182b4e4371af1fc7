"""What a judgement of a color says: passed, failed or inconclusive (Argo Rollouts' words).

One enum for every judge that has these three answers: a bake's interval and the bake itself
(``bake.IntervalVerdict``, deprecated: a verdict is the gate's), a comparison of two colors
and a PromQL query against its thresholds (``compare.CompareDecision`` is this enum).
*Inconclusive* is never a pass: it means nothing could be measured (an empty measurement, an
unreachable source), not that a threshold held. The values are written to the history, the
reports and the gate's metrics."""

from __future__ import annotations

import enum

__all__ = ["Judgement"]


class Judgement(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
