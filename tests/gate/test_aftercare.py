"""What outlives a gate run, as a user runs it against a real HAProxy in front of two real
backends: the old color kept warm (a rollback inside its window needs no checks; stopping it
after the window), a promotion as its own step, and both records tied to the build that was
checked (a deploy to the color ends them; an image that cannot be read runs the checks).

The tests that need a color's image (``images``) run the colors' builds as containers of a
Compose project of their own (tests/support/colorimages.py): run this file under the shared
Docker lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.haproxy.answers import ServerRef
from pytest_bluegreen.record.history import HistoryEntry, Outcome
from pytest_bluegreen.report.status import last_switch
from tests.support.colorimages import ColorImages, color_images
from tests.support.gate import CHECKS, history, outcomes, output, prepare, run_gate
from tests.support.stack import Stack, wait_for

BLUEGREEN = [
    sys.executable,
    "-c",
    "from pytest_bluegreen.cli.command import main; raise SystemExit(main())",
]


def bluegreen(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BLUEGREEN, "--checks", ".", *args],
        cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def both(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def status(cwd: Path) -> dict[str, Any]:
    shown = bluegreen(cwd, "status", "--json")
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


@pytest.fixture
def images(docker_engine: None, tmp_path: Path) -> Iterator[ColorImages]:
    with color_images(tmp_path / "images") as made:
        yield made


def with_images(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages, **settings: Any
) -> None:
    """The settings and checks, then blue v1.0.0 and green v1.1.0 deployed as containers."""
    prepare(pytester, stack, CHECKS, **images.settings(), **settings)
    toml = pytester.path / "bluegreen.toml"
    toml.write_text(
        stack.settings_toml(**images.settings(), **settings, color_extra=images.color_extra())
        + '\n[drill]\n"v1.2.0-broken" = "failed"\n'
    )
    images.deploy(pytester.path, "blue", "v1.0.0")
    images.deploy(pytester.path, "green", "v1.1.0")


def gate(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)


# --- the old color kept warm -------------------------------------------------------------------


def test_a_rollback_inside_the_warm_window_needs_no_checks(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    with_images(pytester, stack, images, scale_down_delay=300)
    switched = gate(pytester, "--env", "green", "--switch")
    assert switched.ret == 0, output(switched)
    shown = bluegreen(pytester.path, "status")
    assert "warm window: blue v1.0.0 kept warm for" in shown.stdout, both(shown)
    window = status(pytester.path)["warm_window"]
    # what blue runs, and green's tag (known from the tags file: not deployed by this gate)
    assert (window["old"], window["old_tag"], window["tag"]) == ("blue", "v1.0.0", "v1.1.0")
    assert window["old_image"] == f"blue-backend={images.image_id('v1.0.0')}"
    stack.blue.control(api_status=500)  # its checks would fail now
    back = bluegreen(pytester.path, "rollback")
    assert back.returncode == 0, both(back)
    assert "rollback to blue inside its warm window" in back.stdout
    assert "checks skipped" in back.stdout
    assert stack.served_color() == "blue"
    assert [(e["outcome"], e["forced"]) for e in history(stack)] == [
        ("switched", False),
        ("rolled-back", True),
    ]
    # the rollback is a switch too: green is kept warm now, blue's window is over
    after = status(pytester.path)["warm_window"]
    assert (after["old"], after["new"], after["old_tag"]) == ("green", "blue", "v1.1.0")


def test_after_the_window_a_rollback_runs_the_checks(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=1).ret == 0
    wait_for(
        lambda: "warm window" not in bluegreen(pytester.path, "status").stdout,
        30,
        "the warm window to end",
        interval=0.2,
    )
    stack.blue.control(api_status=500)
    back = bluegreen(pytester.path, "rollback")
    assert back.returncode == 1, both(back)  # blue's checks failed
    assert stack.served_color() == "green"


def test_without_the_old_colors_image_a_rollback_runs_the_checks(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """No container of blue to read its image from (no engine for these colors): the window
    cannot say blue still runs what served, so the rollback runs blue's checks."""
    result = run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=300)
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*blue stays warm until * so bluegreen rollback runs the checks"])
    assert status(pytester.path)["warm_window"]["old_image"] is None
    stack.blue.control(api_status=500)
    back = bluegreen(pytester.path, "rollback")
    assert back.returncode == 1, both(back)
    assert "inside blue's warm window, but what blue ran was not recorded" in back.stdout
    assert "the checks run (as with --check)" in back.stdout
    assert stack.served_color() == "green"


DEPLOYS = {
    "bluegreen-deploy": (
        "bluegreen",
        "deploy",
        "--target-color",
        "blue",
        "--deployment-tag",
        "v1.2.0-broken",
        "--skip-tests",
    ),
    "pytest-deploy": ("pytest", "--env", "blue", "--deploy", "v1.2.0-broken"),
    "drill": ("bluegreen", "drill", "--only", "v1.2.0-broken"),
}


@pytest.mark.parametrize("how", DEPLOYS)
def test_a_deploy_to_the_old_color_ends_its_window(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages, how: str
) -> None:
    """A new build on blue inside its warm window (the drill's bad variants too) is not what
    served: the window ends, and the rollback runs blue's checks."""
    with_images(pytester, stack, images, scale_down_delay=300)
    assert gate(pytester, "--env", "green", "--switch").ret == 0
    assert status(pytester.path)["warm_window"]["old"] == "blue"
    tool, *args = DEPLOYS[how]
    if tool == "pytest":
        deployed = gate(pytester, *args)
        text = output(deployed)
    else:
        done = bluegreen(pytester.path, *args)
        text = both(done)
    stack.blue.control(api_status=500)  # the new build's /api/* answers 500
    back = bluegreen(pytester.path, "rollback")
    assert back.returncode == 1, both(back)  # its checks ran, and failed
    assert stack.served_color() == "green"
    assert "blue's warm window ends: a new build is deployed to it" in text, text
    assert status(pytester.path)["warm_window"] is None


def test_stopping_the_old_color_waits_without_the_lock(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    """after_bake_old_color = stop: a rollback inside the window takes the lock the gate left
    free, and the gate then does not stop blue, which is live again."""
    with_images(pytester, stack, images, scale_down_delay=4, after_bake_old_color="stop")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert waiting.stdout is not None
    seen = []
    for line in waiting.stdout:
        seen.append(line)
        if "bluegreen: blue is stopped at" in line:
            break
    assert stack.served_color() == "green", "".join(seen)
    back = bluegreen(pytester.path, "rollback")
    out, _ = waiting.communicate(timeout=120)
    text = "".join(seen) + out
    assert back.returncode == 0, both(back) + text
    assert "rollback to blue inside its warm window" in back.stdout
    assert waiting.returncode == 0, text
    assert "blue not stopped: it takes traffic again (a rollback inside its warm window)" in text
    assert stack.served_color() == "blue"
    assert images.running("blue") == [images.image_id("v1.0.0")]
    # the rollback kept green warm for its own window, then stopped it (it is not live)
    assert "green stopped after its warm window (after_bake_old_color = stop)" in back.stdout
    assert images.running("green") == []


def test_a_live_old_color_is_never_stopped(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    """At the window's end the gate looks at HAProxy again: blue made live by hand meanwhile
    (the Runtime API, not bluegreen) is not stopped."""
    with_images(pytester, stack, images, scale_down_delay=3, after_bake_old_color="stop")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert waiting.stdout is not None
    seen = []
    for line in waiting.stdout:
        seen.append(line)
        if "bluegreen: blue is stopped at" in line:
            break
    api = stack.api()
    for server in ("api_backend/blue-api", "frontend_backend/blue-frontend"):
        api.set_weight(ServerRef.parse(server), 100)
    out, _ = waiting.communicate(timeout=120)
    text = "".join(seen) + out
    assert waiting.returncode == 0, text
    assert "blue not stopped: HAProxy sends it traffic (api_backend/blue-api" in text
    assert images.running("blue") == [images.image_id("v1.0.0")]


def test_a_refused_rollback_keeps_the_window(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    with_images(pytester, stack, images, scale_down_delay=300)
    assert gate(pytester, "--env", "green", "--switch").ret == 0
    with stack.lock().hold():  # another gate on this HAProxy
        refused = bluegreen(pytester.path, "rollback")
    assert refused.returncode == 7, both(refused)
    assert "another gate holds" in refused.stderr
    assert stack.served_color() == "green"
    assert status(pytester.path)["warm_window"]["old"] == "blue"
    stack.blue.control(api_status=500)
    back = bluegreen(pytester.path, "rollback")  # still inside the window: no checks
    assert back.returncode == 0, both(back)
    assert "rollback to blue inside its warm window" in back.stdout
    assert stack.served_color() == "blue"


def test_a_forced_switch_keeps_the_old_color_warm_and_ends_the_last_window(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    run = run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=300)
    assert run.ret == 0, output(run)
    assert status(pytester.path)["warm_window"]["old"] == "blue"
    forced = bluegreen(pytester.path, "switch-to", "blue", "--force")
    assert forced.returncode == 0, both(forced)
    assert "green stays warm until" in forced.stdout
    shown = bluegreen(pytester.path, "status")
    assert "warm window: green" in shown.stdout, shown.stdout
    assert "blue kept warm" not in shown.stdout
    window = status(pytester.path)["warm_window"]
    assert (window["old"], window["new"]) == ("green", "blue")
    # a switch that keeps nothing warm ends the last window too: none is shown while blue is
    # live (a bake's switch back, a switch with scale_down_delay = 0)
    prepare(pytester, stack, scale_down_delay=0)
    again = bluegreen(pytester.path, "switch-to", "green", "--force")
    assert again.returncode == 0, both(again)
    back = bluegreen(pytester.path, "switch-to", "blue", "--force")
    assert back.returncode == 0, both(back)
    assert status(pytester.path)["warm_window"] is None
    assert "warm window" not in bluegreen(pytester.path, "status").stdout


# --- promotion as its own step ------------------------------------------------------------------


def test_verify_now_promote_later(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    with_images(pytester, stack, images)
    pending = gate(pytester, "--env", "green", "--switch=manual")
    assert pending.ret == 0, output(pending)
    pending.stdout.fnmatch_lines(["*promotion pending (--switch=manual): nothing switched*"])
    assert stack.served_color() == "blue"
    promotion = status(pytester.path)["pending_promotion"]
    assert (promotion["target"], promotion["checks_passed"], promotion["expired"]) == (
        "green",
        2,
        False,
    )
    # its tag and image, known although this gate deployed nothing
    assert promotion["tag"] == "v1.1.0"
    assert promotion["image"] == f"green-backend={images.image_id('v1.1.0')}"
    stack.green.control(api_status=500)  # checks would fail: the promotion runs none
    promoted = bluegreen(pytester.path, "promote")
    assert promoted.returncode == 0, both(promoted)
    assert "promoted green v1.1.0" in promoted.stdout
    assert stack.served_color() == "green"
    assert outcomes(stack) == ["pending-promotion", "switched"]
    again = bluegreen(pytester.path, "promote")
    assert again.returncode == 7
    assert "no pending promotion" in again.stderr


def test_a_deploy_to_the_pending_color_discards_the_promotion(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages
) -> None:
    with_images(pytester, stack, images)
    assert gate(pytester, "--env", "green", "--switch=manual").ret == 0
    deployed = bluegreen(
        pytester.path, "deploy", "--target-color", "green", "--deployment-tag", "v1.2.0-broken",
        "--skip-tests",
    )  # fmt: skip
    assert deployed.returncode == 0, both(deployed)
    assert "the pending promotion of green v1.1.0 is discarded" in deployed.stdout
    assert status(pytester.path)["pending_promotion"] is None
    refused = bluegreen(pytester.path, "promote")
    assert refused.returncode == 7
    assert "no pending promotion" in refused.stderr
    assert stack.served_color() == "blue"


UNREADABLE: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    # the promoting operator cannot reach the Docker engine
    "no-docker-access": ({}, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}),
    # the settings name the Swarm engine: this engine is no swarm, it cannot tell
    "swarm-engine": ({"deploy_engine": "swarm"}, {}),
}


@pytest.mark.parametrize(
    "why",
    [
        # the engine's swarm state is read: in the machine group, where the suite's swarm is
        # made and left (with none, or none with this stack, the image cannot be read alike)
        pytest.param(why, marks=pytest.mark.machine) if "swarm" in why else why
        for why in UNREADABLE
    ],
)
def test_a_promotion_whose_image_cannot_be_read_runs_the_checks(
    pytester: pytest.Pytester, stack: Stack, images: ColorImages, why: str
) -> None:
    with_images(pytester, stack, images)
    assert gate(pytester, "--env", "green", "--switch=manual").ret == 0
    settings, env = UNREADABLE[why]
    if settings:
        (pytester.path / "bluegreen.toml").write_text(
            stack.settings_toml(**images.settings(), **settings, color_extra=images.color_extra())
        )
    stack.green.control(api_status=500)  # what runs now fails its checks
    promoted = bluegreen(pytester.path, "promote", env=env)
    assert promoted.returncode == 1, both(promoted)
    assert "what green runs now cannot be read" in promoted.stdout
    assert "the quick checks run again" in promoted.stdout
    assert stack.served_color() == "blue"


def test_a_promotion_recorded_without_an_image_runs_the_checks(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """No container of green (no engine for these colors): the checks run before promoting."""
    pending = run_gate(pytester, stack, "--env", "green", "--switch=manual")
    assert pending.ret == 0, output(pending)
    pending.stdout.fnmatch_lines(["*bluegreen promote will run the quick checks again*"])
    stack.green.control(api_status=500)
    refused = bluegreen(pytester.path, "promote")
    assert refused.returncode == 1, both(refused)
    assert "what green ran was not recorded" in refused.stdout
    assert stack.served_color() == "blue"
    stack.green.reset()
    promoted = bluegreen(pytester.path, "promote")
    assert promoted.returncode == 0, both(promoted)
    assert stack.served_color() == "green"


def test_a_pending_promotion_can_be_aborted(pytester: pytest.Pytester, stack: Stack) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--promote-later").ret == 0
    aborted = bluegreen(pytester.path, "abort")
    assert aborted.returncode == 0, aborted.stderr
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["pending-promotion", "aborted"]
    assert status(pytester.path)["pending_promotion"] is None


def test_an_expired_promotion_is_refused(pytester: pytest.Pytester, stack: Stack) -> None:
    gate_run = run_gate(pytester, stack, "--env", "green", "--switch=manual", promotion_timeout=0.5)
    assert gate_run.ret == 0, output(gate_run)
    wait_for(
        lambda: status(pytester.path)["pending_promotion"]["expired"],
        30,
        "the promotion to expire",
        interval=0.2,
    )
    refused = bluegreen(pytester.path, "promote")
    assert refused.returncode == 7, refused.stdout
    assert "expired" in refused.stdout
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["pending-promotion", "expired"]


def test_a_stale_verification_is_run_again(pytester: pytest.Pytester, stack: Stack) -> None:
    gate_run = run_gate(
        pytester, stack, "--env", "green", "--switch=manual", max_verification_age=0.2
    )
    assert gate_run.ret == 0, output(gate_run)
    wait_for(
        lambda: status(pytester.path)["pending_promotion"]["age_seconds"] > 0.2,
        30,
        "the verification to go stale",
        interval=0.1,
    )
    stack.green.control(api_status=500)  # green went bad since: the checks must see it
    stale = bluegreen(pytester.path, "promote")
    assert stale.returncode == 1, stale.stdout
    assert "the quick checks run again" in stale.stdout
    assert stack.served_color() == "blue"
    stack.green.reset()
    fresh = bluegreen(pytester.path, "promote")
    assert fresh.returncode == 0, fresh.stdout
    assert stack.served_color() == "green"


# --- what status and the history say ----------------------------------------------------------


@pytest.mark.parametrize("outcome", ["incomplete", "revert-failed", "recovered"])
def test_the_last_switch_is_any_entry_that_changed_haproxy(outcome: str) -> None:
    """An incomplete switch (past its point of no return: the target verified and live) moved
    traffic: status's "last switch" is it, never the switch before it; a noop, a refusal or a
    failed gate after it changed nothing and is not."""
    entries = [
        HistoryEntry.now(from_color="green", to_color="blue", tag=None, outcome=o)
        for o in (Outcome.SWITCHED,)
    ] + [
        HistoryEntry.now(from_color="blue", to_color="green", tag=None, outcome=o)
        for o in (Outcome(outcome), Outcome.NOOP, Outcome.REFUSED)
    ]
    last = last_switch(entries)
    assert last is not None
    assert (last.outcome, last.to_color) == (outcome, "green")


def test_status_shows_the_last_switch_and_the_last_entry(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    assert run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=0).ret == 0
    noop = run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=0)
    assert noop.ret == 0, output(noop)
    # a deploy over the live color, refused: the history says which color was live
    refused = run_gate(pytester, stack, "--env", "green", "--deploy", "v9.9.9")
    assert refused.ret == 7, output(refused)
    assert [(e["outcome"], e["from_color"]) for e in history(stack)] == [
        ("switched", "blue"),
        ("noop", "green"),
        ("refused", "green"),
    ]
    shown = status(pytester.path)
    assert (shown["last_switch"]["outcome"], shown["last_switch"]["to_color"]) == (
        "switched",
        "green",
    )
    assert shown["last_entry"]["outcome"] == "refused"
    plain = bluegreen(pytester.path, "status").stdout
    assert "last switch: " in plain
    assert " blue -> green switched (tag " in plain
    assert "last entry: " in plain
    assert " green -> green refused (tag v9.9.9): refused: green takes traffic" in plain


def test_the_tags_come_from_the_tags_file_when_nothing_was_deployed(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    (stack.workdir / "compose-tags.env").write_text("BLUE_TAG=v1.0.0\nGREEN_TAG=v1.1.0\n")
    pending = run_gate(pytester, stack, "--env", "green", "--switch=manual")
    assert pending.ret == 0, output(pending)
    assert status(pytester.path)["pending_promotion"]["tag"] == "v1.1.0"
    assert bluegreen(pytester.path, "abort").returncode == 0
    switched = run_gate(pytester, stack, "--env", "green", "--switch", scale_down_delay=300)
    assert switched.ret == 0, output(switched)
    window = status(pytester.path)["warm_window"]
    assert (window["tag"], window["old_tag"]) == ("v1.1.0", "v1.0.0")


# --- what a color runs, as the Swarm engine says (its Docker SDK answers faked: logic only) ----


class FakeService:
    def __init__(self, name: str, tasks: list[dict[str, Any]]) -> None:
        self.name = name
        self._tasks = tasks

    def tasks(self) -> list[dict[str, Any]]:
        return self._tasks


class FakeServices:
    def __init__(self, services: list[FakeService]) -> None:
        self.services = services

    def list(self, filters: dict[str, str]) -> list[FakeService]:
        return [s for s in self.services if s.name == filters["name"]]


class FakeSdk:
    def __init__(self, services: list[FakeService]) -> None:
        self.services = FakeServices(services)


def task(image: str, state: str = "running", desired: str = "running") -> dict[str, Any]:
    return {
        "DesiredState": desired,
        "Status": {"State": state},
        "Spec": {"ContainerSpec": {"Image": image}},
    }


V1 = "bluegreen/jarvis:v1.1.0@sha256:1111"
V2 = "bluegreen/jarvis:v1.2.0@sha256:2222"
SWARM_IMAGES = {
    "every-replica-one-image": (
        [task(V1), task(V1), task(V2, state="shutdown", desired="shutdown")],
        f"green-api={V1}",
    ),
    "a-rollout-under-way": ([task(V1), task(V2)], "run 2 different images"),
    "no-replica-runs": ([task(V1, state="starting")], "no replica of green's service green-api"),
    "no-such-service": (None, "green's service green-api is not in stack bluegreen"),
}


@pytest.mark.parametrize("case", SWARM_IMAGES)
def test_the_swarm_engine_says_what_a_color_runs(tmp_path: Path, case: str) -> None:
    from pytest_bluegreen.engines import ImageUnknown, engine_for  # noqa: PLC0415
    from pytest_bluegreen.settings import resolve  # noqa: PLC0415

    (tmp_path / "bluegreen.toml").write_text(
        'deploy_engine = "swarm"\nruntime_api = "127.0.0.1:9"\n'
        'routed_api_url = "http://127.0.0.1:9"\n'
        + "".join(
            f'[colors.{c}]\napi_url = "http://127.0.0.1:9"\nservers = ["b/{c}"]\n'
            f'services = ["{c}-api"]\n'
            for c in ("blue", "green")
        )
    )
    engine: Any = engine_for(resolve({}, {}, {}, tmp_path), lambda line: None)
    tasks, expected = SWARM_IMAGES[case]
    engine._sdk = FakeSdk([] if tasks is None else [FakeService("bluegreen_green-api", tasks)])
    if case == "every-replica-one-image":
        assert engine.image_of("green") == expected
    else:
        with pytest.raises(ImageUnknown, match=expected):
            engine.image_of("green")
