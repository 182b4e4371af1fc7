"""An HAProxy on this host, as ``scripts/local_stack.py`` and the tests start one: the addresses
a configuration serves, the process already serving them, and the server-state file a first
start reads without a warning. Linux only (``/proc``); imports nothing of ours.

A second checkout starting a second HAProxy with the same configuration does not fail: HAProxy
binds with ``SO_REUSEPORT``, so both accept connections (traffic splits between two processes
with different weights) and the second takes the admin socket's path over. So look first."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EMPTY_SERVER_STATE", "Holder", "Served", "holder_of", "prepare_server_state_file"]

# ``show servers state``'s format version line and no server: a state file HAProxy reads
# quietly. A missing file makes it warn "Can't open global server state file", an empty one
# "Can't get version of the global server state file".
EMPTY_SERVER_STATE = "1\n"

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
_ACCEPTING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix: a listening socket
_VAR = re.compile(r"\$\{(\w+)\}")


def prepare_server_state_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its folder) as an empty server-state file, unless it has content."""
    target = Path(path)
    if not target.exists() or target.stat().st_size == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(EMPTY_SERVER_STATE)
    return target


@dataclass(frozen=True)
class Served:
    """What a configuration listens on: TCP addresses (host, port) and unix socket paths."""

    tcp: tuple[tuple[str, int], ...] = ()
    sockets: tuple[Path, ...] = ()

    @classmethod
    def by_config(cls, config: Path, env: Mapping[str, str]) -> Served:
        """The ``bind`` and ``stats socket`` addresses of ``config``, its ``${VARS}`` from
        ``env`` or the file's own ``presetenv`` defaults (blocks under ``.if defined(VAR)``
        only when VAR is set)."""
        values = dict(env)
        tcp: list[tuple[str, int]] = []
        sockets: list[Path] = []
        for words in _active_lines(config.read_text(), values):
            spec = _address_of(words)
            if spec is None:
                continue
            expanded = _VAR.sub(lambda m: values.get(m[1], ""), spec.strip('"'))
            for one in expanded.split(","):
                _add(one, tcp, sockets)
        return cls(tuple(dict.fromkeys(tcp)), tuple(dict.fromkeys(sockets)))

    def describe(self) -> list[str]:
        return [f"{host}:{port}" for host, port in self.tcp] + [str(s) for s in self.sockets]


def _active_lines(text: str, values: dict[str, str]) -> Iterator[list[str]]:
    """The words of each line of ``text`` that HAProxy would read: no comments, nothing under
    an ``.if defined(VAR)`` whose VAR is unset. ``setenv``/``presetenv`` lines are not given but
    set ``values`` as they go, so the lines after them see their variables."""
    skipping: list[bool] = []
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == ".if":
            wanted = re.fullmatch(r"defined\((\w+)\)", " ".join(words[1:]))
            skipping.append(wanted is not None and wanted[1] not in values)
            continue
        if words[0] == ".endif" and skipping:
            skipping.pop()
            continue
        if any(skipping):
            continue
        if words[0] in {"presetenv", "setenv"} and len(words) >= 3:
            if words[0] == "setenv" or words[1] not in values:
                values[words[1]] = " ".join(words[2:])
            continue
        yield words


def _address_of(words: list[str]) -> str | None:
    """The address a ``bind`` or ``stats socket`` line listens on; None for other lines."""
    if words[0] == "bind" and len(words) >= 2:
        return words[1]
    if words[:2] == ["stats", "socket"] and len(words) >= 3:
        return words[2]
    return None


def _add(spec: str, tcp: list[tuple[str, int]], sockets: list[Path]) -> None:
    spec = spec.strip()
    family, _, rest = spec.partition("@") if "@" in spec else ("", "", spec)
    if family == "unix" or rest.startswith("/"):
        sockets.append(Path(rest))
        return
    if family not in {"", "ipv4", "ipv6"} or ":" not in rest:
        return  # abns@, fd@, sockpair@: nothing another process could hold
    host, _, port = rest.rpartition(":")
    if port.isascii() and port.isdigit() and len(port.lstrip("0")) <= 5:
        tcp.append((host.strip("[]") or "*", int(port)))


@dataclass(frozen=True)
class Holder:
    """A process already serving some of the addresses."""

    pid: int | None  # None: another user's process, not visible here
    program: str  # its command's name: "haproxy", ...
    configs: tuple[str, ...]  # its -f arguments (absolute)
    holds: tuple[str, ...]  # the addresses it serves, of those asked about

    @property
    def is_haproxy(self) -> bool:
        return self.program.startswith("haproxy")

    def describe(self) -> str:
        """``an HAProxy (pid 812, config /srv/a/haproxy/haproxy.cfg) already serves
        127.0.0.1:8404 (+7 more)``; ``nginx (pid 90) already serves 127.0.0.1:80``"""
        more = f" (+{len(self.holds) - 1} more)" if len(self.holds) > 1 else ""
        pid = "unknown" if self.pid is None else self.pid
        if self.is_haproxy:
            who = f"an HAProxy (pid {pid}, config {', '.join(self.configs) or 'unknown'})"
        else:
            who = f"{self.program} (pid {pid})"
        return f"{who} already serves {self.holds[0]}{more}"


def holder_of(served: Served, *, ignore: Iterable[int] = ()) -> Holder | None:
    """The process listening on any of ``served``'s addresses (an HAProxy first), apart from
    the pids in ``ignore``; None when every address is free or held by those."""
    wanted = _listening(served)
    skip = set(ignore)
    held: dict[int | None, list[str]] = {}
    for inode, pids in _owners(wanted).items():
        for pid in pids - skip:
            if wanted[inode] not in held.setdefault(pid, []):
                held[pid].append(wanted[inode])
    order = served.describe()
    found = [_holder(pid, tuple(sorted(holds, key=order.index))) for pid, holds in held.items()]
    found.sort(key=lambda h: (not h.is_haproxy, h.pid is None, -len(h.holds)))
    return found[0] if found else None


def _listening(served: Served) -> dict[int, str]:
    """socket inode -> the address of ``served`` it listens on."""
    wanted: dict[int, str] = {}
    for inode, (host, port) in _tcp_listeners():
        for want_host, want_port in served.tcp:
            if port == want_port and _same_host(host, want_host):
                wanted[inode] = f"{want_host}:{want_port}"
    for inode, bound in _unix_listeners():
        for path in served.sockets:
            # HAProxy binds PATH.PID.tmp, then renames it to PATH
            if re.fullmatch(re.escape(os.path.abspath(path)) + r"(\.\d+\.tmp)?", bound):
                wanted[inode] = str(path)
    return wanted


def _owners(wanted: Mapping[int, str]) -> dict[int, set[int | None]]:
    """socket inode -> the pids holding it; {None} when none is visible to this user (for a
    unix socket, the pid its Runtime API gives, if it answers)."""
    owners: dict[int, set[int | None]] = {inode: set() for inode in wanted}
    for pid, inode in _socket_fds(set(wanted)):
        owners[inode].add(pid)
    for inode, pids in owners.items():
        if not pids:  # another user's process
            asked = _runtime_api_pid(wanted[inode]) if wanted[inode].startswith("/") else None
            pids.add(asked)
    return owners


def _holder(pid: int | None, holds: tuple[str, ...]) -> Holder:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid else []
        cwd = os.readlink(f"/proc/{pid}/cwd") if pid else "/"
    except OSError:
        argv, cwd = [], "/"
    args = [a.decode(errors="replace") for a in argv if a]
    program = os.path.basename(args[0]) if args else "a process"
    configs = [
        os.path.join(cwd, args[i + 1])
        for i, arg in enumerate(args[:-1])
        if arg == "-f" and not args[i + 1].startswith("-")
    ]
    return Holder(pid, program, tuple(configs), holds)


def _runtime_api_pid(path: str) -> int | None:
    """The Pid HAProxy's Runtime API at ``path`` says it has (``show info``)."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(path)
            conn.sendall(b"show info\n")
            answer = b"".join(iter(lambda: conn.recv(65536), b""))
    except OSError:
        return None
    found = re.search(rb"^Pid: (\d+)$", answer, re.MULTILINE)
    return int(found[1]) if found else None


def _same_host(listening: str, wanted: str) -> bool:
    """A listener on the wildcard address takes the port on every address, and the reverse."""
    if wanted in {"*", "", "0.0.0.0", "::"}:  # noqa: S104 - compared, not bound
        return True
    try:
        want = ipaddress.ip_address("127.0.0.1" if wanted == "localhost" else wanted)
    except ValueError:
        return True  # a host name: take it as any address
    have = ipaddress.ip_address(listening)
    return have.is_unspecified or have == want


def _tcp_listeners() -> Iterable[tuple[int, tuple[str, int]]]:
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, port = fields[1].split(":")
            yield int(fields[9]), (_proc_ip(address, width), int(port, 16))


def _proc_ip(hexed: str, width: int) -> str:
    """/proc/net/tcp writes an address as 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hexed)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
    return str(ipaddress.ip_address(words))


def _unix_listeners() -> Iterable[tuple[int, str]]:
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and int(fields[3], 16) & _ACCEPTING:
            yield int(fields[6]), fields[7]


def _socket_fds(inodes: set[int]) -> Iterable[tuple[int, int]]:
    """(pid, inode) for every open file descriptor of a process here onto one of ``inodes``."""
    for entry in os.scandir("/proc"):
        if not (entry.name.isascii() and entry.name.isdigit()):
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue  # gone, or not ours to read
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    yield int(entry.name), int(target[8:-1])
