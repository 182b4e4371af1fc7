"""scripts/setup's PREVIEW_KEY for the local stack's secrets.env
(``pytest_bluegreen.local.secretsfile``): added on a line of its own, never over a key the
file has (as the plugin reads it), in a file readable by its owner only."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.envfile import read_env_file
from pytest_bluegreen.haproxy.preview import preview_key
from pytest_bluegreen.local.secretsfile import ensure_preview_key

ROOT = Path(__file__).resolve().parents[2]


def added(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_bluegreen.local.secretsfile", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_last_line_without_a_newline_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("POSTGRES_PASSWORD=pa55word-of-the-db")  # an editor left no newline
    assert "added a random PREVIEW_KEY" in added(path)
    first, second = path.read_text().splitlines()
    assert first == "POSTGRES_PASSWORD=pa55word-of-the-db"
    assert second.startswith("PREVIEW_KEY=")
    assert preview_key(read_env_file(path)) is not None  # one the checks can send


@pytest.mark.parametrize(
    "line",
    [
        "export PREVIEW_KEY=the-users-own-key-0123456789",
        "PREVIEW_KEY = the-users-own-key-0123456789",
        "  PREVIEW_KEY='the-users-own-key-0123456789'",
        "PREVIEW_KEY=",  # the route turned off: the user's choice
    ],
)
def test_a_key_the_file_has_is_left_alone(tmp_path: Path, line: str) -> None:
    path = tmp_path / "secrets.env"
    path.write_text(f"POSTGRES_PASSWORD=x\n{line}\n")
    before = path.read_bytes()
    assert "left as it is" in added(path)
    assert path.read_bytes() == before


def test_a_new_file_is_its_owners_only_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    ensure_preview_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert "left as it is" in ensure_preview_key(path)
    assert path.read_bytes() == first


def test_a_file_others_can_read_is_said(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("POSTGRES_PASSWORD=x\n")
    path.chmod(0o644)
    said = ensure_preview_key(path)
    assert "mode 0644 lets others read it" in said
    assert read_env_file(path)["PREVIEW_KEY"] not in said


def test_a_file_that_cannot_take_it_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "secrets.env"
    done = subprocess.run(
        [sys.executable, "-m", "pytest_bluegreen.local.secretsfile", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("could not add a PREVIEW_KEY"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_setup_adds_the_key_this_way() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    assert "python -m pytest_bluegreen.local.secretsfile config/deploy/secrets.env" in setup
    assert ">>config/deploy/secrets.env" not in setup
