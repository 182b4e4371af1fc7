"""The gate lock against other local users, and one lock per HAProxy however it is reached.

The attacks run as a real unprivileged user (``runuser -u nobody``) against the lock a root
gate takes; the spellings of one HAProxy (``127.0.0.1:P``, ``localhost:P``, its unix socket)
are those of a real HAProxy, reloaded between two gates' attempts.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.haproxy.instances import Haproxies
from pytest_bluegreen.haproxy.lock import HaproxyLock, lock_for, lock_for_group, lock_keys
from pytest_bluegreen.haproxy.lockfile import GateLock, LockHeld, LockLost, UnsafeLock
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.record import history
from pytest_bluegreen.report.metrics import write_textfile
from tests.support.cli import BLUEGREEN, clean_environ
from tests.support.faults import RuntimeApiProxy
from tests.support.gate import CHECKS
from tests.support.infra import require_infra
from tests.support.stack import Stack, wait_for

GATE_ARGS = ["--env", "green", "--switch"]


# --- another local user ----------------------------------------------------------------------


@pytest.fixture
def shared_dir(pytestconfig: pytest.Config) -> Iterator[Path]:
    """A folder like /run/lock: root's, world-writable, sticky; nobody can reach it."""
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    require_infra(
        pytestconfig,
        os.geteuid() == 0 and runuser is not None,
        "needs root and runuser to act as another user",
    )
    folder = Path(tempfile.mkdtemp(prefix="bluegreen-lock-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(code: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Python ``code`` run by the unprivileged user ``nobody`` (the system Python)."""
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


PLANT = """
import os, sys
folder, mode, target, link = sys.argv[1:]
if not os.path.isdir(folder):
    os.mkdir(folder)
    os.chmod(folder, int(mode, 8))
os.symlink(target, link)
"""


@pytest.mark.parametrize(
    ("maker", "mode"),
    [("nobody", "0777"), ("nobody", "0755"), ("root", "0777"), ("root", "1777")],
    ids=["nobody-0777", "nobody-0755", "root-0777", "root-sticky-1777"],
)
def test_a_lock_folder_another_user_can_change_is_refused(
    shared_dir: Path, maker: str, mode: str
) -> None:
    """``nobody`` makes the lock folder first (or finds one open to all) and plants a symbolic
    link at the predictable lock name: the root gate refuses in one line and writes nothing
    (it used to follow the link, truncate the file and write its pid into it)."""
    victim = shared_dir / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    lock_dir = shared_dir / "locks"
    if maker == "root":
        lock_dir.mkdir()
        lock_dir.chmod(int(mode, 8))
    lock = lock_for(lock_dir, "127.0.0.1:9999")
    planted = as_nobody(PLANT, lock_dir, mode, victim, lock.path)
    assert planted.returncode == 0, planted.stderr
    assert lock.path.is_symlink()

    with pytest.raises(UnsafeLock, match=f"^the lock folder {re.escape(str(lock_dir))}") as caught:
        lock.acquire()
    message = str(caught.value)
    assert "\n" not in message
    assert f"the lock folder {lock_dir}" in message
    assert "belongs to nobody" in message if maker == "nobody" else "writable by" in message
    assert not lock.held
    assert victim.read_text() == "precious\n"  # nothing followed, truncated or written


def test_nobody_can_delete_a_held_lock_in_a_folder_they_made(shared_dir: Path) -> None:
    """The folder ``nobody`` made first: a gate there could lose its lock to an ``rm``, and a
    second gate would run beside it. The first gate refuses to start instead."""
    lock_dir = shared_dir / "locks"
    made = as_nobody(
        "import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o755)", lock_dir
    )
    assert made.returncode == 0, made.stderr
    first, second = lock_for(lock_dir, "127.0.0.1:9999"), lock_for(lock_dir, "127.0.0.1:9999")
    try:
        with pytest.raises(UnsafeLock, match="belongs to nobody"):
            first.acquire()
    finally:  # today's code took it: show what nobody can do then
        if first.held:
            as_nobody("import os, sys; os.unlink(sys.argv[1])", first.path)
            second.acquire()
    assert not (first.held and second.held), "two gates hold the lock of one HAProxy"


HOLD_IT = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as exc:
    print("DENIED", exc.strerror, flush=True)
    raise SystemExit(0)
print("HELD", flush=True)
sys.stdin.read()
"""


def test_no_other_user_can_hold_the_lock_to_block_every_gate(shared_dir: Path) -> None:
    lock_dir = shared_dir / "bluegreen"
    lock = lock_for(lock_dir, "127.0.0.1:9999")
    with lock.hold():  # the first gate makes the folder and the file
        pass
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
    blocker = subprocess.Popen(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", HOLD_IT, str(lock.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert blocker.stdout is not None
        said = blocker.stdout.readline().strip()
        assert said.startswith("DENIED"), said
        with lock.hold():  # the next gate is not blocked
            assert lock.held
    finally:
        blocker.kill()
        blocker.communicate(timeout=30)


def test_a_lock_file_left_open_to_others_is_made_private(tmp_path: Path) -> None:
    """A lock file an older version made 0644: the next gate makes it 0600."""
    lock = lock_for(tmp_path / "locks", "127.0.0.1:9999")
    lock.path.parent.mkdir(mode=0o700)
    lock.path.write_text("pid 1 on elsewhere since then\n")
    lock.path.chmod(0o644)
    with lock.hold():
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert lock.path.read_text().startswith(f"pid {os.getpid()} ")


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = lock_for(tmp_path / "locks", "127.0.0.1:9999")
    lock.path.parent.mkdir(mode=0o700)
    lock.path.symlink_to(victim)
    with pytest.raises(UnsafeLock, match="is a symbolic link"):
        lock.acquire()
    assert victim.read_text() == "precious\n"


def test_a_lock_folder_inside_a_folder_others_may_change_is_refused(shared_dir: Path) -> None:
    """``nobody`` could rename a lock folder away from inside a folder open to all (not
    sticky) and make another: the gate refuses it."""
    open_to_all = shared_dir / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    lock = lock_for(open_to_all / "locks", "127.0.0.1:9999")
    with pytest.raises(UnsafeLock, match=f"is inside {open_to_all}, which"):
        lock.acquire()


@pytest.fixture
def umask_0002() -> Iterator[None]:
    """The umask of a user with a group of their own (Debian/Ubuntu's login default)."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_0002")
def test_the_folders_a_gate_makes_for_its_lock_are_not_group_writable(tmp_path: Path) -> None:
    """``lock_dir`` whose parents do not exist yet, with umask 0002: the gate made them 0775
    (``mkdir -p``) and then refused the folder it had just made ('inside ..., which ... may
    change (mode 0775)'), on every run."""
    top = tmp_path / "made"
    lock = lock_for(top / "by" / "the-gate" / "locks", "127.0.0.1:9999")
    with lock.hold():
        assert lock.path.exists()
    for folder in (top, top / "by", top / "by" / "the-gate"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert stat.S_IMODE(lock.path.parent.stat().st_mode) == 0o700
    with lock.hold():  # and the next run too
        pass


def test_a_lock_folder_this_user_cannot_open_says_what_to_do(shared_dir: Path) -> None:
    """``nobody``'s gate at a folder root made (0700), as /run/bluegreen after a root gate:
    one line with the way out, not only 'Permission denied'."""
    folder = shared_dir / "bluegreen"
    folder.mkdir(mode=0o700)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pytest_bluegreen.errors import Refused\n"
        "from pytest_bluegreen.haproxy.lock import lock_for\n"
        "try:\n"
        "    lock_for(Path(sys.argv[1]), '127.0.0.1:9999').acquire()\n"
        "except Refused as exc:\n"
        "    print(exc)\n"
    )
    # the system Python with this checkout and its packages (the venv's may be root's alone)
    path = [str(Path(history.__file__).parents[1]), str(Path(pytest.__file__).parents[1])]
    env = f"PYTHONPATH={os.pathsep.join(path)}"
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", env, "/usr/bin/python3", "-c", code, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"cannot open the lock folder {folder}: Permission denied" in result.stdout
    assert "install -d -m 0700 -o USER /run/bluegreen" in result.stdout


def test_a_lock_removed_between_open_and_flock_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name removed between the gate's open and its flock: the gate must not hold a lock
    on a file no name leads to (a second gate would take the new one beside it)."""
    lock = lock_for(tmp_path / "locks", "127.0.0.1:9999")
    real_flock = fcntl.flock
    removed: list[int] = []

    def racing_flock(fd: int, operation: int) -> None:
        if not removed:
            removed.append(fd)
            lock.path.unlink()  # someone removes it just before the flock
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    lock.acquire()
    monkeypatch.undo()
    try:
        assert removed
        with pytest.raises(LockHeld):
            lock_for(tmp_path / "locks", "127.0.0.1:9999").acquire()
    finally:
        lock.release()


def test_a_holder_whose_lock_was_removed_knows_it(tmp_path: Path) -> None:
    first = lock_for(tmp_path / "locks", "127.0.0.1:9999")
    first.acquire()
    first.verify()  # still ours
    first.path.unlink()  # root, or this user, removes the held lock
    second = GateLock(first.path)
    second.acquire()  # a gate started since takes the new one
    try:
        with pytest.raises(LockLost, match="was removed or replaced while this gate held it"):
            first.verify()
        second.verify()
    finally:
        second.release()
        first.release()


def _write_history(path: Path) -> None:
    history.append(path, history.HistoryEntry.now(from_color=None, to_color="green", tag=None,
                                              outcome=history.Outcome.NOOP))  # fmt: skip


def _write_textfile(path: Path) -> None:
    write_textfile(path, lambda previous: [])


@pytest.mark.parametrize(
    ("lock_name", "write"),
    [(".state.json.lock", _write_history), (".bluegreen.prom.lock", _write_textfile)],
    ids=["history", "metrics-textfile"],
)
def test_the_other_lock_files_follow_no_link_and_are_this_users(
    tmp_path: Path, lock_name: str, write: Any
) -> None:
    """The lock files beside the history and the metrics textfile: a symbolic link planted at
    the name is not followed (nothing is created where it points), another user's file is not
    used (they could hold it and block every gate), and ours is 0600."""
    folder = tmp_path / "files"
    folder.mkdir()
    guarded = folder / ("state.json" if lock_name.startswith(".state") else "bluegreen.prom")
    target = tmp_path / "made-through-the-link"
    (folder / lock_name).symlink_to(target)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        write(guarded)  # ELOOP: O_NOFOLLOW
    assert not target.exists()
    (folder / lock_name).unlink()
    (folder / lock_name).touch()
    if os.geteuid() == 0:
        os.chown(folder / lock_name, 65534, 65534)  # nobody's
        with pytest.raises(PermissionError, match="not a plain file of this user's"):
            write(guarded)
        (folder / lock_name).unlink()
    write(guarded)
    assert guarded.exists()
    assert stat.S_IMODE((folder / lock_name).stat().st_mode) == 0o600


# --- gates on a real HAProxy ---------------------------------------------------------------------

PAUSED = (
    CHECKS
    + """

import pathlib, time


def test_wait_for_go():
    here = pathlib.Path(__file__).parent
    (here / "waiting").touch()
    deadline = time.monotonic() + 120
    while not (here / "go").exists():
        assert time.monotonic() < deadline, "never told to go"
        time.sleep(0.01)
"""
)


class PausedGate:
    """``pytest --env green --switch`` in ``folder``, stopped in its checks until :meth:`go`."""

    def __init__(self, folder: Path, stack: Stack, **settings: Any) -> None:
        folder.mkdir(exist_ok=True)
        (folder / "bluegreen.toml").write_text(stack.settings_toml(**settings))
        (folder / "test_checks.py").write_text(PAUSED)
        self.folder = folder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *GATE_ARGS],
            cwd=folder,
            env=clean_environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(
            lambda: (folder / "waiting").exists() or self.proc.poll() is not None,
            90,
            "the gate to reach its checks",
        )
        assert self.proc.poll() is None, self.proc.communicate()[0]

    def go(self) -> tuple[int, str]:
        (self.folder / "go").touch()
        out, _ = self.proc.communicate(timeout=120)
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def bluegreen(
    folder: Path, stack: Stack, *args: str, **settings: Any
) -> subprocess.CompletedProcess[str]:
    folder.mkdir(exist_ok=True)
    (folder / "bluegreen.toml").write_text(stack.settings_toml(**settings))
    return subprocess.run(
        [*BLUEGREEN, *args],
        cwd=folder,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_gate_whose_lock_was_removed_does_not_switch(tmp_path: Path, stack: Stack) -> None:
    """Someone removes the lock a gate holds while its checks run, and another gate takes a
    new one: the first gate refuses to switch (exit 7), traffic stays where it is."""
    gate = PausedGate(tmp_path / "a", stack)
    try:
        taken = sorted(stack.lock_dir.glob("*.lock"))
        assert taken
        for path in taken:
            path.unlink()
        other = lock_for_group(stack.lock_dir, lock_keys(stack.haproxies()))
        with other.hold():  # the other gate, in its checks
            code, out = gate.go()
    finally:
        gate.kill()
    assert code == 7, out
    assert "was removed or replaced while this gate held it" in out
    assert stack.served_color() == "blue"


def keys_at(address: str) -> tuple[str, ...]:
    """The gate lock's keys of the one HAProxy reached at ``address``."""
    return lock_keys(Haproxies.single(RuntimeApi(address)))


def spellings(stack: Stack) -> dict[str, str]:
    port = stack.ports["runtime"]
    return {
        "tcp": stack.runtime,
        "localhost": f"localhost:{port}",
        "unix": f"unix:{stack.socket_path}",
        "path": str(stack.socket_path),
    }


def test_one_haproxy_one_lock_whichever_address_reaches_it(stack: Stack) -> None:
    """127.0.0.1:P, localhost:P and the unix socket of the same process share the lock, also
    when HAProxy reloads (a new pid) between two gates' attempts."""
    names = spellings(stack)
    for held in names.values():
        with lock_for_group(stack.lock_dir, keys_at(held)).hold():
            for other in names.values():
                if other == held:
                    continue
                with pytest.raises(LockHeld):
                    lock_for_group(stack.lock_dir, keys_at(other)).acquire()
    pid = stack.api().show_info()["Pid"]
    with lock_for_group(stack.lock_dir, keys_at(names["tcp"])).hold():
        stack.haproxy.reload(stack.runtime)
        assert stack.api().show_info()["Pid"] != pid
        for name in ("unix", "localhost"):
            with pytest.raises(LockHeld):
                lock_for_group(stack.lock_dir, keys_at(names[name])).acquire()


@pytest.mark.parametrize("spelling", ["unix", "localhost"])
def test_a_gate_at_another_address_of_the_same_haproxy_is_refused(
    tmp_path: Path, stack: Stack, spelling: str
) -> None:
    """Gate A at 127.0.0.1:P in its checks; HAProxy reloads; gate B at the unix socket (or
    localhost:P) of the same HAProxy is refused (exit 7, nothing changed); A then switches."""
    gate = PausedGate(tmp_path / "a", stack)
    try:
        stack.haproxy.reload(stack.runtime)
        other = bluegreen(
            tmp_path / "b",
            stack,
            "switch-to",
            "green",
            "--force",
            runtime_api=spellings(stack)[spelling],
        )
        assert other.returncode == 7, other.stdout + other.stderr
        assert "another gate holds" in other.stderr
        assert stack.served_color() == "blue"
        code, out = gate.go()
    finally:
        gate.kill()
    assert code == 0, out
    assert stack.served_color() == "green"


@pytest.mark.parametrize("spelling", ["unix", "localhost"])
def test_one_haproxy_named_twice_in_instances_is_refused(
    tmp_path: Path, stack: Stack, spelling: str
) -> None:
    folder = tmp_path / "twice"
    folder.mkdir()
    text = stack.settings_toml(
        runtime_api=None, routed_api_url=None, routed_frontend_url=None, haproxy_state_file=None
    )
    for name, address in (("lb-1", stack.runtime), ("lb-2", spellings(stack)[spelling])):
        text += (
            f'[instances."{name}"]\nruntime_api = "{address}"\n'
            f'routed_api_url = "{stack.routed_url}"\n'
        )
    (folder / "bluegreen.toml").write_text(text)
    (folder / "test_checks.py").write_text(CHECKS)
    before = stack.live_weights()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--env", "green", "--switch"],
        cwd=folder,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 4, out
    line = f"instances lb-1 ({stack.runtime}) and lb-2 ("
    assert line in out
    assert "are one HAProxy" in out
    assert "name it once in [instances]" in out
    assert "Traceback" not in out
    assert stack.live_weights() == before


def test_a_gate_that_could_not_read_its_haproxy_at_first_still_shares_its_lock(
    tmp_path: Path, stack: Stack
) -> None:
    """Gate A's first ``show info`` gets no answer (a Runtime API timeout, a restart): it
    cannot list HAProxy's sockets when it takes its lock, so it holds only its address's key.
    HAProxy answers again and A goes on to its checks. Gate B at the unix socket of the same
    HAProxy must still be refused (exit 7), and A then switches."""
    proxy = RuntimeApiProxy(("127.0.0.1", stack.ports["runtime"]))
    proxy.lose_answers("show info")
    try:
        gate = PausedGate(tmp_path / "a", stack, runtime_api=proxy.address)
        try:
            assert proxy.lost == ["show info"]
            other = bluegreen(
                tmp_path / "b",
                stack,
                "switch-to",
                "green",
                "--force",
                runtime_api=str(stack.socket_path),
            )
            assert other.returncode == 7, other.stdout + other.stderr
            assert "another gate holds" in other.stderr
            assert stack.served_color() == "blue"
            code, out = gate.go()
        finally:
            gate.kill()
    finally:
        proxy.close()
    assert code == 0, out
    assert stack.served_color() == "green"


def test_a_gate_that_cannot_read_its_haproxy_twice_checks_the_lock_again_before_switching(
    tmp_path: Path, stack: Stack
) -> None:
    """Gate A's ``show info`` gets no answer when it takes its lock and again right after,
    so it holds only its address's key while another gate, at the unix socket, holds the
    HAProxy's. Before it switches A reads the keys again: it is refused (exit 7, nothing
    changed) while the other gate holds them."""
    proxy = RuntimeApiProxy(("127.0.0.1", stack.ports["runtime"]))
    proxy.lose_answers("show info", "show info")
    try:
        gate = PausedGate(tmp_path / "a", stack, runtime_api=proxy.address)
        try:
            assert proxy.lost == ["show info", "show info"]
            other = HaproxyLock(
                stack.lock_dir, Haproxies.single(RuntimeApi(str(stack.socket_path)))
            )
            with other.hold():  # the other gate, in its checks
                code, out = gate.go()
        finally:
            gate.kill()
    finally:
        proxy.close()
    assert code == 7, out
    assert "another gate holds" in out
    assert stack.served_color() == "blue"
