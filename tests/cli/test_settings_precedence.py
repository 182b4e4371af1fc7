"""Which settings the ``bluegreen`` command itself uses, each layer against the ones below it
(docs/settings.md: CLI > ``BLUEGREEN_*`` environment > pytest ini > settings file > default),
and list values written in the environment: asserted by what the command did on real HAProxy
processes, one per layer (the Runtime API it read and switched, the history file it wrote, the
servers it moved, the webhooks it notified), for ``status``, ``switch-to`` (forced in the
command, checked in its pytest child) and ``deploy --dry-run``."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.answers import ServerRef
from tests.support.cli import BLUEGREEN
from tests.support.gate import CHECKS
from tests.support.receiver import Receiver
from tests.support.stack import ROOT, Stack, StackFactory, free_ports

WORDS = {
    "CLI": "cli",
    "environment variable": "env",
    "pytest ini": "ini",
    "settings file": "file",
    "default": "default",
}


def documented_order() -> list[str]:
    """docs/settings.md's order, highest first: ``CLI > environment variable > ...``."""
    found = re.search(
        r"in the order \*\*(.+?)\*\*", (ROOT / "docs" / "settings.md").read_text(), re.S
    )
    assert found is not None
    return [WORDS[" ".join(word.split())] for word in found[1].split(">")]


# the layers a test gives, lowest first (the default is not asked: it names the host's HAProxy)
LAYERS = tuple(reversed(documented_order()[:-1]))


def test_the_layers_are_the_documented_order() -> None:
    assert documented_order() == ["cli", "env", "ini", "file", "default"]
    assert LAYERS == ("file", "ini", "env", "cli")


@dataclass(frozen=True)
class Named:
    """What a layer names: a Runtime API, a routed URL and a history file (a Stack has them
    too). One that is not a real HAProxy names an address nothing listens on: a command that
    used it would fail to connect."""

    runtime: str
    routed_url: str
    state_file: Path


@pytest.fixture
def named(tmp_path: Path) -> dict[str, Named]:
    """Each layer's own (unanswered) Runtime API, routed URL and history file."""
    ports = iter(free_ports(2 * len(LAYERS)))
    made = {}
    for layer in LAYERS:
        (tmp_path / layer).mkdir(exist_ok=True)
        made[layer] = Named(
            f"127.0.0.1:{next(ports)}",
            f"http://127.0.0.1:{next(ports)}",
            tmp_path / layer / "history.json",
        )
    return made


def layers(named: dict[str, Named], factory: StackFactory, *real: str) -> dict[str, Named | Stack]:
    """The layers, those in ``real`` a real HAProxy each (blue live)."""
    return {layer: factory(layer) if layer in real else one for layer, one in named.items()}


def deployment(folder: Path, template: Stack, file: Named | Stack) -> Path:
    """A deployment's folder: bluegreen.toml (``template``'s colors, the Runtime API, routed
    URL and history ``file`` names) and checks/."""
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(
        template.settings_toml(
            runtime_api=file.runtime,
            routed_api_url=file.routed_url,
            state_file=str(file.state_file),
        )
    )
    (folder / "checks").mkdir(exist_ok=True)
    (folder / "checks" / "test_checks.py").write_text(CHECKS)
    return folder


def ini(folder: Path, layer: Named | Stack) -> None:
    """The pytest ini of the folder names ``layer``'s Runtime API, routed URL and history."""
    (folder / "pytest.ini").write_text(
        f"[pytest]\nbluegreen_runtime_api = {layer.runtime}\n"
        f"bluegreen_routed_api_url = {layer.routed_url}\n"
        f"bluegreen_state_file = {layer.state_file}\n"
    )


def environ(layer: Named | Stack, **more: str) -> dict[str, str]:
    """The environment naming ``layer``'s Runtime API, routed URL and history."""
    return {
        "BLUEGREEN_RUNTIME_API": layer.runtime,
        "BLUEGREEN_ROUTED_API_URL": layer.routed_url,
        "BLUEGREEN_STATE_FILE": str(layer.state_file),
        **more,
    }


def bluegreen(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    return subprocess.run(
        [*BLUEGREEN, *args],
        cwd=folder,
        env={**clean, **(env or {}), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def outcomes(layer: Named | Stack) -> list[str]:
    if not layer.state_file.exists():
        return []
    return [e["outcome"] for e in json.loads(layer.state_file.read_text())["history"]]


def histories(lbs: dict[str, Named | Stack]) -> dict[str, list[str]]:
    return {layer: outcomes(one) for layer, one in lbs.items()}


# --- each layer over the ones below it ----------------------------------------------------------


@pytest.mark.parametrize("top", LAYERS)
def test_status_reads_the_runtime_api_of_the_highest_layer(
    tmp_path: Path, named: dict[str, Named], stack_factory: StackFactory, top: str
) -> None:
    """Every layer up to ``top`` names its own Runtime API; status reads the one ``top``
    names (a real HAProxy: the others answer nothing)."""
    lbs = layers(named, stack_factory, top)
    real = lbs[top]
    assert isinstance(real, Stack)
    folder = deployment(tmp_path / "deploy", real, lbs["file"])
    given = LAYERS[: LAYERS.index(top) + 1]
    if "ini" in given:
        ini(folder, lbs["ini"])
    env = environ(lbs["env"]) if "env" in given else {}
    cli = [f"--runtime-api={lbs['cli'].runtime}"] if "cli" in given else []
    result = bluegreen(folder, *cli, "status", "--json", env=env)
    assert result.returncode == 0, out(result)
    shown = json.loads(result.stdout)
    assert {i["address"] for i in shown["instances"].values()} == {real.runtime}
    assert shown["live"] == "blue"


def test_a_forced_switch_moves_the_environment_s_haproxy_and_writes_its_history(
    tmp_path: Path, named: dict[str, Named], stack_factory: StackFactory
) -> None:
    """The environment over the ini over the file, in the command's own process: the
    environment's HAProxy switched and its history written, no other."""
    lbs = layers(named, stack_factory, "env")
    env_lb = lbs["env"]
    assert isinstance(env_lb, Stack)
    folder = deployment(tmp_path / "deploy", env_lb, lbs["file"])
    ini(folder, lbs["ini"])
    result = bluegreen(folder, "switch-to", "green", "--force", env=environ(env_lb))
    assert result.returncode == 0, out(result)
    assert env_lb.served_color() == "green"
    assert histories(lbs) == {"file": [], "ini": [], "env": ["switched"], "cli": []}


def test_a_checked_switch_hands_the_command_line_over_the_environment_to_its_pytest_child(
    tmp_path: Path, named: dict[str, Named], stack_factory: StackFactory
) -> None:
    """``bluegreen --runtime-api=X switch-to green``: the command reads X, and so does the
    pytest child that checks and switches (``--routed-url`` handed through to it), although
    the environment and the file name other HAProxy processes; then the environment alone,
    through the child as well."""
    lbs = layers(named, stack_factory, "cli", "env")
    cli, env_lb = lbs["cli"], lbs["env"]
    assert isinstance(cli, Stack)
    assert isinstance(env_lb, Stack)
    folder = deployment(tmp_path / "deploy", cli, lbs["file"])
    result = bluegreen(
        folder,
        f"--runtime-api={cli.runtime}",
        "switch-to",
        "green",
        f"--routed-url={cli.routed_url}",
        env=environ(env_lb, BLUEGREEN_STATE_FILE=str(cli.state_file)),
    )
    assert result.returncode == 0, out(result)
    assert (cli.served_color(), env_lb.served_color()) == ("green", "blue")
    assert histories(lbs) == {"file": [], "ini": [], "env": [], "cli": ["switched"]}
    result = bluegreen(folder, "switch-to", "green", env=environ(env_lb))
    assert result.returncode == 0, out(result)
    assert (cli.served_color(), env_lb.served_color()) == ("green", "green")
    assert histories(lbs) == {"file": [], "ini": [], "env": ["switched"], "cli": ["switched"]}


def green_live(stack: Stack) -> None:
    """Green live on ``stack``, set through its Runtime API."""
    api = stack.api()
    for name in ("api", "frontend"):
        api.set_weight(ServerRef(f"{name}_backend", f"green-{name}"), 100)
        api.set_weight(ServerRef(f"{name}_backend", f"blue-{name}"), 0)
    assert stack.served_color() == "green"


@pytest.mark.parametrize(
    ("given", "code"),
    [
        pytest.param(("file",), 0, id="file"),
        pytest.param(("file", "env"), 7, id="env-over-file"),
        pytest.param(("file", "env", "cli"), 0, id="cli-over-env"),
    ],
)
def test_deploy_asks_the_haproxy_of_the_highest_layer(
    tmp_path: Path,
    named: dict[str, Named],
    stack_factory: StackFactory,
    given: tuple[str, ...],
    code: int,
) -> None:
    """``deploy --dry-run`` asks HAProxy whether the target takes traffic (a deploy over the
    live color is refused): green is live on the environment's HAProxy, not on the file's;
    the command line names the file's again."""
    lbs = layers(named, stack_factory, "file", "env")
    file_lb, env_lb = lbs["file"], lbs["env"]
    assert isinstance(file_lb, Stack)
    assert isinstance(env_lb, Stack)
    green_live(env_lb)
    folder = deployment(tmp_path / "deploy", file_lb, file_lb)
    env = environ(env_lb) if "env" in given else {}
    cli = [f"--runtime-api={file_lb.runtime}"] if "cli" in given else []
    result = bluegreen(
        folder, *cli, "deploy", "--target-color", "green", "--deployment-tag", "v1.1.0",
        "--dry-run", env=env,
    )  # fmt: skip
    assert result.returncode == code, out(result)
    first = result.stdout.splitlines()[0]
    if code:
        assert first.startswith("bluegreen: dry run: would refuse: refused: green takes traffic")
    else:
        assert first.startswith("bluegreen: dry run: would deploy green at v1.1.0")
        assert first.endswith("then leave traffic on blue")


# --- lists written in the environment -----------------------------------------------------------


def test_lists_from_the_environment_are_comma_separated(tmp_path: Path, stack: Stack) -> None:
    """``BLUEGREEN_BACKUP_COMMAND`` (the words of a command; the dry run says the backup it
    would take: it said "a backup first" even with none configured or skip_backup set),
    ``BLUEGREEN_<COLOR>_SERVERS`` (the api servers only: the frontend stays where it is) and
    ``BLUEGREEN_NOTIFY`` (two webhooks, a comma and a space between them)."""
    file_lb = stack
    deploy = deployment(tmp_path / "deploy", stack, stack)
    backup = {
        "BLUEGREEN_BACKUP_SERVICE": "postgres",
        "BLUEGREEN_BACKUP_COMMAND": "pg_dump,-U,app,--no-owner,app",
    }
    dry = bluegreen(
        deploy, "deploy", "--target-color", "green", "--deployment-tag", "v1.1.0", "--dry-run",
        env=backup,
    )  # fmt: skip
    assert dry.returncode == 0, out(dry)
    assert "(a backup first: pg_dump -U app --no-owner app in postgres)" in dry.stdout
    # BLUEGREEN_SKIP_BACKUP holds for bluegreen deploy as --skip-backup does
    skipped = bluegreen(
        deploy, "deploy", "--target-color", "green", "--deployment-tag", "v1.1.0", "--dry-run",
        env={**backup, "BLUEGREEN_SKIP_BACKUP": "1"},
    )  # fmt: skip
    assert skipped.returncode == 0, out(skipped)
    assert "(no backup first (skip_backup))" in skipped.stdout
    hooks = [Receiver(), Receiver()]
    try:
        env = {
            "BLUEGREEN_BLUE_SERVERS": "api_backend/blue-api",
            "BLUEGREEN_GREEN_SERVERS": " api_backend/green-api ,",
            "BLUEGREEN_NOTIFY": f"{hooks[0].url()}, {hooks[1].url()}",
        }
        status = bluegreen(deploy, "status", "--json", env=env)
        assert status.returncode == 0, out(status)
        servers = json.loads(status.stdout)["colors"]
        assert [s["server"] for s in servers["green"]["servers"]] == ["api_backend/green-api"]
        assert [s["server"] for s in servers["blue"]["servers"]] == ["api_backend/blue-api"]
        result = bluegreen(deploy, "switch-to", "green", "--force", env=env)
        assert result.returncode == 0, out(result)
        assert file_lb.served_color() == "green"
        frontend = requests.get(f"http://127.0.0.1:{file_lb.ports['frontend']}/health", timeout=5)
        assert frontend.headers["X-Bluegreen-Color"] == "blue"  # not in the servers: not moved
        assert [[e["event"] for e in hook.events()] for hook in hooks] == [["switched"]] * 2
    finally:
        for hook in hooks:
            hook.close()


@pytest.mark.parametrize(
    ("written", "said"),
    [
        pytest.param("pg_dump -U app app", "'pg_dump -U app app'", id="spaces"),
        pytest.param(" ,", "expected a non-empty list", id="empty"),
    ],
)
def test_a_backup_command_written_as_one_line_is_refused(
    tmp_path: Path, written: str, said: str
) -> None:
    """A command line in one item (the natural shell spelling) would fail only at the backup,
    after the lock and before the deploy; it is refused at once, saying how to write it."""
    deploy = tmp_path
    (deploy / "bluegreen.toml").write_text('runtime_api = "127.0.0.1:9"\n')
    result = bluegreen(
        deploy, "deploy", "--target-color", "green", "--deployment-tag", "v1.1.0", "--dry-run",
        env={"BLUEGREEN_BACKUP_SERVICE": "postgres", "BLUEGREEN_BACKUP_COMMAND": written},
    )  # fmt: skip
    assert result.returncode == 4, out(result)
    [line] = result.stderr.splitlines()
    assert line.startswith("bluegreen: error: backup_command expected ")
    assert said in line
    assert line.endswith("(from env BLUEGREEN_BACKUP_COMMAND)")
