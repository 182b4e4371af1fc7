"""The resolved settings: small frozen groups, each holding what one part of the gate needs.

A module takes the group it works with (the switch takes ``switching`` and ``topology``, the
deployer ``compose``), not the whole :class:`Settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.haproxy.instances import Haproxies, Instance
from pytest_bluegreen.haproxy.runtime import (
    RuntimeApi,
    RuntimeApiAddress,
    ServerRef,
    ServerState,
    TlsFiles,
)
from pytest_bluegreen.judge.headers import COLOR_HEADER, SERVER_HEADER, VERSION_HEADER
from pytest_bluegreen.judge.thresholds import Threshold
from pytest_bluegreen.redaction import Secrets, secrets_of_urls
from pytest_bluegreen.settings.webhooks import Webhook, parse_webhooks

from . import parsers as p
from .options import setting

if TYPE_CHECKING:
    from pytest_bluegreen.judge.bake import BakePlan
    from pytest_bluegreen.judge.promql import Prometheus

__all__ = [
    "DEFAULT_COLORS",
    "Answer",
    "BakeSettings",
    "ChecksSettings",
    "ColorSettings",
    "ComposeSettings",
    "DrillSettings",
    "EnvFiles",
    "HaproxySettings",
    "MetricsSettings",
    "NotifySettings",
    "PrometheusSettings",
    "PromotionSettings",
    "ReportSettings",
    "RunSettings",
    "Settings",
    "StateSettings",
    "SwarmSettings",
    "SwitchingSettings",
    "Topology",
]

OnFailedGate = Literal["keep", "teardown", "restore"]
BakeOnInconclusive = Literal["rollback", "keep"]
AfterBake = Literal["keep", "stop"]
PullPolicy = Literal["missing", "never", "always"]
DeployEngineName = Literal["compose", "swarm"]
T = TypeVar("T")
DEFAULT_COLORS = ("blue", "green")  # the seed's colors, when the settings name none


@frozen
class RunSettings(Frozen):
    """What this run is asked to do (mostly from the command line)."""

    GROUP: ClassVar[str] = "run"
    env: str = setting("all", p.lower, "blue|green|all|shared: which checks run", cli="--env")
    switch: bool = setting(
        False,
        p.boolean,
        "gate: switch HAProxy traffic to the --env color when the session passes",
        cli="--switch",
        env=False,
        file=False,
        flag=True,
    )
    rollback: bool = setting(
        False,
        p.boolean,
        "return traffic to the previous color after its checks pass, and verify",
        cli="--rollback",
        env=False,
        file=False,
        flag=True,
    )
    dry_run: bool = setting(
        False,
        p.boolean,
        "with --switch/--rollback: print what would be switched and why, change nothing",
        cli="--dry-run",
        flag=True,
    )
    deploy: str | None = setting(
        None,
        p.optional(p.image_tag),
        "TAG: before the checks, deploy the --env color at TAG (compose up, wait healthy)",
        cli="--deploy",
        env=False,
        file=False,
    )
    force_deploy: bool = setting(
        False,
        p.boolean,
        "with --deploy: allow deploying over the live color",
        cli="--force-deploy",
        env=False,
        file=False,
        flag=True,
    )
    skip_backup: bool = setting(
        False,
        p.boolean,
        "with --deploy: no backup (backup_command) before deploying",
        cli="--skip-backup",
        flag=True,
    )
    deployment_tag: str | None = setting(
        None,
        p.optional(p.text),
        "the version being gated, recorded in the history",
        cli="--deployment-tag",
    )
    promote_later: bool = setting(
        False,
        p.boolean,
        "verify now, record a pending promotion, switch nothing (bluegreen promote "
        "switches it later); also spelled --switch=manual",
        cli="--promote-later",
        aliases=("--switch=manual",),
        file=False,
        flag=True,
    )
    allow_missing_instance: tuple[str, ...] = setting(
        (),
        p.text_list,
        "NAME[,NAME]: switch the other HAProxy instances when these do not answer (down for "
        "maintenance); they are recorded to be brought in line when they return",
        cli="--allow-missing-instance",
        file=False,
    )
    allow_narrowed: bool = setting(
        False,
        p.boolean,
        "gate on a selection narrowed by the last run's state (--lf, --sw, --deselect); "
        "without it such a run is inconclusive",
        cli="--allow-narrowed",
        file=False,
        flag=True,
    )


@frozen
class HaproxySettings(Frozen):
    """Where HAProxy's Runtime API listens, and its server-state file."""

    GROUP: ClassVar[str] = "haproxy"
    runtime_api: RuntimeApiAddress = setting(
        RuntimeApiAddress(path="/var/run/haproxy/admin.sock"),
        p.runtime_api,
        "HAProxy Runtime API: a unix socket path or 127.0.0.1:PORT",
        cli="--runtime-api",
    )
    runtime_api_timeout: float = setting(2.0, p.seconds, "Runtime API socket timeout (s)")
    haproxy_state_file: Path | None = setting(
        None,
        p.optional(p.path),
        "HAProxy's server-state-file, rewritten after each switch",
        path=True,
    )

    runtime_api_cert: Path | None = setting(
        None,
        p.optional(p.path),
        "for a tls:// runtime_api: our client certificate (PEM) that HAProxy verifies",
        path=True,
    )
    runtime_api_key: Path | None = setting(
        None,
        p.optional(p.path),
        "for a tls:// runtime_api: the client certificate's key",
        path=True,
    )
    runtime_api_ca: Path | None = setting(
        None,
        p.optional(p.path),
        "for a tls:// runtime_api: the CA that signs HAProxy's certificate",
        path=True,
    )

    @property
    def tls(self) -> TlsFiles | None:
        if not self.runtime_api.tls:
            return None
        cert, key, ca = self.runtime_api_cert, self.runtime_api_key, self.runtime_api_ca
        if cert is None or key is None or ca is None:  # resolve() refuses this
            raise ValueError(f"{self.runtime_api} needs runtime_api_cert, _key and _ca")
        return TlsFiles(cert, key, ca)

    def client(self) -> RuntimeApi:
        """A Runtime API client for this address and timeout."""
        return RuntimeApi(self.runtime_api, self.runtime_api_timeout, self.tls)


@frozen
class SwitchingSettings(Frozen):
    """How traffic moves: the routed URLs that verify it, weights, timeouts, the probe."""

    GROUP: ClassVar[str] = "switching"
    routed_api_url: str = setting(
        "http://127.0.0.1:20010",
        p.url,
        "the public URL HAProxy routes to the live color (switch verification)",
        cli="--routed-url",
    )
    routed_frontend_url: str | None = setting(
        "http://127.0.0.1:20011",
        p.optional(p.url),
        "the public frontend URL routed to the live color",
    )
    verify_path: str = setting(
        "/health", p.path_segment, "path requested through the routed URL to verify a switch"
    )
    verify_responses: int = setting(
        3, p.whole(1, 100), "consecutive responses from the new color that verify a switch"
    )
    full_weight: int = setting(100, p.whole(1, 256), "the HAProxy weight a live server gets")
    drain_timeout: float = setting(
        30.0,
        p.seconds,
        "seconds to wait for the old color's sessions to end",
        cli="--drain-timeout",
    )
    verify_timeout: float = setting(
        10.0,
        p.seconds,
        "seconds to wait for the routed URL to answer from the new color",
        cli="--verify-timeout",
    )
    up_wait: float = setting(
        0.0,
        p.seconds,
        "seconds the gate waits, after the checks, for every server of the target to be UP "
        "before refusing a switch (a replica Swarm is replacing comes back); 0: refuse at once",
        cli="--up-wait",
    )
    probe_requests: int = setting(
        0,
        p.whole(0, 10_000_000),
        "N: during a switch, send at most N requests through the routed URL and report how "
        "many failed (0: no probe)",
        cli="--probe",
    )

    @property
    def verify_url(self) -> str:
        return self.routed_api_url + self.verify_path


@frozen
class ComposeSettings(Frozen):
    """The Compose stack the colors run in, and what ``--deploy`` does around ``compose up``."""

    GROUP: ClassVar[str] = "compose"
    deploy_engine: DeployEngineName = setting(
        "compose",
        p.choice("compose", "swarm"),
        "what runs the colors: Docker Compose on one host, or Docker Swarm (the [swarm] "
        "settings: a stack with each color's services as replicas)",
        cli="--deploy-engine",
    )
    compose_file: Path = setting(
        Path("docker/docker-compose.blue-green.yml"),
        p.path,
        "the Compose file of the stack",
        path=True,
    )
    compose_project: str | None = setting(
        None,
        p.optional(p.text),
        "the Compose project name (default: Compose's own, the compose file's folder name)",
    )
    image_repository: str | None = setting(
        None,
        p.optional(p.text),
        "the colors' image, tagged with the deployment tag (checked before deploying)",
    )
    image_variable: str = setting(
        "BLUEGREEN_IMAGE",
        p.variable_name,
        "the Compose variable the image repository goes in (the compose file's "
        "${VARIABLE}:${<COLOR>_TAG}), written beside the tags",
    )
    pull: PullPolicy = setting(
        "missing",
        p.choice("missing", "never", "always"),
        "Compose pull policy when deploying (never: the image must be built locally)",
    )
    deploy_timeout: float = setting(
        120.0,
        p.seconds,
        "seconds to wait for the deployed services to become healthy",
        cli="--deploy-timeout",
    )
    on_failed_gate: OnFailedGate = setting(
        "keep",
        p.choice("keep", "teardown", "restore"),
        "after --deploy, when the gate fails: keep the color for debugging, tear it down, or "
        "restore the tag it ran before",
    )
    backup_service: str | None = setting(
        None,
        p.optional(p.text),
        "Compose service the backup command runs in (e.g. postgres); unset: no backup",
    )
    backup_command: tuple[str, ...] | None = setting(
        None,
        p.optional(p.command),
        'command whose output is the backup, e.g. ["pg_dump", "-U", "app", "app"] (in the '
        "environment or ini: pg_dump,-U,app,app)",
    )
    backup_dir: Path = setting(
        Path("reports/backups"), p.path, "where backups are written (mode 0600)", path=True
    )
    backup_timeout: float = setting(
        600.0, p.seconds, "seconds the backup command may take before the deploy fails"
    )

    @property
    def project_name(self) -> str:
        """The project name Compose uses: the setting, else the compose file's folder name."""
        if self.compose_project:
            return self.compose_project
        folder = self.compose_file.resolve().parent.name.lower()
        return "".join(c for c in folder if c.isalnum() or c in "_-") or "default"


@frozen
class SwarmSettings(Frozen):
    """Docker Swarm as the deploy engine: the stack, its file, and each color's replicas."""

    GROUP: ClassVar[str] = "swarm"
    stack_name: str = setting(
        "bluegreen",
        p.stack_name,
        "the swarm stack the colors' services belong to (services are <stack>_<service>)",
    )
    stack_file: Path = setting(
        Path("docker/swarm-stack.yml"),
        p.path,
        "the stack file (a Compose file), deployed with 'docker stack deploy' the first time",
        path=True,
    )
    replicas: int = setting(
        2, p.whole(1, 100), "replicas of each color's services", cli="--replicas"
    )
    rollback_failed_deploy: bool = setting(
        True,
        p.boolean,
        "a rollout that fails (tasks crash, not healthy in time) is rolled back by Swarm to "
        "the image the service ran before ('docker service rollback')",
    )

    def service(self, name: str) -> str:
        """The swarm's name of one of the stack's services: ``bluegreen_green-api``."""
        return f"{self.stack_name}_{name}"


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
    # [compare] "/api/items" = ["p(95) <= live * 1.10", ...]: relative thresholds (judge/compare.py)
    compare: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # [compare_prometheus] name = {query = "...{color}...", rules = [...]} (judge/promql.py)
    compare_prometheus: Mapping[str, Any] = field(default_factory=dict)
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
    """bluegreen drill: known-bad variants deployed to the idle color, each gated (dry run)."""

    GROUP: ClassVar[str] = "drill"
    # [drill] "v1.2.0-broken" = "failed": a tag and the verdict the gate must give it
    variants: Mapping[str, str] = field(default_factory=dict)
    drill_markers: str = setting(
        "quick or perf", p.text, "the -m expression of the checks each drill variant is gated by"
    )


@frozen
class BakeSettings(Frozen):
    """After the switch: the bake window, and the old color kept warm."""

    GROUP: ClassVar[str] = "bake"
    # [bake_thresholds] "haproxy" = [...], see judge/bake.py; None: none given, the bake's
    # defaults
    thresholds: tuple[Any, ...] | None = None
    # [bake_prometheus] name = {query = "...{color}...{interval}...", thresholds = [...]}
    prometheus: tuple[Any, ...] = ()
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
        """The bake these settings ask for (no thresholds given: the bake's defaults)."""
        from pytest_bluegreen.judge.bake import (  # noqa: PLC0415 - a gate's only (GATE_ONLY)
            DEFAULT_BAKE_THRESHOLDS,
            BakePlan,
            parse_bake_thresholds,
        )

        return BakePlan(
            seconds=self.bake_seconds or 0.0,
            interval=self.bake_interval,
            failure_limit=self.bake_failure_limit,
            consecutive_successes=self.bake_consecutive_successes,
            min_requests=self.bake_min_requests,
            thresholds=(
                self.thresholds
                if self.thresholds is not None
                else parse_bake_thresholds(DEFAULT_BAKE_THRESHOLDS)
            ),
            prometheus=self.prometheus,
        )


@frozen
class PrometheusSettings(Frozen):
    """Prometheus: where its HTTP API answers, and the PromQL checks of [prometheus_checks]."""

    GROUP: ClassVar[str] = "prometheus"
    # [prometheus_checks] name = {query = "...", thresholds = [...]}: see judge/promql.py
    checks: Mapping[str, Any] = field(default_factory=dict)
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
        from pytest_bluegreen.judge.promql import Prometheus  # noqa: PLC0415 - requests, when asked

        if self.prometheus_url is None:
            raise ValueError("no Prometheus is configured (prometheus_url)")
        return Prometheus(self.prometheus_url, self.prometheus_timeout)


@frozen
class PromotionSettings(Frozen):
    """Verify now, switch later: a pending promotion and its limits."""

    GROUP: ClassVar[str] = "promotion"
    max_verification_age: float = setting(
        3600.0,
        p.seconds,
        "bluegreen promote re-runs the quick checks when the verification is older than this",
    )
    promotion_timeout: float = setting(
        86400.0, p.seconds, "a pending promotion older than this is refused"
    )


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
class StateSettings(Frozen):
    """What the gate remembers between runs."""

    GROUP: ClassVar[str] = "state"
    state_file: Path = setting(
        Path(".bluegreen/state.json"),
        p.path,
        "JSON history of gate runs and switches",
        cli="--state-file",
        path=True,
    )

    journal_file: Path = setting(
        Path(".bluegreen/journal.json"),
        p.path,
        "the switch's write-ahead journal; an unfinished one blocks traffic changes until "
        "'bluegreen recover'",
        path=True,
    )
    lock_dir: Path = setting(
        Path("/run/bluegreen"),
        p.path,
        "folder of the gate locks (one per HAProxy, however its address is spelled), shared by "
        "every gate and bluegreen command on this host; made mode 0700 by the first gate, "
        "refused when another user could change it; for gates run by a user other than root, "
        "make it once for that user (install -d -m 0700 -o USER /run/bluegreen) or set a "
        "folder of that user's",
        path=True,
    )

    @property
    def tags_file(self) -> Path:
        """The Compose env file that remembers each color's deployed tag."""
        return self.state_file.with_name("compose-tags.env")


@frozen
class EnvFiles(Frozen):
    """The seed's env files: ``shared.env``, ``<color>.env`` and ``secrets.env``."""

    GROUP: ClassVar[str] = "env_files"
    colors: tuple[str, ...] = ()
    env_dir: Path = setting(
        Path("config/deploy"), p.path, "folder of shared.env, <color>.env, secrets.env", path=True
    )
    secrets_file: Path | None = setting(
        None,
        p.optional(p.path),
        "the secrets' file when not env_dir/secrets.env (e.g. /etc/bluegreen/secrets.env "
        "outside a CI workspace that is wiped between jobs)",
        path=True,
    )

    @property
    def directory(self) -> Path:
        return self.env_dir

    @property
    def shared(self) -> Path:
        return self.env_dir / "shared.env"

    @property
    def secrets(self) -> Path:
        return self.secrets_file or self.env_dir / "secrets.env"

    @property
    def per_color(self) -> dict[str, Path]:
        return {c: self.env_dir / f"{c}.env" for c in self.colors}

    def variables(self, color: str | None) -> dict[str, str]:
        """shared.env, then the color's file on top (secrets are kept apart)."""
        merged = read_env_file(self.shared)
        if color is not None:
            merged.update(read_env_file(self.per_color[color]))
        return merged


@frozen
class ColorSettings(Frozen):
    """What one color is: how to reach it directly and which HAProxy servers carry it."""

    name: str
    api_url: str
    frontend_url: str | None
    servers: tuple[ServerRef, ...]
    services: tuple[str, ...] = ()  # its Compose services, deployed together


class _Response(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@frozen
class Answer(Frozen):
    """Which color (and version) a response says it came from; None where it does not say."""

    color: str | None
    version: str | None


@frozen
class Topology(Frozen):
    """The two colors, their servers, how a response names its color, and the live-color rule."""

    GROUP: ClassVar[str] = "topology"
    colors: tuple[str, str] = DEFAULT_COLORS
    color: Mapping[str, ColorSettings] = field(default_factory=dict)
    color_header: str = setting(
        COLOR_HEADER,
        p.header,
        "response header naming the color (else the JSON body's 'color')",
    )
    version_header: str = setting(
        VERSION_HEADER,
        p.header,
        "response header naming the version (else the JSON body's 'version')",
    )
    server_header: str = setting(
        SERVER_HEADER,
        p.header,
        "response header HAProxy adds naming the server that answered and its address "
        "('BACKEND/SERVER ADDR:PORT'): the gate maps it to the container or task and its image",
    )

    def other(self, color: str) -> str:
        first, second = self.colors
        return second if color == first else first

    def servers(self, color: str) -> tuple[ServerRef, ...]:
        return self.color[color].servers

    @property
    def all_servers(self) -> list[ServerRef]:
        return [ref for cfg in self.color.values() for ref in cfg.servers]

    def color_of(self, ref: ServerRef) -> str | None:
        for name, cfg in self.color.items():
            if ref in cfg.servers:
                return name
        return None

    def live_color(self, states: Mapping[ServerRef, ServerState]) -> str | None:
        """The color all of whose servers take traffic while the other's take none. Empty
        slots (no replica resolved into them) do not count; a color needs one filled server."""
        taking = {
            name: [
                states[ref].takes_traffic
                for ref in cfg.servers
                if ref in states and not states[ref].empty
            ]
            for name, cfg in self.color.items()
        }
        live = [name for name, flags in taking.items() if flags and all(flags)]
        if len(live) != 1:
            return None
        if any(taking[self.other(live[0])]):
            return None
        return live[0]

    def answered_by(self, response: _Response) -> Answer:
        """The color and version a response names: headers first, else its JSON body."""
        color = response.headers.get(self.color_header)
        version = response.headers.get(self.version_header)
        if color is None or version is None:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                color = color or _text_or_none(body.get("color"))
                version = version or _text_or_none(body.get("version"))
        return Answer(color, version)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


@frozen
class Settings(Frozen):
    """The resolved settings of one run; lives in ``config.stash`` (see ``plugin.py``)."""

    run: RunSettings
    topology: Topology
    haproxy: HaproxySettings
    switching: SwitchingSettings
    compose: ComposeSettings
    swarm: SwarmSettings
    checks: ChecksSettings
    bake: BakeSettings
    prometheus: PrometheusSettings
    promotion: PromotionSettings
    notify: NotifySettings
    drill: DrillSettings
    instances: tuple[Instance, ...]  # [instances.NAME], else the one of the top-level settings
    reports: ReportSettings
    state: StateSettings
    env_files: EnvFiles
    metrics: MetricsSettings
    config_file: Path | None
    sources: Mapping[str, str] = field(repr=False)
    extensions: Mapping[type[Any], Any] = field(default_factory=dict, repr=False)

    def load_secrets(self) -> Secrets:
        """What no output may show: ``secrets.env``, the ``notify`` URLs' tokens, and the
        password and query values of every URL setting (each value the ``url`` parsers made,
        in every group: the colors', the instances', other plugins')."""
        urls = secrets_of_urls(self)
        return Secrets.load(self.env_files.secrets, also={**self.notify.secrets, **urls})

    def haproxies(self) -> Haproxies:
        """Every HAProxy instance with its Runtime API client, as one group."""
        return Haproxies(self.instances, missing_ok=self.run.allow_missing_instance)

    @property
    def blames(self) -> bool:
        """A failed check of the target is tried on the other color (``blame``)."""
        blame = self.checks.blame
        return blame == "on" or (blame == "auto" and (self.run.switch or self.run.rollback))

    @property
    def target(self) -> str | None:
        """The one color this run is about, or None for ``--env all|shared``."""
        env = self.run.env
        return env if env in self.topology.colors else None

    @property
    def gating(self) -> bool:
        """A run that may change something: it takes the lock and ends in a decision."""
        return self.run.switch or self.run.rollback or self.run.deploy is not None

    def selected_colors(self) -> tuple[str, ...]:
        env = self.run.env
        if env == "all":
            return self.topology.colors
        if env == "shared":
            return ()
        return (env,)

    def extension(self, group: type[T]) -> T:
        """A settings group added by another plugin (``pytest_bluegreen_settings_groups``)."""
        try:
            value: T = self.extensions[group]
        except KeyError:
            raise LookupError(
                f"settings group {getattr(group, 'GROUP', group.__name__)} is not registered"
            ) from None
        return value
