"""An HAProxy on this host (``pytest_bluegreen.local.haproxy``, ``scripts/local_stack.py``): a
second one is refused before anything starts, and a first start reads an empty server state
quietly. Real HAProxy processes on free loopback ports; never Docker (``DOCKER_HOST`` points
at nothing, so even a refusal that failed could not reach an engine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_bluegreen.local.haproxy import (
    EMPTY_SERVER_STATE,
    Served,
    holder_of,
    prepare_server_state_file,
)
from tests.support.stack import HAPROXY_CFG, ROOT, Stack

LOCAL_STACK = ROOT / "scripts" / "local_stack.py"


def served_by(stack: Stack) -> Served:
    return Served.by_config(HAPROXY_CFG, stack.haproxy.env)


def test_the_configuration_serves_the_stacks_addresses(stack: Stack) -> None:
    ports = stack.ports
    tcp = [ports[n] for n in ("runtime", "stats", "http", "https", "api", "frontend")]
    tcp += [ports["blue_direct"], ports["green_direct"]]
    assert served_by(stack).describe() == [
        *(f"127.0.0.1:{port}" for port in tcp),
        str(stack.socket_path),
    ]


def test_the_haproxy_serving_them_is_found_with_its_pid_and_config(stack: Stack) -> None:
    assert stack.haproxy.proc is not None
    pid = stack.haproxy.proc.pid
    configs = (str(HAPROXY_CFG), str(stack.workdir / "operator-socket.cfg"))
    holder = holder_of(served_by(stack))
    assert holder is not None
    assert (holder.pid, holder.program, holder.configs) == (pid, "haproxy", configs)
    assert holder.holds == tuple(served_by(stack).describe())
    # either alone is enough: one port, or the admin socket (bound as PATH.PID.tmp, renamed)
    one_port = holder_of(Served(tcp=(("127.0.0.1", stack.ports["api"]),)))
    assert one_port is not None
    assert (one_port.pid, one_port.holds) == (pid, (f"127.0.0.1:{stack.ports['api']}",))
    socket_only = holder_of(Served(sockets=(stack.socket_path,)))
    assert socket_only is not None
    assert (socket_only.pid, socket_only.holds) == (pid, (str(stack.socket_path),))
    assert holder_of(served_by(stack), ignore=[pid]) is None  # this checkout's own
    stack.stop()
    assert holder_of(served_by(stack)) is None


def test_local_stack_up_refuses_a_second_haproxy_before_starting_anything(stack: Stack) -> None:
    assert stack.haproxy.proc is not None
    env = {
        **os.environ,
        **stack.haproxy.env,
        "PYTHONPATH": str(ROOT),
        "DOCKER_HOST": f"unix://{stack.workdir}/no-docker-here.sock",
    }
    result = subprocess.run(
        [sys.executable, str(LOCAL_STACK), "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # nothing started: compose up says "[stack] shared services"
    assert result.stderr.splitlines() == [
        f"[stack] refused: an HAProxy (pid {stack.haproxy.proc.pid}, config {HAPROXY_CFG}, "
        f"{stack.workdir / 'operator-socket.cfg'}) already serves "
        f"127.0.0.1:{stack.ports['runtime']} (+8 more); "
        "stop it first (scripts/local_stack.py down in its checkout)"
    ]
    assert stack.haproxy.proc.poll() is None  # the first one untouched, still the only one
    holder = holder_of(served_by(stack))
    assert holder is not None
    assert holder.pid == stack.haproxy.proc.pid


def test_an_empty_state_file_is_read_without_a_warning(
    stack: Stack, haproxy_available: str, tmp_path: Path
) -> None:
    # the stack's HAProxy started on a state file prepared as scripts/local_stack.py does
    assert stack.server_state_file.read_text() == EMPTY_SERVER_STATE
    assert "server state file" not in stack.haproxy.log_text()

    def check(state_file: Path) -> str:
        """``haproxy -c`` reads the state file as a start does, and warns the same way."""
        env = {**os.environ, **stack.haproxy.env, "BG_SERVER_STATE_FILE": str(state_file)}
        result = subprocess.run(
            [haproxy_available, "-c", "-f", str(HAPROXY_CFG)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    path = tmp_path / "server-state"
    assert "Can't open global server state file" in check(path)
    path.touch()
    assert "Can't get version of the global server state file" in check(path)
    prepare_server_state_file(path)
    assert "server state file" not in check(path)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, EMPTY_SERVER_STATE),
        ("", EMPTY_SERVER_STATE),
        (
            "1\n# be_id be_name\n3 api_backend 1 blue-api\n",
            "1\n# be_id be_name\n3 api_backend 1 blue-api\n",
        ),
    ],
    ids=["missing", "zero-bytes", "saved"],
)
def test_only_a_missing_or_empty_state_file_is_written(
    tmp_path: Path, before: str | None, after: str
) -> None:
    path = tmp_path / "state" / "server-state"
    if before is not None:
        path.parent.mkdir()
        path.write_text(before)
    prepare_server_state_file(path)
    assert path.read_text() == after


def _preview_key_of_local_stack(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """What scripts/local_stack.py gives HAProxy as BG_PREVIEW_KEY, in a fresh process."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import local_stack; "
        "print(local_stack.haproxy_env().get('BG_PREVIEW_KEY'))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "BG_"))}
    return subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "scripts")],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_local_stack_gives_haproxy_the_key_of_the_secrets_file_the_settings_name(
    tmp_path: Path,
) -> None:
    """The checks send PREVIEW_KEY from the secrets file the settings name
    (BLUEGREEN_SECRETS_FILE, secrets_file, env_dir); HAProxy must get the same one, not the
    checkout's config/deploy/secrets.env (a CI job with the host's secrets file got two keys,
    and the preview route answered with the live color)."""
    theirs = tmp_path / "host-secrets.env"
    theirs.write_text("PREVIEW_KEY=the-host-s-own-preview-key-0123\n")
    named = _preview_key_of_local_stack(tmp_path, BLUEGREEN_SECRETS_FILE=str(theirs))
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip() == "the-host-s-own-preview-key-0123"
    # the caller's BG_PREVIEW_KEY wins, as every BG_* variable does
    caller = _preview_key_of_local_stack(
        tmp_path, BLUEGREEN_SECRETS_FILE=str(theirs), BG_PREVIEW_KEY="callers-key-0123456789"
    )
    assert caller.stdout.strip() == "callers-key-0123456789"
    # no key in the file: no route
    (tmp_path / "none.env").write_text("POSTGRES_PASSWORD=x\n")
    none = _preview_key_of_local_stack(tmp_path, BLUEGREEN_SECRETS_FILE=str(tmp_path / "none.env"))
    assert none.stdout.strip() == "None"
