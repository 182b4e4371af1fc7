"""The gate against a real HAProxy in front of two real backends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from pytest_bluegreen.record import history as records
from pytest_bluegreen.record.history import PENDING, WARM, PendingPromotion, WarmWindow
from tests.support.gate import (
    CHECKS,
    WatchedGate,
    history,
    outcomes,
    output,
    prepare,
    run_gate,
)
from tests.support.stack import BLUE_LIVE, GREEN_LIVE, Stack, wait_for

# what the gate's process had imported by its end
LOADED = """
import sys


def pytest_unconfigure(config):
    with open("loaded.txt", "w") as out:
        out.write(" ".join(sorted(sys.modules)))
"""


def test_passing_session_switches_traffic(pytester: pytest.Pytester, stack: Stack) -> None:
    pytester.makeconftest(LOADED)
    result = run_gate(pytester, stack, "--env", "green", "--switch", "-m", "quick")
    assert result.ret == 0, output(result)
    # asking the engine which build answers is the docker SDK's; the docker CLI's client
    # (python-on-whales: a fifth of a second to import) is only for deploying
    assert "python_on_whales" not in (pytester.path / "loaded.txt").read_text().split()
    result.stdout.fnmatch_lines(["*bluegreen: SWITCH: switched blue -> green: 2 check(s)*"])
    assert stack.served_color() == "green"
    assert stack.live_weights() == GREEN_LIVE
    [entry] = history(stack)
    assert (entry["from_color"], entry["to_color"], entry["outcome"]) == (
        "blue",
        "green",
        "switched",
    )
    assert entry["tag"] == "v1.1.0"  # read from the new color while verifying
    assert "green-api" in stack.server_state_file.read_text()


def test_failing_session_keeps_traffic(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(
        [
            "*bluegreen: FAILED: checks failed (green: 1 passed, 1 failed)*",
            "*traffic stays on blue*",
        ]
    )
    assert stack.served_color() == "blue"
    assert stack.live_weights() == BLUE_LIVE
    assert outcomes(stack) == ["failed"]


@pytest.mark.parametrize(
    ("args", "checks", "summary"),
    [
        (["-k", "no_such_check"], CHECKS, "none selected"),
        (
            [],
            "import pytest\n\ndef test_skipped(color):\n    pytest.skip('not here')\n",
            "1 skipped",
        ),
        (
            [],
            "import pytest\n\n@pytest.mark.xfail(strict=True)\ndef test_x(color):\n"
            "    assert False\n",
            "1 xfailed",
        ),
        (["-m", "shared"], CHECKS, "none selected"),
    ],
    ids=["empty-selection", "skip-only", "xfail-only", "shared-only"],
)
def test_inconclusive_session_does_not_switch(
    pytester: pytest.Pytester, stack: Stack, args: list[str], checks: str, summary: str
) -> None:
    result = run_gate(pytester, stack, "--env", "green", "--switch", *args, checks=checks)
    assert result.ret == 6, output(result)
    result.stdout.fnmatch_lines(
        [f"*INCONCLUSIVE: inconclusive: no check for green ran and passed ({summary})*"]
    )
    assert stack.live_weights() == BLUE_LIVE
    assert outcomes(stack) == ["inconclusive"]


def test_exactly_one_switch_under_xdist(pytester: pytest.Pytester, stack: Stack) -> None:
    checks = CHECKS + "".join(
        f"\n\ndef test_more_{i}(http):\n    assert http.get('/health').ok\n" for i in range(6)
    )
    result = run_gate(pytester, stack, "--env", "green", "--switch", "-n", "2", checks=checks)
    assert result.ret == 0, output(result)
    assert sum("switched blue -> green" in line for line in result.outlines) == 1
    assert outcomes(stack) == ["switched"]
    assert stack.served_color() == "green"


def test_failed_verification_restores_exact_states(pytester: pytest.Pytester, stack: Stack) -> None:
    # green passes its checks but the routed URL never shows green: it claims another color
    api = stack.api()
    before = {s.ref: s for s in api.servers_state()}
    stack.green.control(claim_color="purple")
    result = run_gate(pytester, stack, "--env", "green", "--switch", verify_timeout=1)
    assert result.ret == 8, output(result)
    result.stdout.fnmatch_lines(["*failed at 'verify'*previous server states restored*"])
    after = {s.ref: s for s in api.servers_state()}
    assert {r: (s.uweight, s.admin_state) for r, s in after.items()} == {
        r: (s.uweight, s.admin_state) for r, s in before.items()
    }
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["reverted"]


def test_target_not_up_in_haproxy_is_refused(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.green.control(health_status=503)
    stack.wait_down("green")
    # the check reaches green's backend itself (HAProxy's green direct port is DOWN too)
    checks = (
        "import requests\n\ndef test_api(color):\n"
        f"    assert requests.post('{stack.green.url}/api/items', timeout=5).ok\n"
    )
    result = run_gate(pytester, stack, "--env", "green", "--switch", checks=checks)
    assert result.ret == 7, output(result)
    result.stdout.fnmatch_lines(["*REFUSED: HAProxy does not report green UP: *green-api DOWN*"])
    assert stack.live_weights() == BLUE_LIVE


def test_already_live_is_a_noop(pytester: pytest.Pytester, stack: Stack) -> None:
    result = run_gate(pytester, stack, "--env", "blue", "--switch")
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*NOOP: blue is already live; nothing to switch*"])
    assert stack.live_weights() == BLUE_LIVE


def test_two_concurrent_gates_switch_once(pytester: pytest.Pytester, stack: Stack) -> None:
    go = pytester.path / "go"
    slow = CHECKS + (
        "\n\ndef test_wait_for_go():\n"
        "    import pathlib, time\n"
        f"    deadline = time.monotonic() + 60\n"
        f"    while not pathlib.Path({str(go)!r}).exists():\n"
        "        assert time.monotonic() < deadline, 'never told to go'\n"
        "        time.sleep(0.02)\n"
    )
    prepare(pytester, stack, slow)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"]
    first = subprocess.Popen(cmd, cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    lock = stack.lock().path
    wait_for(
        lambda: lock.exists() and "pid" in lock.read_text(),
        30,
        "the first gate's lock",
        watch=[first],
    )
    second = subprocess.run(
        cmd, cwd=pytester.path, capture_output=True, text=True, timeout=60, check=False
    )
    go.touch()
    first_out, _ = first.communicate(timeout=60)
    assert second.returncode == 7, second.stdout + second.stderr
    assert "another gate holds" in second.stderr
    assert first.returncode == 0, first_out
    assert outcomes(stack) == ["switched"]
    assert stack.served_color() == "green"


def test_unreachable_runtime_api_changes_nothing(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.haproxy.stop()
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 7, output(result)
    assert "HAProxy Runtime API at 127.0.0.1:" in output(result)
    assert "is unreachable" in output(result)
    assert "passed" not in output(result)  # refused before any check ran
    assert outcomes(stack) == []


def test_operator_level_socket_is_refused(pytester: pytest.Pytester, stack: Stack) -> None:
    result = run_gate(
        pytester, stack, "--env", "green", "--switch", "--runtime-api", stack.operator_runtime
    )
    assert result.ret == 7, output(result)
    assert "is at level 'operator'; switching needs 'level admin'" in output(result)
    assert stack.live_weights() == BLUE_LIVE


def test_unknown_server_in_settings_is_refused(pytester: pytest.Pytester, stack: Stack) -> None:
    prepare(pytester, stack)
    toml = pytester.path / "bluegreen.toml"
    toml.write_text(
        toml.read_text().replace("frontend_backend/green-frontend", "frontend_backend/green-typo")
    )
    result = pytester.runpytest_subprocess("--env", "green", "--switch")
    assert result.ret == 7, output(result)
    assert "has no server frontend_backend/green-typo" in output(result)
    assert stack.live_weights() == BLUE_LIVE


def test_restarted_haproxy_keeps_the_new_color(pytester: pytest.Pytester, stack: Stack) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    stack.restart_haproxy()
    assert stack.haproxy.starts == 2
    assert stack.live_weights() == GREEN_LIVE
    assert stack.served_color() == "green"


def test_rollback_returns_to_previous_color(pytester: pytest.Pytester, stack: Stack) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    result = pytester.runpytest_subprocess("--rollback", "-m", "quick")
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*SWITCH: rolled back green -> blue*"])
    assert "[green]" not in output(result)
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["switched", "rolled-back"]


def test_failing_live_color_returns_traffic(pytester: pytest.Pytester, stack: Stack) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch").ret == 0
    stack.green.control(api_status=500)
    result = pytester.runpytest_subprocess("--env", "green", "--switch")
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(["*FAILED: checks failed*", "*rolled back green -> blue*"])
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["switched", "rolled-back"]


def test_hooks_veto_and_observe(pytester: pytest.Pytester, stack: Stack) -> None:
    pytester.makeconftest(
        "import os, pathlib\n"
        "def pytest_bluegreen_before_switch(config, plan, decision):\n"
        "    if os.environ.get('FREEZE'):\n"
        "        return f'change freeze, {plan.target} waits'\n"
        "def pytest_bluegreen_after_switch(config, result):\n"
        "    pathlib.Path('after_switch').write_text(result.plan.target)\n"
    )
    prepare(pytester, stack)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FREEZE", "1")
        vetoed = pytester.runpytest_subprocess("--env", "green", "--switch")
    assert vetoed.ret == 7, output(vetoed)
    vetoed.stdout.fnmatch_lines(["*REFUSED: vetoed: change freeze, green waits*"])
    assert stack.live_weights() == BLUE_LIVE
    assert not (pytester.path / "after_switch").exists()
    allowed = pytester.runpytest_subprocess("--env", "green", "--switch")
    assert allowed.ret == 0, output(allowed)
    assert (pytester.path / "after_switch").read_text() == "green"


def test_dry_run_prints_plan_and_changes_nothing(pytester: pytest.Pytester, stack: Stack) -> None:
    result = run_gate(pytester, stack, "--env", "green", "--switch", "--dry-run")
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(
        [
            "*dry run: would switch because 2 check(s) for green passed*",
            "*api_backend/green-api: weight 0 -> 100, state ready -> ready*",
            "*api_backend/blue-api: state ready -> drain, wait for 0 sessions*",
            "*dry run: nothing changed*",
        ]
    )
    assert stack.live_weights() == BLUE_LIVE
    assert outcomes(stack) == []


def test_a_long_drain_shows_progress_and_loses_nothing(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    # a slow request in flight on blue, held until the gate says it waits for it: the switch
    # drains it instead of cutting it
    stack.blue.control(hold=True)
    answers: list[int] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            requests.post(f"{stack.routed_url}/api/slow", timeout=90).status_code
        )
    )
    slow.start()
    wait_for(
        lambda: any(r.server == "blue-api" and r.scur > 0 for r in stack.api().show_stat()),
        10,
        "the slow request to reach blue",
        watch=[slow],
    )
    prepare(pytester, stack, drain_timeout=30)
    gate = WatchedGate(pytester.path, "--env", "green", "--switch", env=dict(os.environ))
    try:
        said = gate.said("bluegreen: draining:", 60)
    finally:
        stack.blue.control(release=True)  # the request finishes now
        code = gate.finish(120)
        slow.join(30)
    text = gate.text
    assert said, text
    assert code == 0, text
    assert "bluegreen: draining: api_backend/blue-api 1 session(s) open" in text
    assert answers == [200]
    assert stack.served_color() == "green"


# the gate's process as one without the 'docker' extra (python-on-whales not importable)
NO_DOCKER_EXTRA = """
import sys

sys.modules["python_on_whales"] = None
"""


def test_a_deploy_without_the_docker_extra_changes_nothing(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """--deploy refused for the missing extra (exit 4) before anything changed: the idle
    color's warm window and its pending promotion are still recorded, as its traffic is."""
    now = time.time()
    window = WarmWindow("green", "blue", "v1.1.0", now + 300, "keep")
    pending = PendingPromotion("green", "blue", "v1.1.0", None, 2, now, now)
    records.save_record(stack.state_file, WARM, window)
    records.save_record(stack.state_file, PENDING, pending)
    pytester.makeconftest(NO_DOCKER_EXTRA)
    before = stack.live_weights()
    result = run_gate(pytester, stack, "--env", "green", "--deploy", "v1.2.0")
    text = output(result)
    assert result.ret == 4, text
    assert "needs the 'docker' extra: pip install 'pytest-bluegreen[docker]'" in text
    assert records.load_warm(stack.state_file) == window, text
    assert records.load_pending(stack.state_file) == pending, text
    assert stack.live_weights() == before
