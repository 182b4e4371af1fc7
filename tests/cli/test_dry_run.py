"""``--dry-run`` changes nothing, on every path of every ``bluegreen`` command that acts, against
a real HAProxy: its server states, the server-state file, the history, the journal, the lock
folder, the warm-window and pending-promotion records and the tags file are the same after as
before, and the output says what would have been done."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_bluegreen.engines.compose import TagsFile, tag_variable
from pytest_bluegreen.record import history
from pytest_bluegreen.settings import resolve
from tests.support.cli import BLUEGREEN, cut_off_switch
from tests.support.gate import deployment_folder
from tests.support.stack import Stack

DRILL = '[drill]\n"v1.2.0-broken" = "failed"\n'


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def deploy(tmp_path: Path, stack: Stack) -> Path:
    return deployment_folder(tmp_path / "deploy", stack, DRILL)


def snapshot(stack: Stack, deploy: Path) -> dict[str, object]:
    """Everything a command may change, as it is now."""
    files: dict[str, str] = {}
    for folder in (stack.workdir, deploy / ".bluegreen"):
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if path.is_file() and path.suffix != ".log" and path.name != "admin.sock":
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    states = {
        (s.backend, s.server): (s.uweight, s.admin.value)
        for s in stack.api().servers_state()
        if s.backend in {"api_backend", "frontend_backend"}
    }
    return {"haproxy": states, "files": files}


def blue_live(stack: Stack, deploy: Path) -> None:
    """As the stack starts: blue live, nothing pending, nothing warm."""


def blue_live_at_a_tag(stack: Stack, deploy: Path) -> None:
    """Blue live at v1.0.0, green at v0.9.0, as the tags file says (drill --power deploys the
    live color's tag to the idle one)."""
    tags = TagsFile(resolve({}, {}, {}, deploy).state.tags_file)
    tags.write({tag_variable("blue"): "v1.0.0", tag_variable("green"): "v0.9.0"})


def green_live_and_blue_warm(stack: Stack, deploy: Path) -> None:
    """The forced switch keeps blue warm (scale_down_delay); no container of blue here, so
    what it runs is not recorded: a rollback runs the checks (tests/gate/test_aftercare.py)."""
    done = run(deploy, "switch-to", "green", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert history.load_warm(stack.state_file) is not None


def pending(age: float) -> Callable[[Stack, Path], None]:
    def make(stack: Stack, deploy: Path) -> None:
        verified = time.time() - age
        record = history.PendingPromotion(
            target="green",
            source="blue",
            tag="v1.1.0",
            image=None,
            checks_passed=2,
            verified_at=verified,
            created_at=verified,
        )
        history.save_record(stack.state_file, history.PENDING, record)

    return make


def switch_cut_off(stack: Stack, deploy: Path) -> None:
    cut_off_switch(stack)


def left_out(stack: Stack, deploy: Path) -> None:
    """An instance a switch left out, recorded to be brought in line when it answers."""
    record = history.Reconcile(("lb-2",), "blue", time.time())
    history.save_record(stack.state_file, history.RECONCILE, record)


@dataclass(frozen=True)
class Case:
    given: Callable[[Stack, Path], None]
    args: tuple[str, ...]
    code: int
    said: str  # the output says what would have been done


DEPLOY_GREEN = ("deploy", "--target-color", "green", "--deployment-tag", "v9.9.9")
CASES = {
    "switch-to": Case(blue_live, ("switch-to", "green"), 0, "dry run: would switch"),
    "switch-to-force": Case(
        blue_live, ("switch-to", "green", "--force"), 0, "dry run: would switch"
    ),
    "switch-to-live": Case(blue_live, ("switch-to", "blue"), 0, "nothing to switch"),
    "switch-to-live-force": Case(
        blue_live, ("switch-to", "blue", "--force"), 0, "nothing to switch"
    ),
    "rollback": Case(blue_live, ("rollback",), 0, "dry run: would roll back"),
    "rollback-force": Case(blue_live, ("rollback", "--force"), 0, "dry run: would roll back"),
    "rollback-warm": Case(
        green_live_and_blue_warm, ("rollback",), 0, "inside blue's warm window, but what blue ran"
    ),
    "rollback-warm-force": Case(
        green_live_and_blue_warm, ("rollback", "--force"), 0, "dry run: would roll back"
    ),
    "rollback-warm-check": Case(
        green_live_and_blue_warm, ("rollback", "--check"), 0, "dry run: would roll back"
    ),
    "promote": Case(pending(10), ("promote",), 0, "dry run: would switch"),
    "promote-stale": Case(pending(7200), ("promote",), 0, "dry run: would switch"),
    "promote-expired": Case(pending(90000), ("promote",), 7, "dry run: would refuse: "),
    "promote-nothing": Case(blue_live, ("promote",), 7, "no pending promotion"),
    "abort": Case(pending(10), ("abort",), 0, "dry run: would discard the pending promotion"),
    "recover-cut-off": Case(switch_cut_off, ("recover",), 0, "dry run: would restore"),
    "recover-to": Case(switch_cut_off, ("recover", "--to", "green"), 0, "would make green live"),
    "recover-nothing": Case(blue_live, ("recover",), 0, "nothing to recover"),
    "recover-reconcile": Case(
        left_out, ("recover",), 0, "dry run: would bring instance(s) lb-2 in line"
    ),
    # a dry run answers as the real run would: refused while a switch waits for recover
    "switch-to-cut-off": Case(switch_cut_off, ("switch-to", "green"), 7, "an unfinished switch"),
    "switch-to-force-cut-off": Case(
        switch_cut_off, ("switch-to", "green", "--force"), 7, "an unfinished switch"
    ),
    "deploy": Case(blue_live, DEPLOY_GREEN, 0, "dry run: would deploy green at v9.9.9"),
    "deploy-switch": Case(
        blue_live, (*DEPLOY_GREEN, "--auto-switch"), 0, "then switch to green if they pass"
    ),
    "deploy-forced": Case(
        blue_live, (*DEPLOY_GREEN, "--skip-tests", "--auto-switch"), 0, "(forced: no checks)"
    ),
    "deploy-later": Case(
        blue_live, (*DEPLOY_GREEN, "--promote-later"), 0, "record a pending promotion"
    ),
    "deploy-live": Case(
        blue_live,
        ("deploy", "--target-color", "blue", "--deployment-tag", "v9.9.9"),
        7,
        "dry run: would refuse: refused: blue takes traffic",
    ),
    "deploy-rollback": Case(blue_live, ("deploy", "--rollback"), 0, "dry run: would roll back"),
    "drill": Case(blue_live, ("drill",), 0, "v1.2.0-broken: expected failed"),
    "drill-power": Case(
        blue_live_at_a_tag,
        ("drill", "--power"),
        0,
        "would measure blue's median latency on /api/items, then deploy v1.0.0 to green",
    ),
    "drill-power-no-tag": Case(
        blue_live, ("drill", "--power"), 4, "blue's deployed tag is not known"
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_dry_run_changes_nothing(deploy: Path, stack: Stack, case: Case) -> None:
    case.given(stack, deploy)
    before = snapshot(stack, deploy)
    result = run(deploy, *case.args, "--dry-run")
    out = result.stdout + result.stderr
    assert result.returncode == case.code, out
    assert case.said in out, out
    assert snapshot(stack, deploy) == before, out
    assert "Traceback" not in out
