"""The colors' builds as real containers: a small Compose project of its own (one service per
color, running a real image of ours at the color's tag, asleep, with a health check that
passes), deployed, read and torn down by the plugin's own Compose engine. The colors' HTTP
answers still come from the loopback backends of ``tests/support/stack.py``; these containers
are what the engine says a color runs (``image_of``) and what it stops.

Uses the Docker engine: run the tests that use it under the shared Docker lock
(``flock /tmp/bluegreen-docker.lock ...``). The project's name is unique; only its own
containers are touched, and removed at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_bluegreen.engines import engine_for
from pytest_bluegreen.settings import resolve

IMAGE = "bluegreen/jarvis"
COMPOSE = """\
services:
{services}
"""
SERVICE = """\
  {color}-backend:
    image: ${{BLUEGREEN_IMAGE:-{image}}}:${{{variable}:-v1.0.0}}
    entrypoint: ["sleep", "3600"]
    network_mode: none
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "true"]
      interval: 60s
"""


@dataclass
class ColorImages:
    folder: Path
    project: str

    @property
    def compose_file(self) -> Path:
        return self.folder / "compose.yaml"

    def settings(self) -> dict[str, Any]:
        """Top-level settings for the stack's settings file."""
        return {
            "compose_file": str(self.compose_file),
            "compose_project": self.project,
            "image_repository": IMAGE,
            "pull": "never",
            "deploy_timeout": 60,
        }

    @staticmethod
    def color_extra() -> dict[str, dict[str, Any]]:
        return {c: {"services": [f"{c}-backend"]} for c in ("blue", "green")}

    def client(self) -> Any:
        import docker  # noqa: PLC0415

        return docker.from_env()

    def image_id(self, tag: str) -> str:
        client = self.client()
        try:
            return str(client.images.get(f"{IMAGE}:{tag}").id)
        finally:
            client.close()

    def running(self, color: str) -> list[str]:
        """The image ids of the color's running containers."""
        client = self.client()
        try:
            found = client.containers.list(
                filters={
                    "label": [
                        f"com.docker.compose.project={self.project}",
                        f"com.docker.compose.service={color}-backend",
                    ]
                }
            )
            return [str(c.attrs["Image"]) for c in found if c.status == "running"]
        finally:
            client.close()

    def deploy(self, settings_dir: Path, color: str, tag: str) -> None:
        """The color at ``tag`` through the plugin's Compose engine (the tags file too)."""
        settings = resolve({}, {}, {}, settings_dir)
        engine_for(settings, lambda line: None).deploy(color, tag, backup=False)

    def close(self) -> None:
        from python_on_whales import DockerClient  # noqa: PLC0415

        DockerClient(
            compose_files=[self.compose_file], compose_project_name=self.project
        ).compose.down(timeout=1)


@contextmanager
def color_images(folder: Path) -> Iterator[ColorImages]:
    """Take the ``docker_engine`` fixture (tests/conftest.py) before this."""
    folder.mkdir(parents=True, exist_ok=True)
    images = ColorImages(folder, f"bgtest{uuid.uuid4().hex[:10]}")
    images.compose_file.write_text(
        COMPOSE.format(
            services="".join(
                SERVICE.format(color=c, image=IMAGE, variable=f"{c.upper()}_TAG")
                for c in ("blue", "green")
            )
        )
    )
    try:
        yield images
    finally:
        images.close()
