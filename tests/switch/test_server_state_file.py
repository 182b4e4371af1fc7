"""Every path that changes HAProxy's server states ends by saving its server-state file, so that
the next reload keeps what the path did: a revert, ``bluegreen recover`` (the journal's prior
states, a switch completed past its point of no return, ``--to COLOR``, an HAProxy found
consistent with a stale file), the bake's switch back, a rollback without checks (inside the
warm window, or --force). Each is checked the way it fails in production: a real soft reload
of a real HAProxy, then the live color. (A left-out instance brought in line:
``tests/haproxy/test_instances.py``; every fault at every step: ``tests/switch/test_faults.py``,
which reloads after each cell.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.haproxy.answers import AdminState, ServerRef, parse_servers_state
from pytest_bluegreen.haproxy.identity import InstanceIdentity
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.record.durable import write_durably
from pytest_bluegreen.settings import Settings
from pytest_bluegreen.switch import recovery, serverstate, steps
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal, read_journal
from tests.support.bake import bake_run
from tests.support.cli import BLUEGREEN
from tests.support.gate import CHECKS, deployment_folder, history, outcomes, output, run_gate
from tests.support.stack import BLUE_LIVE, GREEN_LIVE, Stack
from tests.support.switching import stack_settings

GREEN_API = ServerRef("api_backend", "green-api")


@pytest.fixture
def workdir(tmp_path: Path, stack: Stack) -> Path:
    return deployment_folder(tmp_path / "operator", stack)


def bluegreen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def after_reload(stack: Stack) -> dict[str, tuple[int, str]]:
    """A soft reload (the new process takes the server-state file), then what it shows."""
    stack.haproxy.reload(stack.runtime)
    return stack.live_weights()


def switch_to(stack: Stack, settings: Settings, target: str, **given: object) -> None:
    plan = switch.plan(stack.haproxies(), settings.topology, target, settings.switching.full_weight)
    switch.apply(
        stack.haproxies(),
        plan,
        settings.switching,
        settings.topology,
        server_state_file=stack.server_state_file,
        **given,  # type: ignore[arg-type]
    )


def stale_file_green_live(stack: Stack, settings: Settings) -> None:
    """The file says green, HAProxy blue (a recovery or a revert of before did not save)."""
    switch_to(stack, settings, "green")
    api = stack.api()
    for ref in settings.topology.servers("blue"):
        api.set_weight(ref, 100)
    for ref in settings.topology.servers("green"):
        api.set_weight(ref, 0)
    assert stack.live_weights() == BLUE_LIVE


class Killed(BaseException):
    """The gate's process ends here, as with SIGKILL: nothing after it runs."""


class KilledBeforeClose(Journal):
    def close(self, outcome: str, detail: str = "") -> None:
        raise Killed  # every step done and journaled, the journal not closed


def test_recover_to_a_color_saves_the_state_file(stack: Stack, workdir: Path) -> None:
    settings = stack_settings(stack)
    switch_to(stack, settings, "green")  # the file: green live
    stack.api().set_state(GREEN_API, AdminState.DRAIN)  # someone drained green by hand
    fixed = bluegreen(workdir, "recover", "--to", "blue")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert stack.live_weights() == BLUE_LIVE
    assert after_reload(stack) == BLUE_LIVE
    assert stack.served_color() == "blue"
    assert "blue made live, as asked (--to blue)" in fixed.stdout


@pytest.mark.parametrize(
    ("given", "said", "live", "recorded"),
    [
        pytest.param(
            (),
            "completed the switch blue -> green cut off after promote, drain, verify, "
            "wait-drained, idle, confirm, save-state: it had passed its point of no return "
            "('verify': green answered through the routed URL), so it is completed, not "
            "undone; 'bluegreen recover --to blue' undoes it",
            GREEN_LIVE,
            ("blue", "green"),
            id="completes",
        ),
        pytest.param(
            ("--to", "blue"),
            "blue made live, as asked (--to blue)",
            BLUE_LIVE,
            ("green", "blue"),
            id="to-blue",
        ),
    ],
)
def test_recover_after_a_kill_right_after_save_state(
    stack: Stack,
    workdir: Path,
    *,
    given: tuple[str, ...],
    said: str,
    live: dict[str, tuple[int, str]],
    recorded: tuple[str, str],
) -> None:
    settings = stack_settings(stack)
    journal = KilledBeforeClose(stack.journal_file)
    journal.prepare()
    with pytest.raises(Killed):
        switch_to(stack, settings, "green", journal=journal)
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert entry.open
    assert [s["step"] for s in entry.steps] == list(switch.STEPS)

    before = stack.live_weights()
    dry = bluegreen(workdir, "recover", *given, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: would " + ("complete the switch" if not given else "make blue live") in (
        dry.stdout
    )
    assert stack.live_weights() == before
    still = read_journal(stack.journal_file)
    assert still is not None
    assert still.open

    recovered = bluegreen(workdir, "recover", *given)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert stack.live_weights() == live
    assert after_reload(stack) == live
    assert said in recovered.stdout
    [entry_] = history(stack)
    assert (entry_["outcome"], entry_["from_color"], entry_["to_color"]) == ("recovered", *recorded)
    assert said in entry_["reason"]
    closed = read_journal(stack.journal_file)
    assert closed is not None
    assert (closed.open, closed.outcome) == (False, "recovered")


def test_recover_does_not_complete_a_switch_to_a_color_now_down(
    stack: Stack, workdir: Path
) -> None:
    settings = stack_settings(stack)
    journal = KilledBeforeClose(stack.journal_file)
    journal.prepare()
    with pytest.raises(Killed):
        switch_to(stack, settings, "green", journal=journal)
    stack.green.control(health_status=500)  # verified then; its health checks fail now
    stack.wait_down("green")
    refused = bluegreen(workdir, "recover")
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "had passed its point of no return, but green is not UP in HAProxy now" in (
        refused.stderr
    )
    assert "'bluegreen recover --to blue' undoes it" in refused.stderr
    assert stack.live_weights() == GREEN_LIVE  # nothing changed
    undone = bluegreen(workdir, "recover", "--to", "blue")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert after_reload(stack) == BLUE_LIVE


def test_a_revert_saves_the_state_file(stack: Stack) -> None:
    settings = stack_settings(stack)
    stale_file_green_live(stack, settings)

    def fail_at_drain(step: str, plan: switch.SwitchPlan) -> None:
        if step == "drain":
            raise ConnectionError("the change calendar does not answer")

    with pytest.raises(switch.SwitchError, match="previous server states restored"):
        switch_to(stack, settings, "green", on_step=fail_at_drain)
    assert stack.live_weights() == BLUE_LIVE
    assert after_reload(stack) == BLUE_LIVE


def test_recover_restoring_a_journal_saves_the_state_file(stack: Stack, workdir: Path) -> None:
    settings = stack_settings(stack)
    stale_file_green_live(stack, settings)
    journal = KilledBeforeClose(stack.journal_file)
    journal.prepare()

    def killed_at_verify(step: str, plan: switch.SwitchPlan) -> None:
        if step == "verify":
            raise Killed  # SIGKILL after promote and drain: both colors weighted

    with pytest.raises(Killed):
        switch_to(stack, settings, "green", journal=journal, on_step=killed_at_verify)
    recovered = bluegreen(workdir, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert after_reload(stack) == BLUE_LIVE
    assert (
        "recovered the switch blue -> green cut off after promote, drain: every server's "
        "state before it restored: it had not reached its point of no return ('verify')"
    ) in recovered.stdout


def test_recover_saves_a_stale_state_file_of_a_consistent_haproxy(
    stack: Stack, workdir: Path
) -> None:
    stale_file_green_live(stack, settings=stack_settings(stack))
    recovered = bluegreen(workdir, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert after_reload(stack) == BLUE_LIVE
    assert "nothing to recover: no unfinished switch, and blue is live alone" in recovered.stdout
    assert (
        "HAProxy's server-state file did not hold what HAProxy shows (api_backend/blue-api "
        "weight 0 ready"
    ) in recovered.stdout
    again = bluegreen(workdir, "recover")
    assert again.stdout.count("bluegreen:") == 1, again.stdout  # nothing stale any more


def test_a_state_file_that_cannot_be_saved_is_an_incomplete_switch(
    stack: Stack, tmp_path: Path
) -> None:
    """Past the point of no return a server-state file that cannot be written is not a
    reason to undo a verified switch, nor a success: exit 10, the journal open, and
    recover saves it once it can."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be\n")
    state_file = blocker / "server-state"
    folder = tmp_path / "operator"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(stack.settings_toml(haproxy_state_file=str(state_file)))
    (folder / "checks").mkdir()
    (folder / "checks" / "test_checks.py").write_text(CHECKS)
    gate = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "checks", "--env", "green",
         "--switch"],
        cwd=folder, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    said = gate.stdout + gate.stderr
    assert gate.returncode == 10, said
    assert "passed its point of no return (green verified) but could not be completed at " in said
    assert f"HAProxy's server-state file {state_file} was not saved" in said
    assert outcomes(stack) == ["incomplete"]
    assert stack.live_weights() == GREEN_LIVE  # verified: not undone
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert entry.open
    assert entry.steps[-1]["step"] == "incomplete"

    blocker.unlink()  # the operator mends the folder
    recovered = bluegreen(folder, "recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "completed the switch blue -> green" in recovered.stdout
    held = {
        s.server: (s.uweight, s.admin.value) for s in parse_servers_state(state_file.read_text())
    }
    assert {k: v for k, v in held.items() if k in GREEN_LIVE} == GREEN_LIVE
    assert outcomes(stack) == ["incomplete", "recovered"]


# --- through the gate: the bake's switch back, a rollback without checks ---------------------


def test_the_bakes_switch_back_saves_the_state_file(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    result = bake_run(pytester, stack, 2, degrade=True)
    assert result.ret == 11, output(result)
    assert outcomes(stack) == ["switched", "rolled-back"]
    assert after_reload(stack) == BLUE_LIVE


def test_a_rollback_without_checks_saves_the_state_file(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """``bluegreen rollback --force``: the path a rollback inside the warm window takes too
    (``forced_switch``; with the old color's image readable, see tests/gate/test_aftercare.py)."""
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    back = bluegreen(pytester.path, "--checks", ".", "rollback", "--force")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "checks skipped" in back.stdout
    assert after_reload(stack) == BLUE_LIVE


# --- a reload while the server-state file is saved ---------------------------------------------


class ReloadDuringSave:
    """A real soft reload of HAProxy, once, inside the next save of its server-state file, once
    armed: ``before`` right before the save (after the step checked the process), ``read``
    as the save reads ``show servers state`` (the new process, started from
    the file as it was, answers), or ``write`` after that answer and before the file is
    written (the old process answered; the new one took over from the older file)."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
        self.stack = stack
        self.armed = False
        self.reloads = 0
        if when == "before":  # after the step's own check of the process, before the save's
            seen = switch.identity
            calls: list[int] = []

            def identity(api: RuntimeApi) -> InstanceIdentity:
                if self.armed:
                    calls.append(1)
                    if len(calls) == 2:  # 1: the step's check; 2: the save's first
                        self.fire()
                return seen(api)

            for module in (steps, serverstate):  # the step's check, the save's
                monkeypatch.setattr(module, "identity", identity)
        elif when == "read":
            original = RuntimeApi.servers_state_text

            def read(api: RuntimeApi, backend: str | None = None) -> str:
                self.fire()
                return original(api, backend)

            monkeypatch.setattr(RuntimeApi, "servers_state_text", read)
        else:
            write = write_durably  # what the switch saves with

            def written(path: Path, text: str) -> None:
                self.fire()
                write(path, text)

            monkeypatch.setattr(serverstate, "write_durably", written)

    def fire(self) -> None:
        if self.armed:
            self.armed = False
            self.reloads += 1
            self.stack.haproxy.reload(self.stack.runtime)


@pytest.mark.parametrize("when", ["before", "read", "write"])
def test_a_reload_during_the_switchs_save_is_met_not_missed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """The new process starts from the file as it was (blue live): a save it overlapped must
    not close the switch as done while HAProxy serves blue (and, read from it, saves blue)."""
    settings = stack_settings(stack)
    reload = ReloadDuringSave(stack, monkeypatch, when)

    def arm(step: str, plan: switch.SwitchPlan) -> None:
        if step == "save-state" and not reload.reloads:  # its first try only
            reload.armed = True

    result = switch.apply(
        stack.haproxies(),
        switch.plan(stack.haproxies(), settings.topology, "green", settings.switching.full_weight),
        settings.switching,
        settings.topology,
        journal=Journal(stack.journal_file),
        server_state_file=stack.server_state_file,
        on_step=arm,
    )
    assert reload.reloads == 1
    assert stack.live_weights() == GREEN_LIVE, result.notes
    assert any("'save-state' failed" in note for note in result.notes), result.notes
    journal = read_journal(stack.journal_file)
    assert journal is not None
    assert (journal.open, journal.outcome) == (False, "switched")
    assert after_reload(stack) == GREEN_LIVE


def test_a_reload_during_a_reverts_save_is_met_not_missed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack_settings(stack)
    stale_file_green_live(stack, settings)  # what a reload would bring back: green
    reload = ReloadDuringSave(stack, monkeypatch, "write")

    def fail_at_drain(step: str, plan: switch.SwitchPlan) -> None:
        if step == "drain":
            reload.armed = True
            raise ConnectionError("the change calendar does not answer")

    with pytest.raises(switch.SwitchError, match="previous server states restored"):
        switch_to(stack, settings, "green", on_step=fail_at_drain)
    assert reload.reloads == 1
    assert stack.live_weights() == BLUE_LIVE
    assert after_reload(stack) == BLUE_LIVE


def test_recover_says_a_save_a_reload_overlapped_did_not_hold(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consistent HAProxy with a stale file, and a reload while recover saves it: the new
    process runs the stale file's green; recover must not say it saved (exit 10, why)."""
    settings = stack_settings(stack)
    stale_file_green_live(stack, settings)
    reload = ReloadDuringSave(stack, monkeypatch, "write")
    reload.armed = True
    report = recovery.recover(settings)
    assert reload.reloads == 1
    assert report.exit_code == ExitCode.REVERT_FAILED, report.lines
    assert any("reloaded or restarted while its server-state file" in line for line in report.lines)
