"""``faults.json``: a color ``bluegreen drill --power`` may have left a fault on (a SIGKILL of
the drill, the machine dying). The record alone, then every way a switch reaches that color on
a real HAProxy: refused in one line, exit 7, nothing changed; ``status`` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.engines.compose import injected_faults
from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.record import faults, history
from pytest_bluegreen.record.faults import FaultsLeftRefused
from pytest_bluegreen.record.history import FAULTS, PENDING, FaultsLeft, PendingPromotion
from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.gate import deployment_folder
from tests.support.stack import Stack

SINCE = 1_800_000_000.0  # 2027-01-15T08:00:00+00:00
WHAT = "HTTP 500 on 1.00% of /api/* requests"


def test_a_mark_is_read_back_as_written(tmp_path: Path) -> None:
    state_file = tmp_path / "history.json"
    assert history.load_faults(state_file) is None
    since = faults.mark(state_file, "green", "v1.0.0", WHAT, SINCE)
    record = history.load_faults(state_file)
    assert since == SINCE
    assert record == FaultsLeft(
        "green", "v1.0.0", WHAT, SINCE, record.host if record else "", os.getpid()
    )
    later = faults.mark(state_file, "green", "v1.0.0", "+5 ms on every /api/* request(s)", since)
    assert later == SINCE  # the first faulted deploy's time stays
    assert json.loads((tmp_path / FAULTS).read_text())["what"] == "+5 ms on every /api/* request(s)"


def test_the_refusal_is_one_line_naming_the_color_since_when_and_the_fix(tmp_path: Path) -> None:
    state_file = tmp_path / "history.json"
    faults.mark(state_file, "green", "v1.0.0", WHAT, SINCE)
    with pytest.raises(FaultsLeftRefused) as caught:
        faults.require_none(state_file, "green", dry_run=False)
    assert caught.value.exit_code == ExitCode.REFUSED
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "refused: green may still run a fault bluegreen drill --power deployed (since "
        f"2027-01-15T08:00:00+00:00, pid {os.getpid()} on "
    )
    assert f"{WHAT}; {tmp_path / FAULTS}): " in message
    assert message.endswith(
        "deploy green again: bluegreen deploy --target-color green --deployment-tag v1.0.0"
    )
    faults.require_none(state_file, "blue", dry_run=False)  # the other color: no refusal


def test_only_the_drills_own_dry_run_gates_go_on(tmp_path: Path) -> None:
    """The drill's gates are its children's dry runs: the record's pid is their parent's.
    A real switch, and anyone else's dry run, are refused."""
    state_file = tmp_path / "history.json"
    record = FaultsLeft("green", "v1.0.0", WHAT, SINCE, os.uname().nodename, os.getppid())
    history.save_record(state_file, FAULTS, record)
    faults.require_none(state_file, "green", dry_run=True)
    with pytest.raises(FaultsLeftRefused):
        faults.require_none(state_file, "green", dry_run=False)
    history.save_record(state_file, FAULTS, FaultsLeft(**{**record.__dict__, "pid": os.getpid()}))
    with pytest.raises(FaultsLeftRefused):
        faults.require_none(state_file, "green", dry_run=True)
    other_host = FaultsLeft(**{**record.__dict__, "host": "elsewhere.invalid"})
    history.save_record(state_file, FAULTS, other_host)
    with pytest.raises(FaultsLeftRefused):
        faults.require_none(state_file, "green", dry_run=True)


def test_a_deploy_without_a_fault_ends_only_its_own_colors_mark(tmp_path: Path) -> None:
    state_file = tmp_path / "history.json"
    faults.mark(state_file, "green", "v1.0.0", WHAT, SINCE)
    assert faults.end(state_file, "blue") is None
    assert (tmp_path / FAULTS).exists()
    said = faults.end(state_file, "green")
    assert said == "green runs no fault of bluegreen drill --power any more: its mark is removed"
    assert not (tmp_path / FAULTS).exists()
    assert faults.end(state_file, "green") is None


def test_an_unreadable_mark_is_one_line_and_stays(tmp_path: Path) -> None:
    state_file = tmp_path / "history.json"
    (tmp_path / FAULTS).write_text('{"color": "green"}')
    with pytest.raises(history.RecordError) as caught:
        faults.require_none(state_file, "green", dry_run=False)
    message = caught.value.first_line
    assert message == (
        f"state file {tmp_path / FAULTS} is not readable (it has no 'tag'): deploy the idle "
        "color again (bluegreen deploy --target-color COLOR), then remove it"
    )
    said = faults.end(state_file, "green")  # which color it marks is not known: it stays
    assert said == f"warning: {message}"
    assert (tmp_path / FAULTS).exists()


@pytest.mark.parametrize(
    ("environ", "injected"),
    [
        pytest.param({}, {}, id="none-set"),
        pytest.param(
            {
                "GREEN_FAULT_LATENCY_MS": "0",
                "GREEN_FAULT_LATENCY_SHARE": "1",
                "GREEN_FAULT_ERROR_RATE": "0",
            },
            {},
            id="the-drills-way-back",
        ),
        pytest.param(
            {"GREEN_FAULT_ERROR_RATE": "0.0", "GREEN_FAULT_LATENCY_MS": " "}, {}, id="zeros"
        ),
        pytest.param({"GREEN_FAULT_LATENCY_SHARE": "0.1"}, {}, id="a-share-alone"),
        pytest.param({"BLUE_FAULT_ERROR_RATE": "1"}, {}, id="the-other-color"),
        pytest.param(
            {"GREEN_FAULT_ERROR_RATE": "0.01"}, {"GREEN_FAULT_ERROR_RATE": "0.01"}, id="errors"
        ),
        pytest.param(
            {"GREEN_FAULT_LATENCY_MS": "0.4"}, {"GREEN_FAULT_LATENCY_MS": "0.4"}, id="latency"
        ),
        pytest.param(
            {"GREEN_FAULT_LATENCY_MS": "none"},
            {"GREEN_FAULT_LATENCY_MS": "none"},
            id="not-a-number-counts",
        ),
    ],
)
def test_which_environment_injects_a_fault(
    environ: dict[str, str], injected: dict[str, str]
) -> None:
    assert injected_faults("green", environ) == injected


# --- on a real HAProxy: blue live, green marked ----------------------------------------------

# a drill elsewhere (not this test process, the gates' parent: only the drill's own dry runs
# go on)
LEFT = FaultsLeft("green", "v1.0.0", WHAT, SINCE, "drill-host.invalid", 4242)


def bluegreen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], cwd=cwd, env=clean_environ(), capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


def gate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "checks", *args],
        cwd=cwd, env=clean_environ(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def what_changes(stack: Stack) -> tuple[object, ...]:
    """HAProxy's weights, the history, the journal, the record: all a switch would touch."""

    def read(path: Path) -> bytes | None:
        return path.read_bytes() if path.exists() else None

    return (
        stack.live_weights(),
        read(stack.state_file),
        read(stack.journal_file),
        read(stack.state_file.with_name(FAULTS)),
    )


SWITCHES = {
    "gate": lambda cwd: gate(cwd, "--env", "green", "--switch"),
    "gate-dry-run": lambda cwd: gate(cwd, "--env", "green", "--switch", "--dry-run"),
    "switch-to": lambda cwd: bluegreen(cwd, "switch-to", "green"),
    "switch-to-force": lambda cwd: bluegreen(cwd, "switch-to", "green", "--force"),
    "rollback": lambda cwd: bluegreen(cwd, "rollback"),
    "rollback-force": lambda cwd: bluegreen(cwd, "rollback", "--force"),
    "promote": lambda cwd: bluegreen(cwd, "promote"),
}


@pytest.mark.parametrize("way", list(SWITCHES))
def test_a_switch_to_a_marked_color_refuses_and_changes_nothing(
    tmp_path: Path, stack: Stack, way: str
) -> None:
    workdir = deployment_folder(tmp_path / "work", stack)
    history.save_record(stack.state_file, FAULTS, LEFT)
    if way == "promote":
        now = SINCE
        record = PendingPromotion("green", "blue", "v1.0.0", None, 2, now, now)
        history.save_record(stack.state_file, PENDING, record)
    before = what_changes(stack)
    result = SWITCHES[way](workdir)
    out = result.stdout + result.stderr
    assert result.returncode == ExitCode.REFUSED, out
    said = [line for line in out.splitlines() if "may still run a fault" in line]
    assert said, out
    fix = "deploy green again: bluegreen deploy --target-color green --deployment-tag v1.0.0"
    assert all(fix in line for line in said), said  # the one line (pytest's frame around it)
    assert "Traceback" not in out
    after = what_changes(stack)
    parts = ("weights", "history", "journal", "mark")
    for name, old, new in zip(parts, before, after, strict=True):
        assert new == old, (name, str(old)[:300], str(new)[:300])
    assert stack.served_color() == "blue"


def test_status_shows_the_mark_and_checks_without_a_switch_still_run(
    tmp_path: Path, stack: Stack
) -> None:
    workdir = deployment_folder(tmp_path / "work", stack)
    history.save_record(stack.state_file, FAULTS, LEFT)
    shown = bluegreen(workdir, "status")
    [line] = [line for line in shown.stdout.splitlines() if line.startswith("FAULT LEFT: ")]
    assert line.startswith("FAULT LEFT: green may still run a fault bluegreen drill --power")
    assert line.endswith("--target-color green --deployment-tag v1.0.0")
    data = json.loads(bluegreen(workdir, "status", "--json").stdout)
    assert {k: data["faults_left"][k] for k in ("color", "tag", "what", "since")} == {
        "color": "green", "tag": "v1.0.0", "what": WHAT, "since": SINCE,
    }  # fmt: skip
    exported = json.loads(bluegreen(workdir, "export-state").stdout)
    assert exported["status"]["faults_left"] == data["faults_left"]
    checked = gate(workdir, "--env", "green")  # no switch: the checks may look at it
    assert checked.returncode == 0, checked.stdout + checked.stderr
