"""The ``bluegreen`` command against a real HAProxy in front of two real backends."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef
from pytest_bluegreen.haproxy.lock import lock_for
from pytest_bluegreen.haproxy.runtime import supported_version
from pytest_bluegreen.record.history import (
    FAULTS,
    PENDING,
    RECONCILE,
    FaultsLeft,
    HistoryEntry,
    Outcome,
    PendingPromotion,
    Reconcile,
    append,
    save_record,
)
from pytest_bluegreen.settings import StateSettings
from pytest_bluegreen.switch.journal import read_journal
from tests.support.cli import BLUEGREEN, cut_off_switch
from tests.support.faults import STEP_HOOK
from tests.support.gate import deployment_folder
from tests.support.stack import ROOT, Stack, wait_for


def make_workdir(folder: Path, stack: Stack, extra: str = "") -> Path:
    """A deployment's folder: bluegreen.toml for ``stack`` (and ``extra``), checks/, env/."""
    deployment_folder(folder, stack, extra, env_dir="env")
    env = folder / "env"
    env.mkdir()
    (env / "shared.env").write_text("DB_HOST=db\nDB_URL=postgresql://app:s3cr3t-value@db/app\n")
    (env / "secrets.env").write_text("POSTGRES_PASSWORD=s3cr3t-value\n")
    return folder


@pytest.fixture
def workdir(tmp_path: Path, stack: Stack) -> Path:
    return make_workdir(tmp_path, stack)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def run_unread(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``bluegreen ARGS | head -0``: stdout a pipe whose reader is gone before the first line."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [*BLUEGREEN, *args],
            cwd=cwd,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def history(stack: Stack) -> list[dict[str, object]]:
    if not stack.state_file.exists():
        return []
    entries: list[dict[str, object]] = json.loads(stack.state_file.read_text())["history"]
    return entries


def test_status_shows_live_color_and_servers(workdir: Path, stack: Stack) -> None:
    result = run(workdir, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["live"] == "blue"
    assert data["colors"]["green"]["role"] == "idle"
    servers = {s["server"]: s for s in data["colors"]["green"]["servers"]}
    assert servers["api_backend/green-api"]["weight"] == 0
    assert servers["api_backend/green-api"]["health"] == "UP"
    text = run(workdir, "status")
    assert text.returncode == 0
    assert "live color: blue" in text.stdout
    assert "\x1b[" not in text.stdout  # no colors without a terminal
    assert "last switch: none recorded" in text.stdout


def test_a_closed_pipe_is_quiet_and_cuts_nothing_short(workdir: Path, stack: Stack) -> None:
    status = run_unread(workdir, "status")
    assert (status.returncode, status.stderr) == (0, "")
    exported = run_unread(workdir, "export-state")
    assert (exported.returncode, exported.stderr) == (0, "")
    # the gate in the pytest child: it runs to its end, the switch with it
    checked = run_unread(workdir, "switch-to", "green")
    assert (checked.returncode, checked.stderr) == (0, "")
    assert stack.served_color() == "green"
    # the forced switch in this process, its progress lines unread
    forced = run_unread(workdir, "switch-to", "blue", "--force")
    assert (forced.returncode, forced.stderr) == (0, "")
    assert stack.served_color() == "blue"
    assert [e["outcome"] for e in history(stack)] == ["switched", "switched"]
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert not journal.open


WAIT_FOR_THE_READER = """
import pathlib, time

def pytest_runtest_setup(item):
    gone = pathlib.Path(__file__).with_name("reader-gone")
    deadline = time.monotonic() + 60
    while not gone.exists():
        assert time.monotonic() < deadline, "the reader never went"
        time.sleep(0.01)
"""


def test_a_reader_gone_during_the_checks_cuts_nothing_short(workdir: Path, stack: Stack) -> None:
    # `bluegreen switch-to green | head -3`: the reader goes while the pytest child runs
    (workdir / "checks" / "conftest.py").write_text(WAIT_FOR_THE_READER)
    gate = subprocess.Popen(
        [*BLUEGREEN, "switch-to", "green"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert gate.stdout is not None
    lines = [gate.stdout.readline() for _ in range(3)]
    assert "test session starts" in lines[1], lines
    gate.stdout.close()
    (workdir / "checks" / "reader-gone").touch()
    _, stderr = gate.communicate(timeout=120)
    assert (gate.returncode, stderr) == (0, "")
    assert stack.served_color() == "green"
    assert [e["outcome"] for e in history(stack)] == ["switched"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_bluegreen_reaches_the_gate_of_its_pytest_child(
    workdir: Path, stack: Stack, signum: int
) -> None:
    """Ctrl-C or SIGTERM to ``bluegreen switch-to`` while its child's switch is past promote:
    the child's gate gets the signal, defers it and reverts (exit 8); it is never killed
    halfway (which would leave green promoted and the journal open)."""
    (workdir / "checks" / "conftest.py").write_text(STEP_HOOK)
    gate = subprocess.Popen(
        [*BLUEGREEN, "switch-to", "green"],
        cwd=workdir,
        env={
            **os.environ,
            "FAULT_STEP": "drain",
            "FAULT": "",
            "FAULT_DIR": str(workdir),
            "FAULT_NOTE_SIGNALS": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: (workdir / "at-step").exists() or gate.poll() is not None,
        60,
        "the child's switch to reach drain",
        interval=0.005,
    )
    assert gate.poll() is None, gate.communicate()[0]
    gate.send_signal(signum)  # to bluegreen itself, as kill(1) or a terminal's Ctrl-C does
    # the step goes on only once the child's gate has the signal (bluegreen passes it on): on a
    # loaded machine "go" could otherwise come first and the switch finish before it arrives
    wait_for(
        lambda: (workdir / "signalled").exists() or gate.poll() is not None,
        60,
        "the signal to reach the child's gate",
        interval=0.005,
    )
    (workdir / "go").touch()
    out, _ = gate.communicate(timeout=120)
    assert gate.returncode == 8, out
    assert f"interrupted by {signal.Signals(signum).name}" in out
    assert [e["outcome"] for e in history(stack)] == ["reverted"]
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert not entry.open
    assert stack.live_weights()["blue-api"] == (100, "ready")
    assert stack.live_weights()["green-api"] == (0, "ready")
    assert stack.served_color() == "blue"


def test_switch_to_runs_the_checks_then_switches(workdir: Path, stack: Stack) -> None:
    result = run(workdir, "switch-to", "green")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bluegreen: SWITCH: switched blue -> green" in result.stdout
    assert stack.served_color() == "green"
    # nothing to do is one answer, as the gate's no-op: exit 0, said so, with or without checks
    for forced in ([], ["--force"]):
        again = run(workdir, "switch-to", "green", *forced)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.strip().splitlines()[-1] == (
            "bluegreen: green is already live; nothing to switch"
        )
    assert [e["outcome"] for e in history(stack)] == ["switched"]


def test_switch_to_refuses_when_the_checks_fail(workdir: Path, stack: Stack) -> None:
    stack.green.control(api_status=500)
    result = run(workdir, "switch-to", "green")
    assert result.returncode == 1, result.stdout
    assert "traffic stays on blue" in result.stdout
    assert stack.served_color() == "blue"


def test_without_a_checks_folder_the_suite_is_pytests_own_discovery(
    workdir: Path, stack: Stack
) -> None:
    # the checks beside the settings (no checks/ folder): the default finds them as pytest would
    (workdir / "checks" / "test_checks.py").rename(workdir / "test_checks.py")
    (workdir / "checks").rmdir()
    stack.green.control(api_status=500)
    refused = run(workdir, "switch-to", "green")
    assert refused.returncode == 1, refused.stdout + refused.stderr  # the checks ran and failed
    stack.green.control(api_status=200)
    assert run(workdir, "switch-to", "green").returncode == 0
    # a suite named and missing: one line, exit 4, nothing switched or recorded
    missing = run(workdir, "--checks", "nope", "switch-to", "blue")
    assert missing.returncode == 4
    assert missing.stderr == "bluegreen: error: the check suite nope does not exist (--checks)\n"
    assert stack.served_color() == "green"
    assert [e["outcome"] for e in history(stack)] == ["failed", "switched"]


def test_forced_switch_skips_checks_and_is_recorded(workdir: Path, stack: Stack) -> None:
    stack.green.control(api_status=500)  # its checks would fail
    result = run(workdir, "switch-to", "green", "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forced by the operator" in result.stdout
    assert stack.served_color() == "green"
    [entry] = history(stack)
    assert entry["forced"] is True
    assert entry["outcome"] == "switched"
    status = json.loads(run(workdir, "status", "--json").stdout)
    assert status["last_switch"]["forced"] is True


VETO = """
def pytest_bluegreen_before_switch(config, plan, decision):
    return "change freeze until Monday"
"""


def test_a_forced_switch_keeps_the_users_veto(workdir: Path, stack: Stack) -> None:
    (workdir / "checks" / "conftest.py").write_text(VETO)
    vetoed = run(workdir, "switch-to", "green", "--force")
    assert vetoed.returncode == 7, vetoed.stdout + vetoed.stderr
    assert "vetoed: change freeze until Monday" in vetoed.stdout
    assert stack.served_color() == "blue"
    assert [(e["outcome"], e["forced"]) for e in history(stack)] == [("refused", True)]

    ignored = run(workdir, "switch-to", "green", "--force", "--ignore-veto")
    assert ignored.returncode == 0, ignored.stdout + ignored.stderr
    assert "veto ignored (--ignore-veto): change freeze until Monday" in ignored.stdout
    assert stack.served_color() == "green"
    last = history(stack)[-1]
    assert (last["outcome"], last["forced"]) == ("switched", True)
    assert "veto ignored (--ignore-veto): change freeze until Monday" in str(last["reason"])


def test_the_command_reads_the_same_ini_and_rootdir_as_pytest(workdir: Path, stack: Stack) -> None:
    # settings from pytest's ini (not the file), run from a subfolder: the same rootdir
    (workdir / "bluegreen.toml").rename(workdir / "deploy.toml")
    (workdir / "pytest.ini").write_text("[pytest]\nbluegreen_config = deploy.toml\n")
    sub = workdir / "checks"
    result = run(sub, "--checks", ".", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["live"] == "blue"


def test_ignore_veto_needs_force(workdir: Path, stack: Stack) -> None:
    result = run(workdir, "switch-to", "green", "--ignore-veto")
    assert result.returncode == 4
    assert result.stderr.strip() == "bluegreen: error: --ignore-veto only goes with --force"


def test_rollback_returns_to_the_previous_color(workdir: Path, stack: Stack) -> None:
    assert run(workdir, "switch-to", "green").returncode == 0
    result = run(workdir, "rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rolled back green -> blue" in result.stdout
    assert stack.served_color() == "blue"
    forced = run(workdir, "rollback", "--force")
    assert forced.returncode == 0, forced.stdout
    assert stack.served_color() == "green"
    assert [e["outcome"] for e in history(stack)] == ["switched", "rolled-back", "rolled-back"]


def test_export_state_redacts_secrets(workdir: Path, stack: Stack) -> None:
    assert run(workdir, "switch-to", "green").returncode == 0
    out = workdir / "state.json"
    result = run(workdir, "export-state", "--output", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "s3cr3t-value" not in text
    data = json.loads(text)
    assert data["secrets"] == {"POSTGRES_PASSWORD": "***"}
    assert data["colors"]["blue"]["variables"]["DB_URL"] == "postgresql://app:***@db/app"
    assert data["live"] == "green"
    assert supported_version(data["haproxy"]["version"]), data["haproxy"]
    assert {s["server"] for s in data["haproxy"]["servers"]} >= {"blue-api", "green-api"}
    assert [e["to_color"] for e in data["history"]] == ["green"]
    stdout = run(workdir, "export-state")
    assert json.loads(stdout.stdout)["live"] == "green"


def test_check_runs_the_suite_for_an_environment(workdir: Path, stack: Stack) -> None:
    result = run(workdir, "check", "--environment", "green", "--quick", "--verbose")
    assert result.returncode == 0, result.stdout
    assert "test_health[green] PASSED" in result.stdout
    assert "[blue]" not in result.stdout
    shared = run(workdir, "check", "--environment", "shared")
    assert shared.returncode == 0
    assert "1 passed" in shared.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["switch-to", "purple"], "bluegreen: error: unknown color 'purple' (colors: blue, green)"),
        (["check", "--environment", "purple"], "bluegreen: error: unknown environment 'purple'"),
        (["deploy", "--target-color", "green"], "bluegreen: error: deploy needs --deployment-tag"),
        (["deploy"], "bluegreen: error: deploy needs --target-color (or --rollback)"),
        (
            [
                "deploy",
                "--target-color",
                "green",
                "--deployment-tag",
                "v1",
                "--auto-switch",
                "--skip-switch",
            ],
            "bluegreen: error: --auto-switch, --skip-switch and --promote-later exclude each other",
        ),
        (
            [
                *("deploy", "--target-color", "green", "--deployment-tag", "v1"),
                *("--promote-later", "--skip-tests"),
            ],
            "bluegreen: error: --promote-later records what the checks verified; "
            "not with --skip-tests",
        ),
    ],
    ids=[
        "unknown-color",
        "unknown-environment",
        "missing-tag",
        "no-color",
        "contradiction",
        "promote-unverified",
    ],
)
def test_bad_input_is_one_clear_line(
    workdir: Path, stack: Stack, args: list[str], message: str
) -> None:
    before = stack.live_weights()
    result = run(workdir, *args)
    assert result.returncode == 4
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message), line
    assert stack.live_weights() == before
    assert history(stack) == []


def test_malformed_config_is_one_clear_line(workdir: Path, stack: Stack) -> None:
    (workdir / "bluegreen.toml").write_text("drain_timeout = 'soon'\n")
    result = run(workdir, "status")
    assert result.returncode == 4
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("bluegreen: error: drain_timeout expected a number of seconds")


def test_haproxy_unreachable_is_one_clear_line(workdir: Path, stack: Stack) -> None:
    stack.haproxy.stop()
    for args in (["status"], ["switch-to", "green", "--force"], ["export-state"]):
        result = run(workdir, *args)
        assert result.returncode == 7, args
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("bluegreen: error: HAProxy Runtime API at 127.0.0.1:"), line
        assert "unreachable" in line


def test_a_held_lock_refuses_a_switch(workdir: Path, stack: Stack) -> None:
    with stack.lock().hold():
        result = run(workdir, "switch-to", "green", "--force")
    assert result.returncode == 7
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("bluegreen: refused: another gate holds")
    assert stack.served_color() == "blue"
    assert history(stack) == []


def test_every_command_has_help_with_an_example(tmp_path: Path) -> None:
    for command in ("status", "switch-to", "rollback", "export-state", "deploy", "check", "init"):
        result = run(tmp_path, command, "--help")
        assert result.returncode == 0
        assert "example:" in result.stdout, command
        assert f"bluegreen {command}" in result.stdout


# --- a cut-off switch: status shows it, recover mends it ------------------------------------


def test_status_and_recover_after_a_cut_off_switch(workdir: Path, stack: Stack) -> None:
    cut_off_switch(stack)
    status = run(workdir, "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "UNFINISHED SWITCH: blue -> green" in status.stdout
    assert "INCONSISTENT: not exactly one color takes traffic" in status.stdout
    data = json.loads(run(workdir, "status", "--json").stdout)
    assert data["unfinished_switch"]["target"] == "green"
    assert data["live"] is None
    refused = run(workdir, "switch-to", "green", "--force")
    assert refused.returncode == 7
    assert "an unfinished switch blue -> green" in refused.stderr
    # the pytest child's gate refuses it too: its journal was open before, not by the child
    checked = run(workdir, "switch-to", "green")
    assert checked.returncode == 7, checked.stdout + checked.stderr
    assert "ended during a switch" not in checked.stderr
    recovered = run(workdir, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "recovered the switch blue -> green cut off after promote" in recovered.stdout
    assert stack.live_weights() == {
        "blue-api": (100, "ready"),
        "blue-frontend": (100, "ready"),
        "green-api": (0, "ready"),
        "green-frontend": (0, "ready"),
    }
    assert [e["outcome"] for e in history(stack)] == ["recovered"]
    after = run(workdir, "status")
    assert after.returncode == 0, after.stdout
    assert "UNFINISHED" not in after.stdout
    again = run(workdir, "recover")
    assert again.returncode == 0
    assert "nothing to recover" in again.stdout


def test_recover_an_inconsistent_haproxy_needs_a_color(workdir: Path, stack: Stack) -> None:
    api = stack.api()
    api.set_state(ServerRef("api_backend", "blue-api"), AdminState.DRAIN)
    status = run(workdir, "status")
    assert status.returncode == 1
    assert "INCONSISTENT: api_backend/blue-api is in drain" in status.stdout
    refused = run(workdir, "recover")
    assert refused.returncode == 7
    assert "no unfinished journal says how it was: bluegreen recover --to COLOR" in refused.stderr
    fixed = run(workdir, "recover", "--to", "blue")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "blue made live" in fixed.stdout
    assert run(workdir, "status").returncode == 0
    assert [e["outcome"] for e in history(stack)] == ["recovered"]
    consistent = run(workdir, "recover", "--to", "green")
    assert consistent.returncode == 7
    assert "move traffic with 'bluegreen switch-to green'" in consistent.stderr


def test_one_lock_per_haproxy_whatever_the_settings_file(
    tmp_path: Path, workdir: Path, stack: Stack
) -> None:

    elsewhere = tmp_path / "another-checkout"
    elsewhere.mkdir()
    # another settings file, another history, the default lock folder: the same HAProxy
    (elsewhere / "bluegreen.toml").write_text(
        stack.settings_toml(lock_dir=None, state_file=str(elsewhere / "history.json"))
    )
    default_dir = StateSettings().lock_dir
    with lock_for(default_dir, str(RuntimeApiAddress.parse(stack.runtime))).hold():
        result = run(elsewhere, "switch-to", "green", "--force")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "another gate holds" in result.stderr
    assert stack.served_color() == "blue"


# --- the JSON documents are docs/json.md's schema ---------------------------------------------

JSON_DOC = ROOT / "docs" / "json.md"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def documented(command: str) -> tuple[dict[str, set[str]], dict[str, object]]:
    """docs/json.md's section on COMMAND: field path -> its types, and the example."""
    section = JSON_DOC.read_text().split(f"## `{command}")[1].split("\n## ")[0]
    fields: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            fields[cells[0].strip("`")] = set(cells[1].split(" or "))
    example = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert example is not None
    return fields, json.loads(example[1])


def observed(
    document: object, fields: dict[str, set[str]], opaque: str | tuple[str, ...] = ""
) -> dict[str, set[str]]:
    """field path -> the JSON types found there (``*`` for a map's keys, ``[]`` for an
    array's elements; what the doc calls a map is one); ``opaque``: not looked into."""
    seen: dict[str, set[str]] = {}
    closed = (opaque,) if isinstance(opaque, str) else opaque

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            kind = "map" if "map" in fields.get(path, set()) else "object"
        else:
            kind = "null" if value is None else JSON_TYPES[type(value)]
        if path and not (kind == "object" and path.endswith(("*", "[]"))):  # rows its fields
            seen.setdefault(path, set()).add(kind)
        if path and path in closed:
            return
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.*" if kind == "map" else f"{path}.{key}".lstrip("."))
        elif isinstance(value, list):
            for inner in value:
                walk(inner, f"{path}[]")

    walk(document, "")
    return seen


def merged(*seen: dict[str, set[str]]) -> dict[str, set[str]]:
    """Several documents' fields and types as one (each part non-null in one of them)."""
    union: dict[str, set[str]] = {}
    for one in seen:
        for path, kinds in one.items():
            union.setdefault(path, set()).update(kinds)
    return union


def undocumented(seen: dict[str, set[str]], fields: dict[str, set[str]]) -> list[str]:
    return sorted(seen.keys() - fields.keys())


def absent(seen: dict[str, set[str]], fields: dict[str, set[str]]) -> list[str]:
    return sorted(fields.keys() - seen.keys())


def misfits(seen: dict[str, set[str]], fields: dict[str, set[str]]) -> dict[str, set[str]]:
    """Fields whose values are not of a documented type (an integer is a number too)."""
    allowed = {p: t | ({"integer"} if "number" in t else set()) for p, t in fields.items()}
    return {p: kinds for p, kinds in seen.items() if not kinds <= allowed.get(p, set())}


def test_the_json_is_the_documented_schema(workdir: Path, stack: Stack) -> None:
    fields, example = documented("bluegreen status --json")
    export_fields, export_example = documented("bluegreen export-state")
    # a fresh state: the parts that may be null are null
    fresh = json.loads(run(workdir, "status", "--json").stdout)
    assert fresh["last_switch"] is None
    assert misfits(observed(fresh, fields), fields) == {}

    # a forced switch (the old color kept warm: scale_down_delay's default), then a gate run
    # that changed nothing, quoting a secret: the last switch and the last entry differ
    assert run(workdir, "switch-to", "green", "--force").returncode == 0
    leak = "postgresql://app:s3cr3t-value@db/app refused"
    entry = HistoryEntry.now(
        from_color="green", to_color="blue", tag="v1.1.0", outcome=Outcome.FAILED,
        reason=leak,
    )  # fmt: skip
    append(stack.state_file, entry)
    warm = json.loads(run(workdir, "status", "--json").stdout)
    assert (warm["warm_window"]["old"], warm["warm_window"]["new"]) == ("blue", "green")
    assert (warm["last_switch"]["outcome"], warm["last_entry"]["outcome"]) == ("switched", "failed")

    # then every other part: a switch cut off after promote, a pending promotion, an instance
    # left out of a switch
    cut_off_switch(stack, "blue")
    now = time.time()
    for name, record in (
        (
            PENDING,
            PendingPromotion("blue", "green", "v1.2.0", "blue-backend=sha256:9f", 4, now, now),
        ),
        (RECONCILE, Reconcile(("lb-2",), "green", now)),
        (FAULTS, FaultsLeft("blue", "v1.0.0", "HTTP 500 on 1.00% of /api/* requests", now, "h", 1)),
    ):
        save_record(stack.state_file, name, record)
    shown = run(workdir, "status", "--json")
    assert shown.returncode == 1  # consistent: false
    exported = run(workdir, "export-state", "--json")
    assert exported.returncode == 0, exported.stderr
    assert "s3cr3t-value" not in shown.stdout + exported.stdout
    data, export = json.loads(shown.stdout), json.loads(exported.stdout)
    assert (data["consistent"], data["last_entry"]["reason"]) == (
        False,
        leak.replace("s3cr3t-value", "***"),
    )
    assert data["warm_window"] is None  # a switch began since (cut off): its window is over

    # every field in the output is in the table, of its type, and every field of the table is
    seen = merged(observed(data, fields), observed(warm, fields))
    assert (undocumented(seen, fields), absent(seen, fields), misfits(seen, fields)) == ([], [], {})
    seen = observed(export, export_fields, opaque="status")
    assert undocumented(seen, export_fields) == absent(seen, export_fields) == []
    assert misfits(seen, export_fields) == {}
    assert misfits(observed(export["status"], fields), fields) == {}
    # the doc's examples are such documents
    assert example.keys() == data.keys()
    assert export_example.keys() == export.keys()
    for doc, its_fields in (
        (example, fields),
        (export_example, export_fields),
        (export_example["status"], fields),
    ):
        shape = observed(doc, its_fields, opaque="status")
        assert (undocumented(shape, its_fields), misfits(shape, its_fields)) == ([], {})


# --- the hand-off to pytest: the settings file, values that look like paths ------------------


def test_a_socket_path_keeps_the_settings_file_its_lock_and_history(
    tmp_path: Path, stack: Stack
) -> None:
    """``bluegreen --runtime-api /path/admin.sock``: the settings file where bluegreen runs
    still holds (its lock folder, history, routed URL), in the command and in the pytest child
    it runs, although the socket lies outside that folder (pytest's rootdir guess would have
    moved to a common ancestor, where there is no settings file)."""
    deploy = make_workdir(tmp_path / "deploy", stack)
    sock = str(stack.socket_path)
    with lock_for(stack.lock_dir, str(RuntimeApiAddress.parse(sock))).hold():
        held = run(deploy, "--runtime-api", sock, "switch-to", "green", "--force")
    assert held.returncode == 7, held.stdout + held.stderr
    assert "another gate holds" in held.stderr
    assert stack.served_color() == "blue"
    forced = run(deploy, "--runtime-api", sock, "switch-to", "green", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert stack.served_color() == "green"
    checked = run(deploy, "--runtime-api", sock, "switch-to", "blue")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"--runtime-api={sock}" in checked.stdout  # one word: no path for pytest to misread
    assert f"--bluegreen-config={deploy / 'bluegreen.toml'}" in checked.stdout
    assert stack.served_color() == "blue"
    assert [e["outcome"] for e in history(stack)] == ["switched", "switched"]
    status = json.loads(run(deploy, "--runtime-api", sock, "status", "--json").stdout)
    assert status["last_switch"]["to_color"] == "blue"


def test_a_command_without_a_settings_file_is_refused(tmp_path: Path, stack: Stack) -> None:
    """No bluegreen.toml where bluegreen runs (nor above): one line, exit 4, not the defaults
    (another HAProxy's socket, another history and lock)."""
    empty = tmp_path / "empty"
    (empty / "checks").mkdir(parents=True)
    for args in (["status"], ["switch-to", "green", "--force"], ["check", "--environment", "all"]):
        result = run(empty, "--runtime-api", stack.runtime, *args)
        assert result.returncode == 4, (args, result.stdout + result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("bluegreen: error: no settings file: no bluegreen.toml"), line
        assert str(empty) in line
    assert stack.served_color() == "blue"
    assert history(stack) == []


@pytest.mark.parametrize(
    "args",
    [["status", "--bogus"], ["check"], ["frobnicate"], [], ["--runtime-api"], ["status", "x"]],
    ids=[
        "unknown-option",
        "missing-environment",
        "unknown-command",
        "no-command",
        "no-value",
        "extra-argument",
    ],
)
def test_argument_errors_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    """Exit 4 as every usage error, in one line; never argparse's 2 ("interrupted")."""
    result = run(tmp_path, *args)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("bluegreen"), line
    assert ": error: " in line, line
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args", [[], ["--status", "--rollback"], ["--bogus"]], ids=["none", "two", "unknown"]
)
def test_the_seed_script_s_argument_errors_are_usage_errors(args: list[str]) -> None:
    script = ROOT / "scripts" / "manage-environments.py"
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert ": error: " in line


WAIT_FOR_GO = """
import pathlib, time

def pytest_runtest_setup(item):
    here = pathlib.Path(__file__).parent
    (here / "started").touch()
    deadline = time.monotonic() + 60
    while not (here / "go").exists():
        assert time.monotonic() < deadline, "never told to go"
        time.sleep(0.01)
"""


def test_sigterm_to_bluegreen_check_exits_interrupted(workdir: Path, stack: Stack) -> None:
    """The child pytest (no gate: no handler) dies of the SIGTERM passed on to it; bluegreen
    exits with the documented 2, not 241 (-15 taken modulo 256)."""
    (workdir / "checks" / "conftest.py").write_text(WAIT_FOR_GO)
    check = subprocess.Popen(
        [*BLUEGREEN, "check", "--environment", "green"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: (workdir / "checks" / "started").exists() or check.poll() is not None,
        60,
        "the checks to start",
    )
    assert check.poll() is None, check.communicate()
    check.send_signal(signal.SIGTERM)
    _, stderr = check.communicate(timeout=60)
    assert check.returncode == 2, stderr
    assert "bluegreen: the child pytest ended on SIGTERM: interrupted" in stderr
    assert stack.served_color() == "blue"


def child_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0])


def test_a_child_killed_during_its_switch_ends_as_a_failed_revert(
    workdir: Path, stack: Stack
) -> None:
    """SIGKILL to the pytest child halfway through its switch: the journal is open, HAProxy
    may be half-switched; bluegreen says so and exits 10 (bluegreen recover), not 3 or -9."""
    (workdir / "checks" / "conftest.py").write_text(STEP_HOOK)
    gate = subprocess.Popen(
        [*BLUEGREEN, "switch-to", "green"],
        cwd=workdir,
        env={**os.environ, "FAULT_STEP": "drain", "FAULT": "", "FAULT_DIR": str(workdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: (workdir / "at-step").exists() or gate.poll() is not None,
        60,
        "the child's switch to reach drain",
    )
    assert gate.poll() is None, gate.communicate()
    os.kill(child_of(gate.pid), signal.SIGKILL)
    _, stderr = gate.communicate(timeout=60)
    assert gate.returncode == 10, stderr
    assert "bluegreen: the child pytest was killed by SIGKILL" in stderr
    assert "its journal is open" in stderr
    recovered = run(workdir, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert stack.served_color() == "blue"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:  # reaped between the two looks
        return True
    return state == "Z"  # exited, not yet reaped by its new parent


@pytest.mark.parametrize("where", ["checks", "drain"])
def test_a_killed_bluegreen_leaves_no_gate_to_switch_on_its_own(
    workdir: Path, stack: Stack, where: str
) -> None:
    """SIGKILL to ``bluegreen switch-to`` itself (the OOM killer, a CI runner killing the
    command): it passes nothing on, and its child, in a process group of its own, went on
    alone and switched traffic after the command was gone (seen: exit 137, then green live
    and 'switched' in the history). The child now gets a SIGTERM from the kernel: in its
    checks nothing moves (inconclusive); before its point of no return it reverts."""
    (workdir / "checks" / "conftest.py").write_text(STEP_HOOK + "\n" + WAIT_FOR_GO)
    env = {**os.environ, "FAULT_DIR": str(workdir), "FAULT": ""}
    if where == "drain":
        env["FAULT_STEP"] = "drain"
        (workdir / "checks" / "go").touch()  # the checks go on; the switch waits at drain
    gate = subprocess.Popen(
        [*BLUEGREEN, "switch-to", "green"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    reached = workdir / ("checks/started" if where == "checks" else "at-step")
    wait_for(lambda: reached.exists() or gate.poll() is not None, 60, f"the child at {where}")
    assert gate.poll() is None
    child = child_of(gate.pid)
    gate.kill()
    gate.wait(30)
    (workdir / "go").touch()  # the switch may go on (drain)
    (workdir / "checks" / "go").touch()  # the checks may go on
    wait_for(lambda: _gone(child), 60, "the orphaned child to end")
    assert stack.served_color() == "blue"
    assert stack.live_weights()["green-api"] == (0, "ready")
    assert stack.live_weights()["blue-api"] == (100, "ready")
    expected = "inconclusive" if where == "checks" else "reverted"
    assert [e["outcome"] for e in history(stack)] == [expected]
    entry = read_journal(stack.journal_file)
    assert entry is None or not entry.open


def test_no_assert_rewrite_warning_from_the_pytest_bluegreen_runs(
    workdir: Path, stack: Stack
) -> None:
    """With the package importable as a regular install is (PYTHONPATH), pytest marks it for
    assertion rewriting after bluegreen (and the child's closed-pipe wrapper) imported it: no
    "Module already imported" warning, in the output or as an error where the project's ini
    makes warnings errors."""
    (workdir / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings =\n    error::pytest.PytestAssertRewriteWarning\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["check", "--environment", "green", "--quick"], ["status"]):
        result = subprocess.run(
            [*BLUEGREEN, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = result.stdout + result.stderr
        assert result.returncode == 0, text
        assert "PytestAssertRewriteWarning" not in text
        assert "already imported" not in text


def test_the_verdict_is_the_documented_schema(workdir: Path, stack: Stack) -> None:
    """reports/verdict.json of a dry run, a switch and a failed gate: the documented fields
    and types, and every word ``decision`` can be is the documented list."""
    fields, _ = documented_table("reports/verdict.json")
    words = set(
        re.findall(r"`([a-z][a-z ]*[a-z])`", fields_meaning("reports/verdict.json", "decision"))
    )
    verdict_file = workdir / "reports" / "verdict.json"
    documents = []
    for args, decision in (
        (("--env", "green", "--switch", "--dry-run"), "would switch"),
        (("--env", "green", "--switch=manual"), "pending promotion"),
        (("--env", "green", "--switch"), "switched"),
        (("--env", "green", "--switch"), "no change"),
    ):
        gated = subprocess.run(
            [sys.executable, "-m", "pytest", "checks", "-p", "no:cacheprovider", *args],
            cwd=workdir, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert gated.returncode == 0, gated.stdout + gated.stderr
        document = json.loads(verdict_file.read_text())
        assert document["decision"] == decision, document
        documents.append(document)
    stack.blue.control(api_status=500)
    failed = run(workdir, "switch-to", "blue")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    document = json.loads(verdict_file.read_text())
    assert (document["decision"], document["verdict"]) == ("failed", "failed")
    documents.append(document)
    seen = merged(*(observed(d, fields, opaque=("blame", "probe", "bake")) for d in documents))
    assert (undocumented(seen, fields), absent(seen, fields), misfits(seen, fields)) == ([], [], {})
    from pytest_bluegreen.report.verdict import DecisionWord  # noqa: PLC0415 - its enum is the list

    assert words == {w.value for w in DecisionWord}  # the code writes no other word


def documented_table(section: str) -> tuple[dict[str, set[str]], str]:
    """docs/json.md's ``## `SECTION` `` table: field path -> its types, and the section."""
    text = JSON_DOC.read_text().split(f"## `{section}`")[1].split("\n## ")[0]
    fields: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            fields[cells[0].strip("`")] = set(cells[1].split(" or "))
    return fields, text


def fields_meaning(section: str, field: str) -> str:
    for line in documented_table(section)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] == f"`{field}`":
            return cells[2]
    raise AssertionError(f"{field} is not in docs/json.md's {section} table")
