"""scripts/build-images (run by every scripts/setup) builds what changed and nothing else: a
second run builds nothing, a change to docker/jarvis builds the app's images again and not the
shared services'. On a copy of the checkout's build sources, with the app's images under a
repository of the test's own (``JARVIS_IMAGE``): the images the stack uses are never replaced.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import ROOT

# the images built beside the app's, each from its own folder of docker/
SHARED = (
    "bluegreen/postgres:15",
    "bluegreen/redis:7",
    "bluegreen/standins:latest",
    "bluegreen/haproxy:2.6",
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What scripts/build-images reads: scripts/ and docker/, copied."""
    copy = tmp_path / "checkout"
    for folder in ("scripts", "docker"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture
def repository() -> Iterator[str]:
    """The app's image repository of this test; its images are removed afterwards."""
    name = f"bgtest-{uuid.uuid4().hex[:10]}/jarvis"
    yield name
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{name}:v1.0.0"], capture_output=True, check=False
    )


def build(checkout: Path, repository: str) -> tuple[int, int, str]:
    """scripts/build-images v1.0.0: (built, unchanged, its output)."""
    done = subprocess.run(
        [str(checkout / "scripts" / "build-images"), "v1.0.0"],
        env={**os.environ, "JARVIS_IMAGE": repository},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    found = re.search(r"\[images\] done in [\d.]+ s: (\d+) built, (\d+) unchanged", said)
    assert found, said
    return int(found[1]), int(found[2]), said


def image_id(image: str) -> str:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.usefixtures("docker_engine")
def test_only_what_changed_is_built_again(checkout: Path, repository: str) -> None:
    app = f"{repository}:v1.0.0"
    # the stack's own image, which the first build under the test's repository is identical
    # to (the same id): replacing the test's image must not remove it
    stacks = image_id("bluegreen/jarvis:v1.0.0")
    assert stacks, "bluegreen/jarvis:v1.0.0 is missing: run scripts/setup"
    built, unchanged, said = build(checkout, repository)
    assert (built, unchanged) == (1, 4), said  # the app's image is new under this repository
    assert f"[images] {app} built in" in said, said
    for image in SHARED:
        assert f"[images] {image} unchanged" in said, said

    assert build(checkout, repository)[:2] == (0, 5)  # a second run: nothing

    (checkout / "docker" / "jarvis" / "CHANGED").write_text("a change to the app's sources\n")
    built, unchanged, said = build(checkout, repository)
    assert (built, unchanged) == (1, 4), said
    assert f"[images] building {app} from docker/jarvis" in said, said
    assert image_id("bluegreen/jarvis:v1.0.0") == stacks, "the stack's own image was removed"
    for image in SHARED:
        assert f"[images] {image} unchanged" in said, said
