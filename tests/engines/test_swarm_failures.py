"""How the Swarm engine (pytest_bluegreen/engines/swarm.py) fails, for real: a single-node swarm
on the local engine (made by this module and left as found, tests/support/swarm.py), the bundled
stack with one replica per color, no HAProxy (the engine alone is under test), and
``SwarmEngine`` driven as the gate drives it. Each failure is one clear DeployError that names
what failed, and changes nothing it should not: no backup taken, no service touched, no
rollback claimed that did not happen.

The stack runs images of a repository of its own, ``127.0.0.1:9/bgtest-<random>/jarvis``
(tags of the local bluegreen/jarvis images, removed at the end): a registry nothing listens at,
so a pull Swarm or the CLI tries fails here at once and nothing leaves the machine. Faults
mid-deploy (an image removed, a service removed) are injected where the engine reports its
progress. One stack for the module; a test that breaks a service has it made again
(``fresh``). Uses the Docker engine: run under the shared lock (``flock
/tmp/bluegreen-docker.lock``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.engines.swarm import SwarmEngine
from pytest_bluegreen.engines.swarmtasks import swarm_problem
from pytest_bluegreen.errors import DeployError
from pytest_bluegreen.settings.resolve import resolve
from tests.support.infra import require_infra
from tests.support.stack import ROOT, wait_for
from tests.support.swarm import LEASE, SwarmStack, docker, running_replicas, swarm_state

REPO = f"127.0.0.1:9/bgtest-{secrets.token_hex(4)}/jarvis"  # nothing listens at 127.0.0.1:9
TAGS = {"blue": "v1.0.0", "green": "v1.1.0"}  # what the stack runs; tags of bluegreen/jarvis
SICK = "v1.2.0-sick"  # runs, never healthy: its API does not start, its health check fails
MISSING = "v9.9.9-never-built"
COLORS = ("blue", "green")


# -- the decision, on docker info's swarm facts (logic only) ----------------------------------
@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param({"LocalNodeState": "inactive"}, "not part of a swarm", id="inactive"),
        pytest.param({}, "not part of a swarm", id="no-swarm-facts"),
        pytest.param({"LocalNodeState": "pending"}, "still joining its swarm", id="pending"),
        pytest.param({"LocalNodeState": "locked"}, "run 'docker swarm unlock'", id="locked"),
        pytest.param(
            {"LocalNodeState": "error", "Error": "manager stopped: no quorum"},
            "in state 'error': manager stopped: no quorum",
            id="error",
        ),
        pytest.param(
            {
                "LocalNodeState": "active",
                "ControlAvailable": False,
                "RemoteManagers": [{"NodeID": "x", "Addr": "10.0.0.1:2377"}],
            },
            "is a swarm worker: deploys need a manager (point DOCKER_HOST at one); its "
            "managers: 10.0.0.1:2377",
            id="worker",
        ),
        pytest.param(
            {"LocalNodeState": "active", "ControlAvailable": False},
            "is a swarm worker: deploys need a manager (point DOCKER_HOST at one)",
            id="worker-no-managers-known",
        ),
        pytest.param({"LocalNodeState": "active", "ControlAvailable": True}, None, id="manager"),
    ],
)
def test_which_engines_can_deploy_to_a_swarm(facts: dict[str, Any], expected: str | None) -> None:
    problem = swarm_problem(facts)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem
        assert "\n" not in problem


# -- the real thing ---------------------------------------------------------------------------
@dataclass
class Refusal:
    """What the engine said, and left, on an engine that is in no swarm."""

    deploy: DeployError
    teardown: DeployError
    workdir: Path
    state_after: str


def _settings(
    workdir: Path,
    stack: str,
    *,
    blue: tuple[str, ...] = ("blue-api",),
    green: tuple[str, ...] = ("green-api",),
    **overrides: Any,
) -> str:
    values: dict[str, Any] = {
        "deploy_engine": "swarm",
        "stack_name": stack,
        "stack_file": str(ROOT / "docker" / "swarm-stack.yml"),
        "replicas": 1,
        "image_repository": REPO,
        "image_variable": "JARVIS_IMAGE",
        "pull": "never",
        "deploy_timeout": 60,
        "state_file": str(workdir / "state.json"),
        "backup_service": "postgres",
        "backup_command": ["echo", "a dump"],
        "backup_dir": str(workdir / "backups"),
    }
    values.update(overrides)
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["[colors.blue]", f"services = {json.dumps(list(blue))}"]
    lines += ["[colors.green]", f"services = {json.dumps(list(green))}"]
    return "\n".join(lines) + "\n"


def _engine(
    workdir: Path,
    stack: str,
    progress: Callable[[str], None] = lambda line: None,
    **overrides: Any,
) -> SwarmEngine:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bluegreen.toml").write_text(_settings(workdir, stack, **overrides))
    settings = resolve({}, {}, {}, workdir)
    return SwarmEngine(
        settings.compose,
        settings.swarm,
        settings.topology,
        settings.state.tags_file,
        progress=progress,
    )


def _tag_images() -> None:
    for tag in TAGS.values():
        docker("tag", f"bluegreen/jarvis:{tag}", f"{REPO}:{tag}")


@pytest.fixture(scope="module")
def images(docker_swarm: None, pytestconfig: pytest.Config) -> Iterator[None]:
    """The stack's images under REPO, and the sick build; removed at the end (tags only: the
    layers are bluegreen/jarvis's)."""
    try:
        docker("image", "inspect", *(f"bluegreen/jarvis:{t}" for t in TAGS.values()))
        docker("image", "inspect", "bluegreen/postgres:15", "bluegreen/redis:7")
        ready = ""
    except (RuntimeError, OSError) as exc:
        ready = str(exc)
    require_infra(pytestconfig, not ready, f"Docker or the stack's images are missing: {ready}")
    try:
        _tag_images()
        subprocess.run(
            ["docker", "build", "-q", "-t", f"{REPO}:{SICK}", "-"],
            input=(
                f"FROM bluegreen/jarvis:{TAGS['blue']}\n"
                # the service's command (jarvis-api) is only an argument here: no API starts
                'ENTRYPOINT ["/bin/sh", "-c", "echo the API is not started >&2; '
                "trap 'exit 0' TERM; while :; do sleep 1; done\", \"--\"]\n"
            ),
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        yield
    finally:
        _remove_images()


def _remove_images() -> None:
    """Every tag of REPO, once no container (a task Swarm is still removing) uses it."""

    def removed() -> bool:
        for reference in docker("images", "--format", "{{.Repository}}:{{.Tag}}", REPO).split():
            docker("image", "rm", reference, check=False)
        return not docker("images", "-q", REPO).strip()

    wait_for(removed, 120, f"the tags of {REPO} to be removed", interval=1)


@pytest.fixture(scope="module")
def not_a_swarm(images: None, tmp_path_factory: pytest.TempPathFactory) -> Refusal | None:
    """A deploy and a teardown on this engine while it is in no swarm: before ``swarm`` makes
    one, whatever order the tests run in. None when a swarm was active already (not this
    module's to leave)."""
    LEASE.vacate()  # the session's swarm, if a test before made it
    if swarm_state() != "inactive":
        return None
    workdir = tmp_path_factory.mktemp("not-a-swarm")
    engine = _engine(workdir, f"bgtest-{secrets.token_hex(4)}")
    with pytest.raises(DeployError) as deploy:
        engine.deploy("blue", TAGS["blue"])
    with pytest.raises(DeployError) as teardown:
        engine.teardown("green")
    return Refusal(deploy.value, teardown.value, workdir, swarm_state())


@pytest.fixture(scope="module")
def swarm(
    not_a_swarm: Refusal | None, images: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmStack]:
    workdir = tmp_path_factory.mktemp("swarm-failures")
    stack = SwarmStack(workdir, workdir / "no-cert.pem")  # no HAProxy: no certificate
    try:
        stack.start(TAGS["blue"], TAGS["green"], replicas=1, image=REPO, haproxy=False)
        yield stack
    finally:
        stack.close()


def _healthy_as_started(stack: SwarmStack, color: str) -> bool:
    service = f"{stack.name}_{color}-api"
    found = docker("service", "ls", "-q", "--filter", f"name={service}", check=False).split()
    if not found:
        return False
    spec = json.loads(docker("service", "inspect", service))[0]
    image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@", 1)[0]
    replicas = spec["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
    update = (spec.get("UpdateStatus") or {}).get("State", "completed")
    return (
        image == f"{REPO}:{TAGS[color]}"
        and replicas == 1
        and update in ("completed", "rollback_completed")
        and running_replicas(stack.name, f"{color}-api") == 1
    )


@pytest.fixture
def fresh(swarm: SwarmStack) -> SwarmStack:
    """The stack as ``swarm`` started it: a color's service that a test left otherwise
    (removed, rolled back half-way, scaled) is made again."""
    _tag_images()
    broken = [c for c in COLORS if not _healthy_as_started(swarm, c)]
    if broken:
        for color in broken:
            docker("service", "rm", f"{swarm.name}_{color}-api", check=False)
        swarm.deploy_stack()
        wait_for(
            lambda: all(_healthy_as_started(swarm, c) for c in broken),
            120,
            f"{', '.join(broken)} made again as the stack started",
            interval=0.5,
        )
    return swarm


def _versions(stack: SwarmStack) -> dict[str, int]:
    """Each service's spec version: any change to a service (update, scale) raises it."""
    names = [f"{stack.name}_{s}" for s in ("postgres", "redis", "blue-api", "green-api")]
    return {
        str(s["Spec"]["Name"]): int(s["Version"]["Index"])
        for s in json.loads(docker("service", "inspect", *names))
    }


def _image_of(stack: SwarmStack, color: str) -> str:
    return stack.image_of(f"{color}-api")


def _running_images(stack: SwarmStack, color: str) -> list[str]:
    """The images of the color's tasks Swarm wants running."""
    out = docker(
        "service", "ps", f"{stack.name}_{color}-api", "--filter", "desired-state=running",
        "--format", "{{.Image}} {{.CurrentState}}",
    )  # fmt: skip
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def _nothing_backed_up(workdir: Path) -> list[str]:
    folder = workdir / "backups"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_an_engine_in_no_swarm_is_refused_changing_nothing(not_a_swarm: Refusal | None) -> None:
    if not_a_swarm is None:
        pytest.skip("a swarm was active on this engine before the module: not ours to leave")
    for error in (not_a_swarm.deploy, not_a_swarm.teardown):
        assert str(error) == (
            'this Docker engine is not part of a swarm (deploy_engine = "swarm"): run '
            "'docker swarm init', or point DOCKER_HOST at a manager of your swarm"
        )
    assert not_a_swarm.state_after == "inactive"  # no swarm made on the way
    assert _nothing_backed_up(not_a_swarm.workdir) == []
    assert not (not_a_swarm.workdir / "compose-tags.env").exists()


def test_an_image_missing_with_pull_never_is_refused_before_anything(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    engine = _engine(tmp_path, fresh.name)
    versions = _versions(fresh)
    with pytest.raises(DeployError) as refused:
        engine.deploy("blue", MISSING)
    assert str(refused.value) == (
        f"image {REPO}:{MISSING} is not present on this node (pull policy 'never'); build it "
        "here, and on a multi-node swarm load it on every node or use a registry"
    )
    assert _versions(fresh) == versions  # no service updated, scaled or rolled back
    assert _image_of(fresh, "blue") == f"{REPO}:{TAGS['blue']}"
    assert _nothing_backed_up(tmp_path) == []
    assert not (tmp_path / "compose-tags.env").exists()
    # and the backup it did not take is one it would have taken
    assert engine.backup("blue", MISSING) is not None


def test_a_missing_stack_file_is_found_before_the_backup(fresh: SwarmStack, tmp_path: Path) -> None:
    # green-extra is not in the stack yet: the deploy would create it from the stack file
    missing = tmp_path / "no-such-stack.yml"
    engine = _engine(
        tmp_path, fresh.name, green=("green-api", "green-extra"), stack_file=str(missing)
    )
    versions = _versions(fresh)
    with pytest.raises(DeployError) as refused:
        engine.deploy("green", TAGS["blue"])
    assert _nothing_backed_up(tmp_path) == []  # checked before the backup
    assert _versions(fresh) == versions
    assert str(refused.value) == (
        f"stack file {missing} does not exist: deploying green needs it to create green-extra "
        f"(not in stack {fresh.name} yet); nothing changed"
    )
    assert not (tmp_path / "compose-tags.env").exists()
    assert engine.backup("green", TAGS["blue"]) is not None  # one would have been taken


def test_a_build_not_healthy_in_time_is_named_and_rolled_back(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    said: list[str] = []
    # Swarm itself would fail the build only after the stack file's start_period (30 s); by
    # then Docker has run its health check (every second) a few times, also on a busy machine
    engine = _engine(tmp_path, fresh.name, said.append, deploy_timeout=20)
    with pytest.raises(DeployError) as failed:
        engine.deploy("blue", SICK, backup=False)
    message = str(failed.value)
    print(message)  # as an operator reads it (-rP)
    first = message.splitlines()[0]
    assert first.startswith(
        f"deploy of blue {SICK} failed: not healthy within 20s (0/1 replicas healthy; "
        "blue-api.1: health check exits 7: curl: (7) Failed to connect to 127.0.0.1 port 8000"
    ), message
    assert first.endswith(f"; Swarm rolled blue back to {TAGS['blue']}"), message
    assert "the API is not started" in message  # the sick build's own log
    assert f"Swarm rolls blue-api back to {REPO}:{TAGS['blue']}" in said
    assert _image_of(fresh, "blue") == f"{REPO}:{TAGS['blue']}"
    assert _running_images(fresh, "blue") == [f"{REPO}:{TAGS['blue']}"]
    assert running_replicas(fresh.name, "blue-api") == 1


def test_a_rollback_to_an_image_removed_meanwhile_says_what_is_left(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    old = f"{REPO}:{TAGS['green']}"

    def remove_the_old_image(line: str) -> None:
        if line.startswith("deploying green"):  # the update under way: its old replica dies
            docker("image", "rm", old)
            for container in fresh.containers("green-api"):
                docker("kill", container)

    engine = _engine(tmp_path, fresh.name, remove_the_old_image, deploy_timeout=12)
    with pytest.raises(DeployError) as failed:
        engine.deploy("green", SICK, backup=False)
    message = str(failed.value)
    print(message)  # as an operator reads it (-rP)
    first = message.splitlines()[0]
    assert first.startswith(f"deploy of green {SICK} failed: not healthy within 12s"), message
    assert "; the rollback failed (" in first, message
    assert "rolled green back" not in message  # nothing claims it was
    assert f"green is left so: green-api: set to {old} x1" in first, message
    assert f"the last task error: No such image: {old}" in first, message


def test_a_service_removed_during_its_rollback_is_said(fresh: SwarmStack, tmp_path: Path) -> None:
    def remove_the_service(line: str) -> None:
        if line.startswith("Swarm rolls blue-api back"):
            docker("service", "rm", f"{fresh.name}_blue-api")

    engine = _engine(tmp_path, fresh.name, remove_the_service, deploy_timeout=8)
    with pytest.raises(DeployError) as failed:
        engine.deploy("blue", SICK, backup=False)
    print(failed.value)  # as an operator reads it (-rP)
    first = str(failed.value).splitlines()[0]
    assert first.startswith(f"deploy of blue {SICK} failed: not healthy within 8s"), first
    assert first.endswith(
        f"; the rollback failed (blue-api was removed from stack {fresh.name} during its "
        f"rollback): blue is left so: blue-api: not in stack {fresh.name}"
    ), first


def test_a_service_removed_during_the_deploy_is_said_at_once(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    def remove_the_service(line: str) -> None:
        if line == "blue: 0/1 replicas healthy":  # the update is under way
            docker("service", "rm", f"{fresh.name}_blue-api")

    engine = _engine(tmp_path, fresh.name, remove_the_service)
    with pytest.raises(DeployError) as failed:
        engine.deploy("blue", SICK, backup=False)
    first = str(failed.value).splitlines()[0]
    assert first == (
        f"deploy of blue {SICK} failed: blue-api removed from stack {fresh.name} "
        f"meanwhile; the rollback failed (blue-api is not in stack {fresh.name} any more): "
        f"blue is left so: blue-api: not in stack {fresh.name}"
    )


def _extra_service(stack: SwarmStack, service: str, *, mode: str = "replicated") -> None:
    """One more service in the stack: replicated with no replica (nothing runs), or global
    (``docker service scale`` refuses it)."""
    how = ["--replicas", "0"] if mode == "replicated" else ["--mode", "global"]
    docker(
        "service", "create", "--detach", "--quiet", "--name", f"{stack.name}_{service}", *how,
        "--label", f"com.docker.stack.namespace={stack.name}",
        "--container-label", f"com.docker.stack.namespace={stack.name}",  # waited for at close
        "--entrypoint", "sleep", f"{REPO}:{TAGS['green']}", "600",
    )  # fmt: skip


def test_a_service_update_refused_half_way_rolls_back_the_ones_updated(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    _extra_service(fresh, "blue-extra")

    def remove_the_second(line: str) -> None:
        if line.startswith("deploying blue"):  # blue-api is updated next, blue-extra refused
            docker("service", "rm", f"{fresh.name}_blue-extra")

    try:
        engine = _engine(tmp_path, fresh.name, remove_the_second, blue=("blue-api", "blue-extra"))
        with pytest.raises(DeployError) as failed:
            engine.deploy("blue", TAGS["green"], backup=False)
    finally:
        docker("service", "rm", f"{fresh.name}_blue-extra", check=False)
    assert _image_of(fresh, "blue") == f"{REPO}:{TAGS['blue']}"  # not left half deployed
    assert _running_images(fresh, "blue") == [f"{REPO}:{TAGS['blue']}"]
    first = str(failed.value).splitlines()[0]
    assert first.startswith(
        f"deploy of blue {TAGS['green']} failed: 'docker service update' of blue-extra: "
    ), first
    assert first.endswith(f"; Swarm rolled blue back to {TAGS['blue']}"), first


@pytest.mark.parametrize("fault", ["not-in-stack", "global-mode"])
def test_a_teardown_the_engine_cannot_do_is_refused_scaling_nothing(
    fresh: SwarmStack, tmp_path: Path, fault: str
) -> None:
    if fault == "global-mode":
        _extra_service(fresh, "green-other", mode="global")
    try:
        engine = _engine(tmp_path, fresh.name, green=("green-api", "green-other"))
        versions = _versions(fresh)
        with pytest.raises(DeployError) as refused:
            engine.teardown("green")
        assert _versions(fresh) == versions  # green-api still runs: nothing half torn down
        assert running_replicas(fresh.name, "green-api") == 1
        why = (
            f"green-other is not in stack {fresh.name}"
            if fault == "not-in-stack"
            else "green-other runs in global mode: it cannot be scaled to 0"
        )
        assert str(refused.value) == f"teardown of green refused: {why}; nothing scaled"
    finally:
        docker("service", "rm", f"{fresh.name}_green-other", check=False)


def test_a_teardown_refused_half_way_says_what_was_scaled(
    fresh: SwarmStack, tmp_path: Path
) -> None:
    _extra_service(fresh, "green-other")

    def make_it_global(line: str) -> None:
        if line.startswith("tearing down green"):  # checked already: now the engine refuses
            docker("service", "rm", f"{fresh.name}_green-other")
            _extra_service(fresh, "green-other", mode="global")

    try:
        engine = _engine(tmp_path, fresh.name, make_it_global, green=("green-api", "green-other"))
        with pytest.raises(DeployError) as failed:
            engine.teardown("green")
    finally:
        docker("service", "rm", f"{fresh.name}_green-other", check=False)
    message = str(failed.value)
    assert message.startswith("teardown of green failed at green-other: "), message
    assert "scale can only be used with replicated" in message, message  # the engine's words
    assert message.endswith("; scaled to 0 already: green-api"), message
