"""The settings of judging a color and of telling the judgement: the checks and the comparison
(``checks``), the drill's known-bad variants (``drill``), the bake after a switch (``bake``),
Prometheus and its PromQL checks (``prometheus``); the reports (``reports``), the gate's own
metrics (``metrics``), the webhooks (``notify``) and the dashboard's series (``dashboard``).
:class:`.model.Settings` holds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.judge.comparerules import CompareRule, parse_compare_rule
from pytest_bluegreen.judge.queries import PromQLCheck, PromQLComparison
from pytest_bluegreen.judge.thresholds import BAKE_DEFAULTS, BakeThreshold, Threshold
from pytest_bluegreen.settings.webhooks import Webhook, parse_webhooks

from . import parsers as p
from .options import setting

if TYPE_CHECKING:
    from pytest_bluegreen.judge.bake import BakePlan
    from pytest_bluegreen.judge.prometheus import Prometheus

__all__ = [
    "AfterBake",
    "BakeOnInconclusive",
    "BakeSettings",
    "CanaryOnInconclusive",
    "CanarySettings",
    "ChecksSettings",
    "DashboardSettings",
    "DrillSettings",
    "MetricsSettings",
    "NotifySettings",
    "PrometheusSettings",
    "ReportSettings",
]

BakeOnInconclusive = Literal["rollback", "keep"]
AfterBake = Literal["keep", "stop"]
CanaryOnInconclusive = Literal["extend", "abort"]


@frozen
class ChecksSettings(Frozen):
    """What the checks use: their HTTP timeout and the perf checks' bounded load and limits."""

    GROUP: ClassVar[str] = "checks"
    thresholds: Mapping[str, tuple[Threshold, ...]] = field(default_factory=dict)
    http_timeout: float = setting(
        5.0, p.seconds, "timeout (s) of the checks' HTTP requests", cli="--http-timeout"
    )
    perf_requests: int = setting(400, p.whole(1, 1_000_000), "perf: requests per endpoint")
    perf_duration: float = setting(10.0, p.seconds, "perf: at most this many seconds each")
    perf_concurrency: int = setting(4, p.whole(1, 256), "perf: concurrent connections")
    # [compare] "/api/items" = ["p(95) <= live * 1.10", ...]: relative thresholds per endpoint
    # (judge/comparerules.py)
    compare: Mapping[str, tuple[CompareRule, ...]] = field(default_factory=dict)
    # [compare_prometheus] name = {query = "...{color}...", rules = [...]} (judge/queries.py)
    compare_prometheus: Mapping[str, PromQLComparison] = field(default_factory=dict)
    compare_requests: int = setting(
        300,
        p.whole(1, 1_000_000),
        "compare: requests per color and endpoint (interleaved between the two colors)",
    )
    compare_confidence: float = setting(
        0.95,
        p.fraction(0.5, 1.0),
        "compare: a rule fails only when the new color is worse beyond its tolerance at this "
        "two-sided confidence",
    )
    compare_min_samples: int = setting(
        50,
        p.whole(2, 1_000_000),
        "compare: fewer successful requests per color than this is inconclusive",
    )
    compare_baseline: str = setting(
        "live",
        p.lower,
        "compare: the color a new color is judged against: live (the color HAProxy sends "
        "traffic to) or a color's name",
    )
    blame: str = setting(
        "auto",
        p.choice("auto", "on", "off"),
        "when a check of the target fails, re-run it on the other color: failing there too is "
        "environmental (inconclusive, no rollback); auto: on for --switch/--rollback",
    )


@frozen
class DrillSettings(Frozen):
    """bluegreen drill: known-bad variants deployed to the idle color, each gated (a dry run; a
    "canary-failed" one through a real canary under the drill's own users' load); with
    --power, a ladder of injected faults, each gated several times."""

    GROUP: ClassVar[str] = "drill"
    # [drill] "v1.2.0-broken" = "failed": a tag and the verdict the gate must give it
    variants: Mapping[str, str] = field(default_factory=dict)
    drill_markers: str = setting(
        "quick or perf", p.text, "the -m expression of the checks each drill variant is gated by"
    )
    drill_canary: tuple[int, ...] = setting(
        (5, 25, 50),
        p.canary_steps,
        'the canary a "canary-failed" variant is gated by for real (its share of routed '
        "traffic per step), under the drill's own bounded users' load",
    )
    drill_canary_seconds: float = setting(
        30.0,
        p.seconds,
        'canary_step_seconds for a "canary-failed" variant (its first step must see '
        "canary_min_requests of the drill's paced users' load, about 35 a second)",
    )
    drill_load_path: str = setting(
        "/api/items",
        p.path_segment,
        'the path of routed_api_url the drill\'s users request during a "canary-failed" '
        "variant's canary (GET, at most 20,000 requests, 2 at a time, about 35 a second: "
        "under the shipped rate limit)",
    )
    # bluegreen drill --power (cli/power.py): how sensitive the gate is
    drill_power_latency: tuple[float, ...] = setting(
        (2.0, 5.0, 10.0, 20.0, 50.0),
        p.rising_percents(10_000),
        "drill --power: the latency ladder, each in % of the live color's median latency on "
        "drill_load_path (measured first), added to the idle color's /api/* answers; rising, at "
        "most 20",
    )
    drill_power_errors: tuple[float, ...] = setting(
        (0.5, 1.0, 2.0, 5.0),
        p.rising_percents(100),
        "drill --power: the error ladder, each the % of the idle color's /api/* requests "
        "answering 500; rising, at most 20",
    )
    drill_power_runs: int = setting(
        10,
        p.whole(1, 100),
        "drill --power: gates of each magnitude, and of the zero-fault control (false "
        "alarms); a magnitude stops early once 90% of them caught is certain or out of reach",
    )
    drill_power_tail: float = setting(
        1.0,
        p.share,
        "drill --power: the share of the idle color's /api/* requests the latency is added "
        "to (1: all; 0.1: every 10th, a regression in the tail)",
    )


@frozen
class BakeSettings(Frozen):
    """After the switch: the bake window, and the old color kept warm."""

    GROUP: ClassVar[str] = "bake"
    # [bake_thresholds] "haproxy" = [...] (judge/thresholds.py); none given: the bake's defaults
    thresholds: tuple[BakeThreshold, ...] = BAKE_DEFAULTS
    # [bake_prometheus] name = {query = "...{color}...{interval}...", thresholds = [...]}
    prometheus: tuple[PromQLCheck, ...] = ()
    bake_seconds: float | None = setting(
        None,
        p.optional(p.off_at_zero(p.seconds)),
        "SECONDS: after a switch, run the post checks and watch HAProxy's counters this long; "
        "a failed bake switches back; 0: no bake",
        cli="--bake",
    )
    bake_interval: float = setting(10.0, p.seconds, "seconds of one bake interval")
    bake_failure_limit: int = setting(
        0, p.whole(0, 1000), "failed (or inconclusive) intervals the bake tolerates"
    )
    bake_consecutive_successes: int = setting(
        0, p.whole(0, 1000), "the bake passes early after this many intervals in a row passed"
    )
    bake_min_requests: int = setting(
        0, p.whole(0, 10_000_000), "an interval with fewer routed requests is inconclusive"
    )
    bake_on_inconclusive: BakeOnInconclusive = setting(
        "rollback",
        p.choice("rollback", "keep"),
        "when the bake cannot judge: switch back (rollback) or keep the new color",
    )
    scale_down_delay: float = setting(
        30.0,
        p.whole(0, 86400),
        "seconds the old color stays warm (weight 0, health-checked) after a switch (forced "
        "ones too); a rollback inside the window needs no checks while the old color runs the "
        "image it ran then (a deploy to it ends the window)",
    )
    after_bake_old_color: AfterBake = setting(
        "keep",
        p.choice("keep", "stop"),
        "after the warm window: keep the old color's containers, or stop them (the gate "
        "waits without the lock, and stops nothing HAProxy sends traffic to)",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bake_seconds)

    def plan(self) -> BakePlan:
        """The bake these settings ask for."""
        from pytest_bluegreen.judge.bake import BakePlan  # noqa: PLC0415 - a gate's only (GATE_ONLY)

        return BakePlan(
            seconds=self.bake_seconds or 0.0,
            interval=self.bake_interval,
            failure_limit=self.bake_failure_limit,
            consecutive_successes=self.bake_consecutive_successes,
            min_requests=self.bake_min_requests,
            thresholds=self.thresholds,
            prometheus=self.prometheus,
        )


def _latency_rule(value: object) -> str:
    """A ``[compare]`` rule of latency (``p(95) <= live * 1.25 + 10``), kept as its text."""
    text = p.text(value)
    if parse_compare_rule(text).is_rate:
        raise ValueError(f"{text!r} is a rate: the canary compares 5xx rates by itself")
    return text


def _latency_series(value: object) -> str:
    """A histogram's bucket series with ``{color}``: without it both colors would read the
    same series, and every step pass on an equal comparison."""
    text = p.text(value)
    if "{color}" not in text:
        raise ValueError(
            f"{text!r} names no {{color}}: each color's histogram is read by putting the color "
            'in it (e.g. jarvis_http_request_duration_seconds_bucket{color="{color}"})'
        )
    return text


@frozen
class CanarySettings(Frozen):
    """Before the full switch: canary steps that give the new color a share of routed traffic,
    each judged on that traffic (docs/gate.md, "Canary steps")."""

    GROUP: ClassVar[str] = "canary"
    canary_steps: tuple[int, ...] = setting(
        (),
        p.canary_steps,
        "PERCENTS: before the full switch, give the new color these shares of routed traffic "
        "in turn (e.g. 5,25,50), each step judged on that traffic against the live color; a "
        "failed step returns every weight to where it was; empty: no canary",
        cli="--canary",
    )
    canary_step_seconds: float = setting(
        30.0, p.seconds, "seconds of one canary step (the window it is judged on)"
    )
    canary_min_requests: int = setting(
        50,
        p.whole(1, 10_000_000),
        "a canary step in which either color answered fewer routed requests is inconclusive",
    )
    canary_on_inconclusive: CanaryOnInconclusive = setting(
        "extend",
        p.choice("extend", "abort"),
        "when a step cannot be judged (too little traffic, a counter unread): judge it again "
        "for another canary_step_seconds, up to canary_extensions times, then abort (extend); "
        "or abort at once (abort). Never a pass",
    )
    canary_extensions: int = setting(
        2, p.whole(0, 100), "how many times an inconclusive canary step is judged again"
    )
    canary_error_margin: float = setting(
        0.01,
        p.fraction(0.0, 1.0),
        "a step fails when the new color's 5xx rate exceeds the live color's on the same "
        "traffic by more than this, and the interval of the difference (compare_confidence) "
        "lies beyond it too",
    )
    canary_latency: str | None = setting(
        None,
        p.optional(_latency_series),
        "a Prometheus histogram's bucket series both colors export, with {color} (e.g. "
        "'jarvis_http_request_duration_seconds_bucket{color=\"{color}\"}'): each step also "
        "compares the two colors' latency from it in its window by canary_latency_rule (needs "
        "prometheus_url)",
    )
    canary_latency_rule: str = setting(
        "p(95) <= live * 1.25 + 10",
        _latency_rule,
        "how much slower than the live color the new one may be in a step (the [compare] "
        "grammar, ms: p(N), med or avg); fails only when the interval of the excess lies beyond "
        "it too",
    )
    canary_sticky: bool = setting(
        True,
        p.boolean,
        "during the canary, a user keeps the color they got (haproxy.cfg's bluegreen_sticky "
        "cookie, honoured only while a canary runs)",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.canary_steps)


@frozen
class PrometheusSettings(Frozen):
    """Prometheus: where its HTTP API answers, and the PromQL checks of [prometheus_checks]."""

    GROUP: ClassVar[str] = "prometheus"
    # [prometheus_checks] name = {query = "...", thresholds = [...]}: see judge/queries.py
    checks: Mapping[str, PromQLCheck] = field(default_factory=dict)
    prometheus_url: str | None = setting(
        None,
        p.optional(p.url),
        "Prometheus' HTTP API (the bundled stack's: http://127.0.0.1:10200): the shipped "
        "Prometheus checks, the PromQL checks ([prometheus_checks]), the bake's and the "
        "comparison's Prometheus signals ([bake_prometheus], [compare_prometheus]); unset: a "
        "deployment without Prometheus (its checks skip, saying so)",
        cli="--prometheus-url",
    )
    prometheus_timeout: float = setting(5.0, p.seconds, "seconds one Prometheus query may take")

    def client(self) -> Prometheus:
        """A client of Prometheus' HTTP API at ``prometheus_url`` (which must be set)."""
        from pytest_bluegreen.judge.prometheus import Prometheus  # noqa: PLC0415 - when asked

        if self.prometheus_url is None:
            raise ValueError("no Prometheus is configured (prometheus_url)")
        return Prometheus(self.prometheus_url, self.prometheus_timeout)


@frozen
class ReportSettings(Frozen):
    """Where the gate's reports go."""

    GROUP: ClassVar[str] = "reports"
    allure_dir: Path | None = setting(
        None,
        p.optional(p.path),
        "write Allure results here when --alluredir is not given (e.g. reports/allure-results)",
        path=True,
    )
    verdict_file: Path = setting(
        Path("reports/verdict.json"),
        p.path,
        "the gate's machine-readable verdict (decision, reason, colors, tag, counts)",
        path=True,
    )


@frozen
class MetricsSettings(Frozen):
    """Where each run publishes the gate's own metrics; neither set: nothing is sent or written.

    The metrics (``bluegreen_*``) and how counters carry on are in report/metrics.py and the
    docs/monitoring.md's "The gate's own metrics"."""

    GROUP: ClassVar[str] = "metrics"
    metrics_push_url: str | None = setting(
        None,
        p.optional(p.url),
        "a Prometheus Pushgateway (http://127.0.0.1:9091): each run's metrics are put to "
        "/metrics/job/bluegreen/instance/<host>, counters carried on from what it holds",
    )
    metrics_textfile: Path | None = setting(
        None,
        p.optional(p.path),
        "a node_exporter textfile-collector file (.../bluegreen.prom), replaced atomically "
        "after each run, its counters carried on from the file's previous ones",
        path=True,
    )
    metrics_push_timeout: float = setting(
        5.0,
        p.seconds,
        "seconds the whole push to metrics_push_url may take (reading the counters back, the "
        "push, one retry); past it the run warns and goes on",
    )


@frozen
class NotifySettings(Frozen):
    """Webhooks told of every outcome (docs/notifications.md)."""

    GROUP: ClassVar[str] = "notify"
    notify: tuple[Webhook, ...] = setting(
        (),
        parse_webhooks,
        "http(s) URLs POSTed a JSON event (with a Slack-compatible text) on every outcome of "
        "a gate or a bluegreen command (docs/notifications.md); in the environment or ini "
        "separated by commas or spaces; their tokens and passwords are redacted like secrets",
    )
    notify_timeout: float = setting(
        5.0, p.seconds, "seconds one notification attempt waits for the webhook's answer"
    )
    notify_retries: int = setting(
        2,
        p.whole(0, 5),
        "retries of a notification after a connection error, HTTP 5xx or 429 (never after "
        "another 4xx or a read timeout)",
    )
    run_id: str | None = setting(
        None,
        p.optional(p.text),
        "this run's id in the notifications (default: GITHUB_RUN_ID or CI_PIPELINE_ID)",
    )

    @property
    def secrets(self) -> dict[str, str]:
        """The webhooks' tokens and passwords, named for :class:`Secrets`."""
        return {
            f"notify[{number}]#{part}": value
            for number, hook in enumerate(self.notify, start=1)
            for part, value in enumerate(hook.secrets)
        }


@frozen
class DashboardSettings(Frozen):
    """The colors' series the dashboard and monitoring/grafana/bluegreen.json draw.

    Their defaults are what the bundled stack's Jarvis API exports; HAProxy's servers are a
    color's by their names (``blue-api``: the part before the first ``-``), as
    monitoring/rules/ reads them (docs/monitoring.md, "The dashboard")."""

    GROUP: ClassVar[str] = "dashboard"
    dashboard_requests: str = setting(
        "jarvis_http_requests_total",
        p.series_selector,
        "the colors' answered requests: a counter with the color label and a 'code' label "
        "(the HTTP status), as a PromQL series selector (e.g. "
        "'jarvis_http_requests_total{job=\"jarvis\"}'): requests/s and 5xx/s by color",
    )
    dashboard_latency: str = setting(
        "jarvis_http_request_duration_seconds_bucket",
        p.series_selector,
        "the colors' request durations: a histogram's bucket series with the color label, as "
        "a PromQL series selector: p95 latency by color",
    )
    dashboard_color_label: str = setting(
        "color",
        p.label_name,
        "the label that names a series' color (on both series above; HAProxy's server states "
        "get it from the servers' names)",
    )
    dashboard_library: Path = setting(
        Path(".bluegreen/chartjs"),
        p.path,
        "the folder the charting library is installed in (npm's --prefix: scripts/install-chartjs "
        "puts chart.js and chartjs-plugin-annotation there); the page loads it from the dashboard, "
        "nothing from outside the machine",
        path=True,
    )
