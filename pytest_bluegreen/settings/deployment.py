"""The settings of the deployment the gate changes: where HAProxy's Runtime API is and how
traffic moves (``haproxy``, ``switching``), what runs the colors (``compose``, ``swarm``,
``env_files``), a promotion switched later (``promotion``) and what the gate keeps between
runs (``state``: the history, the journal, the locks). :class:`.model.Settings` holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.frozen import Frozen, frozen
from pytest_bluegreen.haproxy.address import RuntimeApiAddress, TlsFiles
from pytest_bluegreen.haproxy.runtime import RuntimeApi

from . import parsers as p
from .options import setting

__all__ = [
    "ComposeSettings",
    "DeployEngineName",
    "EnvFiles",
    "HaproxySettings",
    "OnFailedGate",
    "PromotionSettings",
    "PullPolicy",
    "StateSettings",
    "SwarmSettings",
    "SwitchingSettings",
]

OnFailedGate = Literal["keep", "teardown", "restore"]
PullPolicy = Literal["missing", "never", "always"]
DeployEngineName = Literal["compose", "swarm"]


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
    preview_url: str | None = setting(
        None,
        p.optional(p.url),
        "the public URL the preview_http fixture sends a color's checks through, by HAProxy's "
        "preview route (PREVIEW_KEY in secrets.env; haproxy.cfg: BG_PREVIEW_KEY); "
        "unset: routed_api_url",
    )
    preview_ca: Path | None = setting(
        None,
        p.optional(p.path),
        "the CA an https:// preview_url is verified against (unset: the system's)",
        path=True,
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
        "seconds to wait for the old color's sessions to end (then they are closed: drain_close)",
        cli="--drain-timeout",
    )
    drain_close: bool = setting(
        True,
        p.boolean,
        "when the drain ends (drain_timeout, or a signal), close the old color's sessions still "
        "open (long-lived streams, WebSockets) so their clients reconnect to the new color; "
        "false: they finish on their own",
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
