"""A Prometheus on this host, as ``scripts/local_stack.py`` runs one (and the tests): started in
the background with its own configuration, storage and address, found again through its pid
file, stopped. Linux only (``/proc``); imports nothing of ours but ``local/haproxy.py``. The
Pushgateway beside it and ``bluegreen dashboard`` (on 127.0.0.1:10201) are run the same way.

Idempotent: ``start()`` when ours already runs returns its pid; ``stop()`` when none runs does
nothing. A pid file whose process is gone, or is not our Prometheus (a pid reused by another
program: its command line must name our configuration), counts as none. Another process on the
address is refused before anything starts, with one line naming it; a Prometheus that exits
during its start (a bad configuration) or is not ready by the deadline raises with the last
lines of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pytest_bluegreen.errors import BluegreenError, ExitCode

from .haproxy import Served, holder_of

__all__ = ["LocalDashboard", "LocalPrometheus", "LocalPrometheusError", "LocalPushgateway"]


class LocalPrometheusError(BluegreenError, RuntimeError):
    """Prometheus could not be started (or stopped); the message says why in one line or two.
    Outside any gated run (scripts/local_stack.py's Prometheus and Pushgateway)."""

    exit_code = ExitCode.INTERNAL_ERROR


@dataclass(frozen=True)
class LocalPrometheus:
    """One Prometheus process: ``config`` (its ``prometheus.yml``), ``storage`` (the TSDB
    folder), ``listen`` (``127.0.0.1:10200``), ``pidfile`` and ``log``."""

    config: Path
    storage: Path
    listen: str
    pidfile: Path
    log: Path
    binary: str = "prometheus"
    retention: str = "7d"
    INSTALLED_BY: ClassVar[str] = "scripts/setup installs Debian's prometheus"
    NAME: ClassVar[str] = "Prometheus"  # what a message calls it

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def command(self, binary: str | None = None) -> list[str]:
        return [
            binary or self.binary,
            f"--config.file={self.config.resolve()}",
            f"--storage.tsdb.path={self.storage.resolve()}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={self.listen}",
            "--web.enable-lifecycle",  # POST /-/reload after an edit of the configuration
        ]

    def pid(self) -> int | None:
        """The pid of our Prometheus when it runs (its pid file's, a live process whose
        command line names our configuration); None otherwise."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if stat.rpartition(")")[2].split()[:1] == ["Z"]:  # exited, not reaped yet
            return False
        return self.identity().encode() in argv

    def identity(self) -> str:
        """The argument that tells our process from any other of the same program."""
        return f"--config.file={self.config.resolve()}"

    def ready(self) -> bool:
        """Prometheus answers ``/-/ready`` with 200 (its storage loaded, serving queries)."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:  # noqa: S310 - our own http URL
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self, timeout: float = 30.0) -> tuple[int, bool]:
        """Start Prometheus unless ours runs; wait until it is ready. Returns its pid and
        whether it was started now."""
        running = self.pid()
        if running is not None:
            return running, False
        binary = shutil.which(self.binary)
        if binary is None:
            raise LocalPrometheusError(f"{self.binary} is not installed ({self.INSTALLED_BY})")
        host, _, port = self.listen.rpartition(":")
        holder = holder_of(Served(tcp=((host, int(port)),)))
        if holder is not None:
            raise LocalPrometheusError(
                f"{holder.describe()}: stop it, or give {self.NAME} another address"
            )
        self.storage.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                self.command(binary),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the command that started it
            )
        self.pidfile.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + timeout
        while not self.ready():
            if process.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise LocalPrometheusError(
                    f"{self.binary} exited {process.returncode} while starting: {self.last_error()}"
                )
            if time.monotonic() >= deadline:
                self._stop(process.pid, 10.0)
                raise LocalPrometheusError(
                    f"{self.binary} was not ready on {self.url} after {timeout:g}s: "
                    f"{self.last_error()}"
                )
            time.sleep(0.05)
        return process.pid, True

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop our Prometheus (SIGTERM, then SIGKILL after ``timeout``); False when none ran."""
        pid = self.pid()
        self.pidfile.unlink(missing_ok=True)
        if pid is None:
            return False
        self._stop(pid, timeout)
        return True

    def _stop(self, pid: int, timeout: float) -> None:
        """SIGTERM (Prometheus closes its storage cleanly), SIGKILL after ``timeout``."""
        for sent in (signal.SIGTERM, signal.SIGKILL):
            os.kill(pid, sent)
            deadline = time.monotonic() + timeout
            while self._alive(pid):
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            else:
                return
        raise LocalPrometheusError(f"{self.binary} (pid {pid}) did not stop")

    def _alive(self, pid: int) -> bool:
        # reap it when it is our child (the tests), so it does not linger as a zombie: also
        # once it no longer looks like ours (a zombie has no command line), as it may have
        # died between the first wait and that look
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if self._is_ours(pid):
            return True
        _reap(pid)
        return False

    def last_error(self) -> str:
        """The log's last line that says what went wrong (or its last line)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            if "level=error" in line or "err=" in line:
                return line.strip()
        return lines[-1].strip() if lines else "nothing in the log"


@dataclass(frozen=True)
class LocalPushgateway(LocalPrometheus):
    """A Pushgateway beside it (Debian's ``prometheus-pushgateway``), for the gate's own
    metrics (``metrics_push_url``): ``storage`` holds its persistence file, so what was pushed
    survives a restart; ``config`` is not used."""

    binary: str = "prometheus-pushgateway"
    NAME: ClassVar[str] = "the Pushgateway"

    @property
    def persistence(self) -> Path:
        return self.storage / "pushgateway.db"

    def identity(self) -> str:
        return f"--persistence.file={self.persistence.resolve()}"

    def command(self, binary: str | None = None) -> list[str]:
        return [
            binary or self.binary,
            f"--web.listen-address={self.listen}",
            self.identity(),
            "--persistence.interval=5s",
        ]


@dataclass(frozen=True)
class LocalDashboard(LocalPrometheus):
    """``bluegreen dashboard`` in the background, drawing ``prometheus``: ``config`` is the
    deployment's settings file (its state file, its ``[dashboard]`` series, its charting
    library), whose folder's ``checks/`` holds the hooks; ``storage`` is not used; ready when
    it answers ``/-/ready``. A missing charting library ends it at once, its one line the
    error."""

    prometheus: str = "http://127.0.0.1:10200"
    binary: str = str(Path(sys.executable).with_name("bluegreen"))  # this environment's
    INSTALLED_BY: ClassVar[str] = "scripts/setup installs the package into .venv"
    NAME: ClassVar[str] = "the dashboard"

    def identity(self) -> str:
        return f"--listen={self.listen}"

    def command(self, binary: str | None = None) -> list[str]:
        return [
            binary or self.binary,
            f"--config={self.config.resolve()}",
            f"--checks={self.config.resolve().parent / 'checks'}",
            "dashboard",
            self.identity(),
            f"--prometheus={self.prometheus}",
        ]

    def last_error(self) -> str:
        """Its last line that says what went wrong (``bluegreen: error: ...``)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        said = [line for line in lines if line.startswith("bluegreen: error:")]
        return (said or lines or ["nothing in the log"])[-1].strip()


def _reap(pid: int, timeout: float = 5.0) -> None:
    """When ``pid`` is our child that no longer looks like ours, it is exiting (its command
    line goes before it is a zombie): wait until it is reaped, not only until it looks gone.
    Not our child (Prometheus started by another command): nothing to reap."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done == pid or time.monotonic() >= deadline:
            return
        time.sleep(0.01)
