"""Settings for one deployment, resolved once: CLI > environment variable > ini > file > default.

The file is ``bluegreen.toml`` (top-level keys) or the ``[tool.bluegreen]`` table of
``pyproject.toml``, looked up in the rootdir unless a path is given. Per-color values live in
``[colors.<name>]`` tables; there are exactly two colors. Every value remembers where it came
from, and :func:`describe` shows that in pytest's report header.

Nothing here does I/O beyond reading the settings and env files.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .haproxy import RuntimeApiAddress, ServerRef
from .thresholds import Threshold, ThresholdError
from .thresholds import parse_table as parse_thresholds

__all__ = [
    "ColorSettings",
    "EnvFiles",
    "Settings",
    "SettingsError",
    "describe",
    "resolve",
]

ENV_PREFIX = "BLUEGREEN_"
# k6-style limits per endpoint for the perf checks; a [thresholds] table replaces them
DEFAULT_THRESHOLDS: Mapping[str, list[str]] = {
    "/health": ["p(95)<300", "rate<0.01"],
    "/version": ["p(95)<300", "rate<0.01"],
}
DEFAULT_COLORS = ("blue", "green")
SELECTIONS_EXTRA = ("all", "shared")
_COLOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class SettingsError(ValueError):
    """A setting is missing or malformed; one line naming the value and its source."""


@dataclass(frozen=True)
class ColorSettings:
    """What one color is: how to reach it directly and which HAProxy servers carry it."""

    name: str
    api_url: str
    frontend_url: str | None
    servers: tuple[ServerRef, ...]
    services: tuple[str, ...] = ()  # its Compose services, deployed together


@dataclass(frozen=True)
class EnvFiles:
    """The seed's env files: ``shared.env``, ``<color>.env`` and ``secrets.env``."""

    directory: Path
    shared: Path
    secrets: Path
    per_color: Mapping[str, Path]

    def variables(self, color: str | None) -> dict[str, str]:
        """shared.env, then the color's file on top (secrets are kept apart)."""
        merged = _read_env(self.shared)
        if color is not None:
            merged.update(_read_env(self.per_color[color]))
        return merged

    def secrets_values(self) -> dict[str, str]:
        return _read_env(self.secrets)


def _read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run; lives in ``config.stash[settings_key]``."""

    colors: tuple[str, str]
    color: Mapping[str, ColorSettings]
    env: str
    switch: bool
    rollback: bool
    dry_run: bool
    runtime_api: RuntimeApiAddress
    runtime_api_timeout: float
    routed_api_url: str
    routed_frontend_url: str | None
    verify_path: str
    verify_responses: int
    color_header: str
    version_header: str
    full_weight: int
    drain_timeout: float
    verify_timeout: float
    http_timeout: float
    state_file: Path
    haproxy_state_file: Path | None
    deployment_tag: str | None
    env_files: EnvFiles
    config_file: Path | None
    deploy: str | None
    skip_backup: bool
    force_deploy: bool
    on_failed_gate: str
    compose_file: Path
    compose_project: str
    image_repository: str
    pull: str
    deploy_timeout: float
    backup_dir: Path
    postgres_service: str
    postgres_user: str
    postgres_db: str
    postgres_url: str | None
    redis_url: str | None
    neo4j_url: str | None
    ollama_url: str | None
    ollama_model: str
    ollama_timeout: float
    https_url: str | None
    http_url: str | None
    tls_ca: Path | None
    perf_requests: int
    perf_duration: float
    perf_concurrency: int
    thresholds: Mapping[str, tuple[Threshold, ...]]
    probe_requests: int
    allure_dir: Path | None
    verdict_file: Path
    sources: Mapping[str, str] = field(repr=False)

    @property
    def target(self) -> str | None:
        """The one color this run is about, or None for ``--env all|shared``."""
        return self.env if self.env in self.colors else None

    @property
    def gating(self) -> bool:
        """A run that may change something: it takes the lock and ends in a decision."""
        return self.switch or self.rollback or self.deploy is not None

    def selected_colors(self) -> tuple[str, ...]:
        if self.env == "all":
            return self.colors
        if self.env == "shared":
            return ()
        return (self.env,)

    def other(self, color: str) -> str:
        first, second = self.colors
        return second if color == first else first

    def color_of(self, ref: ServerRef) -> str | None:
        for name, cfg in self.color.items():
            if ref in cfg.servers:
                return name
        return None

    @property
    def lock_file(self) -> Path:
        return self.state_file.with_name(self.state_file.name + ".lock")


# --- the table of scalar settings ---------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("is empty")
    return text


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < number <= 86400:
        raise ValueError(f"expected seconds in (0, 86400], got {value!r}")
    return number


def _positive_int(limit: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number, got a boolean")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not 1 <= number <= limit:
            raise ValueError(f"expected 1..{limit}, got {number}")
        return number

    return parse


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if not 0 <= number <= 10_000_000:
        raise ValueError(f"expected 0..10000000, got {number}")
    return number


def _url(value: Any) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"bad port in {text!r}: {exc}") from None
    return text.rstrip("/")


def _optional_url(value: Any) -> str | None:
    return None if _optional_text(value) is None else _url(value)


def _path_text(value: Any) -> str:
    return _text(value)


def _optional_path_text(value: Any) -> str | None:
    return _optional_text(value)


def _env_choice(value: Any) -> str:
    return _text(value).lower()


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {'|'.join(allowed)}, got {value!r}")
        return text

    return parse


def _header(value: Any) -> str:
    text = _text(value)
    if not re.match(r"^[A-Za-z0-9-]+$", text):
        raise ValueError(f"not an HTTP header name: {text!r}")
    return text


def _path_segment(value: Any) -> str:
    text = _text(value)
    if not text.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {text!r}")
    return text


@dataclass(frozen=True)
class Option:
    """One scalar setting: its parser, default, CLI option and whether env/ini may set it."""

    key: str
    parse: Callable[[Any], Any]
    default: Any
    cli: str | None = None
    env: bool = True
    ini: bool = True
    help: str = ""
    file: bool = True

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def ini_name(self) -> str:
        return "bluegreen_" + self.key


OPTIONS: tuple[Option, ...] = (
    Option("env", _env_choice, "all", "--env", help="blue|green|all|shared: which checks run"),
    Option(
        "switch",
        _bool,
        False,
        "--switch",
        env=False,
        ini=False,
        file=False,
        help="gate: switch HAProxy traffic to the --env color when the session passes",
    ),
    Option(
        "rollback",
        _bool,
        False,
        "--rollback",
        env=False,
        ini=False,
        file=False,
        help="return traffic to the previous color after its checks pass, and verify",
    ),
    Option(
        "dry_run",
        _bool,
        False,
        "--dry-run",
        ini=False,
        help="with --switch/--rollback: print what would be switched and why, change nothing",
    ),
    Option(
        "runtime_api",
        _text,
        "/var/run/haproxy/admin.sock",
        "--runtime-api",
        help="HAProxy Runtime API: a unix socket path or 127.0.0.1:PORT",
    ),
    Option("runtime_api_timeout", _seconds, 2.0, None, help="Runtime API socket timeout (s)"),
    Option(
        "routed_api_url",
        _url,
        "http://127.0.0.1:20010",
        "--routed-url",
        help="the public URL HAProxy routes to the live color (switch verification)",
    ),
    Option(
        "routed_frontend_url",
        _optional_url,
        "http://127.0.0.1:20011",
        None,
        help="the public frontend URL routed to the live color",
    ),
    Option(
        "verify_path",
        _path_segment,
        "/health",
        None,
        help="path requested through the routed URL to verify a switch",
    ),
    Option(
        "verify_responses",
        _positive_int(100),
        3,
        None,
        help="consecutive responses from the new color that verify a switch",
    ),
    Option(
        "color_header",
        _header,
        "X-Bluegreen-Color",
        None,
        help="response header naming the color (else the JSON body's 'color')",
    ),
    Option(
        "version_header",
        _header,
        "X-Bluegreen-Version",
        None,
        help="response header naming the version (else the JSON body's 'version')",
    ),
    Option(
        "full_weight", _positive_int(256), 100, None, help="the HAProxy weight a live server gets"
    ),
    Option(
        "drain_timeout",
        _seconds,
        30.0,
        "--drain-timeout",
        help="seconds to wait for the old color's sessions to end",
    ),
    Option(
        "verify_timeout",
        _seconds,
        10.0,
        "--verify-timeout",
        help="seconds to wait for the routed URL to answer from the new color",
    ),
    Option(
        "http_timeout",
        _seconds,
        5.0,
        "--http-timeout",
        help="timeout (s) of the checks' HTTP requests",
    ),
    Option(
        "state_file",
        _path_text,
        ".bluegreen/state.json",
        "--state-file",
        help="JSON history of switches; its '.lock' twin guards concurrent gates",
    ),
    Option(
        "haproxy_state_file",
        _optional_path_text,
        None,
        None,
        help="HAProxy's server-state-file, rewritten after each switch",
    ),
    Option(
        "deployment_tag",
        _optional_text,
        None,
        "--deployment-tag",
        help="the version being gated, recorded in the history",
    ),
    Option(
        "deploy",
        _optional_text,
        None,
        "--deploy",
        env=False,
        ini=False,
        file=False,
        help="TAG: before the checks, deploy the --env color at TAG (compose up, wait healthy)",
    ),
    Option(
        "skip_backup",
        _bool,
        False,
        "--skip-backup",
        ini=False,
        help="with --deploy: no pg_dump of PostgreSQL into backup_dir first",
    ),
    Option(
        "force_deploy",
        _bool,
        False,
        "--force-deploy",
        env=False,
        ini=False,
        file=False,
        help="with --deploy: allow deploying over the live color",
    ),
    Option(
        "on_failed_gate",
        _choice("keep", "teardown", "restore"),
        "keep",
        None,
        help="after --deploy, when the gate fails: keep the color for debugging, tear it "
        "down, or restore the tag it ran before",
    ),
    Option(
        "compose_file",
        _path_text,
        "docker/docker-compose.blue-green.yml",
        None,
        help="the Compose file of the stack",
    ),
    Option("compose_project", _text, "sutazai", None, help="the Compose project name"),
    Option(
        "image_repository",
        _text,
        "bluegreen/jarvis",
        None,
        help="the colors' image, tagged with the deployment tag",
    ),
    Option(
        "pull",
        _choice("missing", "never", "always"),
        "missing",
        None,
        help="Compose pull policy when deploying (never: the image must be built locally)",
    ),
    Option(
        "deploy_timeout",
        _seconds,
        120.0,
        "--deploy-timeout",
        help="seconds to wait for the deployed services to become healthy",
    ),
    Option("backup_dir", _path_text, "reports/backups", None, help="where pg_dump backups go"),
    Option("postgres_service", _text, "postgres", None, help="Compose service of PostgreSQL"),
    Option("postgres_user", _text, "sutazai", None, help="PostgreSQL user for pg_dump"),
    Option("postgres_db", _text, "sutazai", None, help="PostgreSQL database for pg_dump"),
    Option(
        "postgres_url",
        _optional_text,
        None,
        None,
        help="PostgreSQL for the shared checks, postgresql://USER@HOST:PORT/DB (password "
        "from secrets.env POSTGRES_PASSWORD); unset: those checks skip",
    ),
    Option(
        "redis_url",
        _optional_text,
        None,
        None,
        help="Redis for the shared checks, redis://HOST:PORT/0 (password from secrets.env "
        "REDIS_PASSWORD); unset: those checks skip",
    ),
    Option("neo4j_url", _optional_url, None, None, help="Neo4j HTTP URL; unset: skipped"),
    Option("ollama_url", _optional_url, None, None, help="Ollama URL; unset: skipped"),
    Option("ollama_model", _text, "tinyllama", None, help="the model Ollama must list"),
    Option("ollama_timeout", _seconds, 30.0, None, help="seconds a generate call may take"),
    Option(
        "https_url",
        _optional_url,
        None,
        None,
        help="HAProxy's public HTTPS URL (TLS check); unset: skipped",
    ),
    Option(
        "http_url",
        _optional_url,
        None,
        None,
        help="HAProxy's public HTTP URL, which must redirect to HTTPS; unset: skipped",
    ),
    Option(
        "tls_ca",
        _optional_path_text,
        None,
        None,
        help="CA or certificate file that signs https_url (a self-signed cert works)",
    ),
    Option(
        "perf_requests", _positive_int(1_000_000), 400, None, help="perf: requests per endpoint"
    ),
    Option("perf_duration", _seconds, 10.0, None, help="perf: at most this many seconds each"),
    Option("perf_concurrency", _positive_int(256), 4, None, help="perf: concurrent connections"),
    Option(
        "probe_requests",
        _non_negative_int,
        0,
        "--probe",
        help="N: during a switch, send at most N requests through the routed URL and report "
        "how many failed (0: no probe)",
    ),
    Option(
        "allure_dir",
        _optional_path_text,
        None,
        None,
        help="write Allure results here when --alluredir is not given (e.g. "
        "reports/allure-results)",
    ),
    Option(
        "verdict_file",
        _path_text,
        "reports/verdict.json",
        None,
        help="the gate's machine-readable verdict (decision, reason, colors, tag, counts)",
    ),
    Option(
        "env_dir",
        _path_text,
        "config/deploy",
        None,
        help="folder of shared.env, <color>.env, secrets.env",
    ),
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}
COLOR_KEYS = ("api_url", "frontend_url", "servers", "services")
CONFIG_OPTION = Option(
    "config",
    _path_text,
    None,
    "--bluegreen-config",
    help="settings file (default: bluegreen.toml, else [tool.bluegreen] in pyproject.toml)",
)

_COLOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "blue": {
        "api_url": "http://127.0.0.1:21010",
        "frontend_url": None,
        "servers": ["api_backend/blue-api", "frontend_backend/blue-frontend"],
    },
    "green": {
        "api_url": "http://127.0.0.1:21011",
        "frontend_url": None,
        "servers": ["api_backend/green-api", "frontend_backend/green-frontend"],
    },
}


# --- loading the file ---------------------------------------------------------------------------


def _find_file(
    explicit: str | None, rootdir: Path, source: str = "default"
) -> tuple[Path | None, dict[str, Any]]:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_absolute():
            path = rootdir / path
        if not path.is_file():
            raise SettingsError(
                f"bluegreen: settings file {explicit} does not exist (from {source})"
            )
        data = _load_toml(path)
        if path.name == "pyproject.toml":
            table = data.get("tool", {}).get("bluegreen")
            if not isinstance(table, dict):
                raise SettingsError(f"bluegreen: {path} has no [tool.bluegreen] table")
            return path, table
        return path, data
    candidate = rootdir / "bluegreen.toml"
    if candidate.is_file():
        return candidate, _load_toml(candidate)
    pyproject = rootdir / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("bluegreen")
        if isinstance(table, dict):
            return pyproject, table
    return None, {}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"bluegreen: cannot read {path}: {exc}") from None
    return data


# --- resolution ---------------------------------------------------------------------------------


def resolve(
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    ini: Mapping[str, str],
    rootdir: Path,
) -> Settings:
    """Resolve every setting once. ``cli`` holds only the values given on the command line
    (key -> value, ``None`` meaning not given); ``ini`` the non-empty pytest ini values."""
    config_explicit, config_source = _pick(
        CONFIG_OPTION, cli=cli, environ=environ, ini=ini, data={}
    )
    config_file, data = _find_file(config_explicit, rootdir, config_source)
    file_label = f"file {config_file.name}" if config_file else "file"
    base = config_file.parent if config_file else rootdir

    known = {o.key for o in OPTIONS if o.file} | {"colors", "thresholds"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(
            f"bluegreen: unknown setting {unknown[0]!r} in {config_file} "
            f"(known: {', '.join(sorted(known))})"
        )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = _pick(
            option, cli=cli, environ=environ, ini=ini, data=data, file_label=file_label
        )
        try:
            values[option.key] = option.parse(raw) if raw is not None else None
        except ValueError as exc:
            raise SettingsError(f"bluegreen: {option.key} {exc} (from {source})") from None
        sources[option.key] = source

    colors, color_settings = _resolve_colors(data.get("colors"), environ, file_label, sources)
    if "thresholds" in data:
        raw_thresholds: Any = data["thresholds"]
        sources["thresholds"] = f"{file_label} thresholds"
    else:
        raw_thresholds = DEFAULT_THRESHOLDS
        sources["thresholds"] = "default"
    try:
        thresholds = parse_thresholds(raw_thresholds)
    except ThresholdError as exc:
        raise SettingsError(
            f"bluegreen: thresholds: {exc} (from {sources['thresholds']})"
        ) from None

    env = values["env"]
    allowed = (*colors, *SELECTIONS_EXTRA)
    if env not in allowed:
        raise SettingsError(
            f"bluegreen: --env must be one of {'|'.join(allowed)}, got {env!r} "
            f"(from {sources['env']})"
        )
    try:
        runtime_api = RuntimeApiAddress.parse(values["runtime_api"])
    except ValueError as exc:
        raise SettingsError(
            f"bluegreen: runtime_api: {exc} (from {sources['runtime_api']})"
        ) from None

    if values["switch"] and values["rollback"]:
        raise SettingsError("bluegreen: --switch and --rollback cannot be combined")
    if values["switch"] and env not in colors:
        raise SettingsError(
            f"bluegreen: --switch needs one target color (--env {' or --env '.join(colors)}), "
            f"got --env {env} (from {sources['env']})"
        )
    if values["rollback"] and env == "shared":
        raise SettingsError("bluegreen: --rollback verifies a color; --env shared has none")
    if values["deploy"] is not None:
        if env not in colors:
            raise SettingsError(
                f"bluegreen: --deploy needs one color (--env {' or --env '.join(colors)}), "
                f"got --env {env} (from {sources['env']})"
            )
        if values["rollback"] or values["dry_run"]:
            flag = "--rollback" if values["rollback"] else "--dry-run"
            raise SettingsError(f"bluegreen: --deploy cannot be combined with {flag}")
    elif values["force_deploy"]:
        raise SettingsError("bluegreen: --force-deploy only makes sense with --deploy")
    if values["dry_run"] and not (values["switch"] or values["rollback"]):
        raise SettingsError(
            "bluegreen: --dry-run only makes sense with --switch or --rollback "
            f"(from {sources['dry_run']})"
        )

    def path(key: str) -> Path:
        p = Path(values[key]).expanduser()
        return p if p.is_absolute() else base / p

    env_dir = path("env_dir")
    env_files = EnvFiles(
        directory=env_dir,
        shared=env_dir / "shared.env",
        secrets=env_dir / "secrets.env",
        per_color={c: env_dir / f"{c}.env" for c in colors},
    )
    return Settings(
        colors=colors,
        color=color_settings,
        env=env,
        switch=values["switch"],
        rollback=values["rollback"],
        dry_run=values["dry_run"],
        runtime_api=runtime_api,
        runtime_api_timeout=values["runtime_api_timeout"],
        routed_api_url=values["routed_api_url"],
        routed_frontend_url=values["routed_frontend_url"],
        verify_path=values["verify_path"],
        verify_responses=values["verify_responses"],
        color_header=values["color_header"],
        version_header=values["version_header"],
        full_weight=values["full_weight"],
        drain_timeout=values["drain_timeout"],
        verify_timeout=values["verify_timeout"],
        http_timeout=values["http_timeout"],
        state_file=path("state_file"),
        haproxy_state_file=path("haproxy_state_file") if values["haproxy_state_file"] else None,
        deployment_tag=values["deployment_tag"],
        env_files=env_files,
        config_file=config_file,
        deploy=values["deploy"],
        skip_backup=values["skip_backup"],
        force_deploy=values["force_deploy"],
        on_failed_gate=values["on_failed_gate"],
        compose_file=path("compose_file"),
        compose_project=values["compose_project"],
        image_repository=values["image_repository"],
        pull=values["pull"],
        deploy_timeout=values["deploy_timeout"],
        backup_dir=path("backup_dir"),
        postgres_service=values["postgres_service"],
        postgres_user=values["postgres_user"],
        postgres_db=values["postgres_db"],
        postgres_url=values["postgres_url"],
        redis_url=values["redis_url"],
        neo4j_url=values["neo4j_url"],
        ollama_url=values["ollama_url"],
        ollama_model=values["ollama_model"],
        ollama_timeout=values["ollama_timeout"],
        https_url=values["https_url"],
        http_url=values["http_url"],
        tls_ca=path("tls_ca") if values["tls_ca"] else None,
        perf_requests=values["perf_requests"],
        perf_duration=values["perf_duration"],
        perf_concurrency=values["perf_concurrency"],
        thresholds=thresholds,
        probe_requests=values["probe_requests"],
        allure_dir=path("allure_dir") if values["allure_dir"] else None,
        verdict_file=path("verdict_file"),
        sources=sources,
    )


def _pick(
    option: Option,
    *,
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    ini: Mapping[str, str],
    data: Mapping[str, Any],
    file_label: str = "file",
) -> tuple[Any, str]:
    given = cli.get(option.key)
    if option.cli and given is not None:
        return given, f"cli {option.cli}"
    if option.env and environ.get(option.env_name, "") != "":
        return environ[option.env_name], f"env {option.env_name}"
    if option.ini and ini.get(option.ini_name, "") != "":
        return ini[option.ini_name], f"ini {option.ini_name}"
    if option.file and option.key in data:
        return data[option.key], f"{file_label} {option.key}"
    return option.default, "default"


def _resolve_colors(
    table: Any,
    environ: Mapping[str, str],
    file_label: str,
    sources: dict[str, str],
) -> tuple[tuple[str, str], dict[str, ColorSettings]]:
    if table is None:
        names: tuple[str, ...] = DEFAULT_COLORS
        table = {}
        names_source = "default"
    elif not isinstance(table, dict):
        raise SettingsError(f"bluegreen: 'colors' must be a table of two colors ({file_label})")
    else:
        names = tuple(table)
        names_source = f"{file_label} colors"
    if len(names) != 2:
        raise SettingsError(
            f"bluegreen: exactly two colors are needed, got {len(names)}: "
            f"{', '.join(names) or 'none'} ({names_source})"
        )
    for name in names:
        if not _COLOR_NAME.match(name) or name in SELECTIONS_EXTRA:
            raise SettingsError(f"bluegreen: {name!r} is not a usable color name ({names_source})")
    sources["colors"] = names_source

    result: dict[str, ColorSettings] = {}
    all_servers: dict[ServerRef, str] = {}
    for name in names:
        entry = table.get(name, {})
        if not isinstance(entry, dict):
            raise SettingsError(f"bluegreen: colors.{name} must be a table ({file_label})")
        unknown = sorted(set(entry) - set(COLOR_KEYS))
        if unknown:
            raise SettingsError(
                f"bluegreen: unknown setting colors.{name}.{unknown[0]} ({file_label}; "
                f"known: {', '.join(COLOR_KEYS)})"
            )
        picked: dict[str, Any] = {}
        for key in COLOR_KEYS:
            env_name = f"{ENV_PREFIX}{name.upper().replace('-', '_')}_{key.upper()}"
            label = f"colors.{name}.{key}"
            if environ.get(env_name, "") != "":
                raw: Any = environ[env_name]
                if key in {"servers", "services"}:
                    raw = [s.strip() for s in raw.split(",") if s.strip()]
                sources[label] = f"env {env_name}"
            elif key in entry:
                raw = entry[key]
                sources[label] = f"{file_label} {label}"
            elif key == "services":
                raw = [f"{name}-backend", f"{name}-frontend", f"{name}-agents"]
                sources[label] = "default"
            elif name in _COLOR_DEFAULTS:
                raw = _COLOR_DEFAULTS[name][key]
                sources[label] = "default"
            elif key == "frontend_url":
                raw = None
                sources[label] = "default"
            else:
                raise SettingsError(f"bluegreen: {label} is required ({file_label})")
            picked[key] = raw
        api_url = _color_value(name, "api_url", picked, _url, sources)
        frontend_url = _color_value(name, "frontend_url", picked, _optional_url, sources)
        servers = _color_value(name, "servers", picked, _servers, sources)
        services = _color_value(name, "services", picked, _services, sources)
        for ref in servers:
            if ref in all_servers:
                first = all_servers[ref]
                where = f"twice for {name}" if first == name else f"for both {first} and {name}"
                raise SettingsError(
                    f"bluegreen: server {ref} is listed {where} "
                    f"(from {sources[f'colors.{first}.servers']}"
                    + ("" if first == name else f" and {sources[f'colors.{name}.servers']}")
                    + ")"
                )
            all_servers[ref] = name
        result[name] = ColorSettings(name, api_url, frontend_url, servers, services)
    return (names[0], names[1]), result


def _color_value(
    name: str,
    key: str,
    picked: Mapping[str, Any],
    parse: Callable[[Any], Any],
    sources: Mapping[str, str],
) -> Any:
    label = f"colors.{name}.{key}"
    try:
        return parse(picked[key])
    except ValueError as exc:
        raise SettingsError(f"bluegreen: {label}: {exc} (from {sources[label]})") from None


def _servers(value: Any) -> tuple[ServerRef, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("servers must be a non-empty list of 'backend/server'")
    return tuple(ServerRef.parse(str(s)) for s in value)


def _services(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("services must be a non-empty list of Compose service names")
    names = tuple(str(v) for v in value)
    for service in names:
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", service):
            raise ValueError(f"{service!r} is not a Compose service name")
    return names


def describe(settings: Settings) -> list[str]:
    """Report-header lines: each value and where it came from. No secrets are held here."""
    shown = {
        "env": settings.env,
        "runtime_api": str(settings.runtime_api),
        "routed_api_url": settings.routed_api_url,
        "drain_timeout": settings.drain_timeout,
        "verify_timeout": settings.verify_timeout,
        "http_timeout": settings.http_timeout,
        "state_file": settings.state_file,
        "deployment_tag": settings.deployment_tag,
    }
    lines = [
        "bluegreen: " + ", ".join(f"{k}={v} ({settings.sources[k]})" for k, v in shown.items()),
        "bluegreen colors: "
        + "; ".join(
            f"{c.name} api={c.api_url} servers={','.join(map(str, c.servers))} "
            f"({settings.sources[f'colors.{c.name}.api_url']})"
            for c in settings.color.values()
        ),
    ]
    if settings.gating:
        mode = "rollback" if settings.rollback else "switch" if settings.switch else "deploy only"
        lines.append(f"bluegreen gate: {mode}{' (dry run)' if settings.dry_run else ''}")
    return lines


def environ_snapshot() -> dict[str, str]:
    """The process environment's BLUEGREEN_* variables."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
