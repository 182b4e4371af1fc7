"""Deploy one color of the Compose stack at a tag (python-on-whales over the real Docker CLI).

Steps: check the engine and Compose v2 answer, check the image is there, optionally back up
PostgreSQL (``pg_dump`` into ``reports/backups/``), ``compose up -d --wait`` the color's services
at the tag (the tag goes in through ``<COLOR>_TAG`` in an env file that also remembers the other
color's tag), and wait until they are healthy, with a deadline. Every failure is a DeployError
with one clear first line; nothing is half done that was not already running.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, cast

from python_on_whales import DockerClient, DockerException

from .settings import Settings

__all__ = ["ComposeDeployer", "DeployError", "DeployResult", "tag_variable"]

PullPolicy = Literal["always", "missing", "never"]
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class DeployError(Exception):
    """A deploy step failed; the message's first line says which and why."""


@dataclass
class DeployResult:
    color: str
    tag: str
    services: list[str]
    seconds: float = 0.0
    backup: Path | None = None
    previous_tag: str | None = None
    notes: list[str] = field(default_factory=list)


def tag_variable(color: str) -> str:
    return f"{color.upper().replace('-', '_')}_TAG"


def _first_line(exc: DockerException) -> str:
    text = (exc.stderr or exc.stdout or str(exc)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {exc.return_code}"


class ComposeDeployer:
    def __init__(
        self,
        settings: Settings,
        progress: Callable[[str], None] = lambda line: None,
        client: DockerClient | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.tags_file = settings.state_file.with_name("compose-tags.env")
        if not self.tags_file.exists():  # compose refuses a missing --env-file
            self._write_tags({})
        self.client = client or DockerClient(
            compose_files=[settings.compose_file],
            compose_project_name=settings.compose_project,
            compose_env_files=[self.tags_file],
        )

    # -- checks ------------------------------------------------------------------------------
    def check_engine(self) -> None:
        try:
            self.client.system.info()
        except DockerException as exc:
            raise DeployError(f"Docker engine not reachable: {_first_line(exc)}") from None
        try:
            version = self.client.compose.version()
        except DockerException as exc:
            raise DeployError(
                f"Docker Compose v2 is missing ('docker compose' failed: {_first_line(exc)}); "
                "run scripts/install-docker"
            ) from None
        if "v2." not in version and " 2." not in version:
            raise DeployError(f"Docker Compose v2 is needed, found: {version.strip()}")
        if not self.settings.compose_file.is_file():
            raise DeployError(f"compose file {self.settings.compose_file} does not exist")

    def image(self, tag: str) -> str:
        return f"{self.settings.image_repository}:{tag}"

    def check_image(self, tag: str) -> None:
        if not _TAG.match(tag):
            raise DeployError(f"{tag!r} is not a valid image tag")
        name = self.image(tag)
        if self.settings.pull == "never" and not self.client.image.exists(name):
            raise DeployError(
                f"image {name} is not present (pull policy 'never'); build it with "
                f'scripts/build-images {tag}, or set pull = "missing" to pull it'
            )

    # -- tags file ---------------------------------------------------------------------------
    def read_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        if self.tags_file.is_file():
            for line in self.tags_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    tags[key.strip()] = value.strip()
        return tags

    def _write_tags(self, tags: dict[str, str]) -> None:
        self.tags_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tags_file.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(tags.items())))
        tmp.replace(self.tags_file)

    def deployed_tag(self, color: str) -> str | None:
        return self.read_tags().get(tag_variable(color))

    # -- steps -------------------------------------------------------------------------------
    def backup(self, color: str, tag: str) -> Path | None:
        """``pg_dump`` of the shared database, or None when PostgreSQL is not running yet."""
        s = self.settings
        try:
            running = [c for c in self.client.compose.ps([s.postgres_service]) if c.state.running]
        except DockerException as exc:
            raise DeployError(
                f"backup: cannot list {s.postgres_service}: {_first_line(exc)}"
            ) from None
        if not running:
            return None
        self.progress(f"backing up PostgreSQL ({s.postgres_service}) before deploying {color}")
        try:
            dump = self.client.compose.execute(
                s.postgres_service,
                ["pg_dump", "-U", s.postgres_user, "--no-owner", s.postgres_db],
                tty=False,
            )
        except DockerException as exc:
            raise DeployError(f"backup failed (pg_dump): {_first_line(exc)}") from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        s.backup_dir.mkdir(parents=True, exist_ok=True)
        path = s.backup_dir / f"{stamp}-{color}-{tag}.sql"
        path.write_text(dump or "")
        return path

    def deploy(self, color: str, tag: str, *, backup: bool = True) -> DeployResult:
        services = list(self.settings.color[color].services)
        result = DeployResult(color, tag, services)
        start = time.monotonic()
        self.check_engine()
        self.check_image(tag)
        if backup:
            result.backup = self.backup(color, tag)
            if result.backup is None:
                result.notes.append("backup skipped: PostgreSQL is not running yet")
        tags = self.read_tags()
        previous = dict(tags)
        result.previous_tag = previous.get(tag_variable(color))
        tags[tag_variable(color)] = tag
        self._write_tags(tags)
        timeout = self.settings.deploy_timeout
        self.progress(
            f"deploying {color} {tag}: compose up {' '.join(services)} "
            f"(waiting up to {timeout:g}s for healthy)"
        )
        try:
            self.client.compose.up(
                services,
                detach=True,
                wait=True,
                wait_timeout=max(1, round(timeout)),
                pull=cast(PullPolicy, self.settings.pull),
                quiet=True,
            )
        except DockerException as exc:
            self._write_tags(previous)
            unhealthy = self.unhealthy(services)
            detail = f"; not healthy: {', '.join(unhealthy)}" if unhealthy else ""
            raise DeployError(
                f"deploy of {color} {tag} failed: {_first_line(exc)}{detail}\n"
                + self.logs_tail(services)
            ) from None
        # Compose's --wait is not the last word (seen returning while a container was still
        # "starting"): every container must report healthy before the deadline
        deadline = start + timeout
        while unhealthy := self.unhealthy(services):
            if time.monotonic() >= deadline:
                self._write_tags(previous)
                raise DeployError(
                    f"deploy of {color} {tag} failed: not healthy within {timeout:g}s: "
                    f"{', '.join(unhealthy)}\n" + self.logs_tail(services)
                )
            time.sleep(0.2)
        result.seconds = time.monotonic() - start
        self.progress(f"{color} {tag} is healthy after {result.seconds:.1f}s")
        return result

    def unhealthy(self, services: list[str]) -> list[str]:
        try:
            containers = self.client.compose.ps(services, all=True)
        except DockerException:
            return []
        out = []
        for c in containers:
            health = c.state.health.status if c.state.health else None
            if not c.state.running or health not in (None, "healthy"):
                out.append(f"{c.name} ({health or c.state.status})")
        return out

    def logs_tail(self, services: list[str], lines: int = 20) -> str:
        try:
            text = self.client.compose.logs(services, tail=str(lines), no_log_prefix=False)
        except DockerException as exc:
            return f"(no logs: {_first_line(exc)})"
        return str(text or "").rstrip()

    def teardown(self, color: str) -> None:
        services = list(self.settings.color[color].services)
        self.progress(f"tearing down {color}: {' '.join(services)}")
        try:
            self.client.compose.rm(services, stop=True)
        except DockerException as exc:
            raise DeployError(f"teardown of {color} failed: {_first_line(exc)}") from None
