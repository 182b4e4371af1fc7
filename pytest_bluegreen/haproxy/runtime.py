"""A small client for the HAProxy Runtime API (the "stats socket").

The protocol is one line per command over a unix or TCP socket; HAProxy answers
and closes the connection (non-interactive mode). This module imports nothing of the
package but its error base class. See HAProxy's
``doc/management.txt``, section "Unix Socket commands".

Any non-empty answer to a ``set`` command is an error: HAProxy answers an empty
line on success and plain text (``No such server.``, ``Permission denied``) on
failure, with no status code.
"""

from __future__ import annotations

import enum
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_bluegreen.errors import Refused
from pytest_bluegreen.frozen import Frozen, frozen

__all__ = [
    "MINIMUM_VERSION",
    "AdminState",
    "RuntimeApi",
    "RuntimeApiAddress",
    "RuntimeApiError",
    "RuntimeApiPermissionError",
    "RuntimeApiUnreachable",
    "ServerRef",
    "ServerState",
    "StatRow",
    "TlsFiles",
    "supported_version",
]

# the oldest HAProxy this package is made for (Debian 12's): its Runtime API commands, server
# state files and ``show servers state`` columns; any later one, 3.x included, is fine
MINIMUM_VERSION = (2, 6)
_VERSION = re.compile(r"(\d+)\.(\d+)")


def supported_version(version: str) -> bool:
    """Whether an HAProxy version (``show info``'s ``Version``: ``2.6.12-1+deb12u4``,
    ``3.0.5``) is :data:`MINIMUM_VERSION` or later; False for anything that is not one."""
    found = _VERSION.match(version.strip())
    return found is not None and (int(found[1]), int(found[2])) >= MINIMUM_VERSION


_NAME = re.compile(r"\A[A-Za-z0-9_.:\-]+\Z")
_HOST = re.compile(r"[A-Za-z0-9.\-]+")

# srv_admin_state bits (src/server.h, enum srv_admin)
_ADMF_MAINT = 0x01 | 0x02 | 0x04  # forced, inherited, config
_ADMF_DRAIN = 0x08 | 0x10  # forced, inherited
# resolution: a server-template slot (or DNS-named server) with no address, e.g. no replica
_ADMF_RMAINT = 0x20


class RuntimeApiError(Refused):
    """HAProxy refused or failed a Runtime API command.

    ``command`` is what was sent, ``answer`` what HAProxy said (may be empty). Met before any
    change, it refuses the gate (exit 7); the switch turns one met mid-way into a revert.
    """

    def __init__(self, command: str, answer: str, message: str | None = None) -> None:
        self.command = command
        self.answer = answer.strip()
        text = message or f"HAProxy Runtime API refused {command!r}: {self.answer or '(no answer)'}"
        super().__init__(text)


class RuntimeApiUnreachable(RuntimeApiError):
    """The Runtime API socket could not be reached (refused, missing, timed out)."""


class RuntimeApiPermissionError(RuntimeApiError):
    """The socket answers but below the ``admin`` level needed to change servers."""


class AdminState(enum.StrEnum):
    """Values accepted by ``set server B/S state``."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True, order=True)
class ServerRef:
    """A server inside a backend, written ``backend/server``."""

    backend: str
    server: str

    @classmethod
    def parse(cls, text: str) -> ServerRef:
        backend, sep, server = text.strip().partition("/")
        if not sep or not _NAME.match(backend) or not _NAME.match(server):
            raise ValueError(f"not a HAProxy server reference 'backend/server': {text!r}")
        return cls(backend, server)

    def __str__(self) -> str:
        return f"{self.backend}/{self.server}"


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    import ipaddress  # noqa: PLC0415 - only for TCP addresses; the plugin's start stays light

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


@frozen
class RuntimeApiAddress(Frozen):
    """Where the Runtime API listens: a unix socket path, a TCP ``host:port`` on this host, or
    ``tls://host:port`` (a stats socket with ``ssl ... verify required``) anywhere.

    The Runtime API has no authentication: plain TCP is taken on loopback only.
    """

    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> RuntimeApiAddress:
        value = text.strip()
        if not value:
            raise ValueError("the Runtime API address is empty")
        if value.startswith("unix:"):
            value = value[len("unix:") :]
            if not value:
                raise ValueError("unix: needs a socket path")
            return cls(path=value)
        if value.startswith(("/", "./", "../")):
            return cls(path=value)
        tls = value.startswith("tls://")
        for prefix in ("tls://", "tcp:", "ipv4@"):
            if value.startswith(prefix):
                value = value[len(prefix) :]
        host, port = _host_port(text, value)
        if not tls and not is_loopback(host):
            raise ValueError(
                f"Runtime API address {text.strip()!r} is not on this host: the Runtime API has "
                "no authentication, so plain TCP is only taken on loopback; reach a remote "
                f'HAProxy over TLS with a client certificate (runtime_api = "tls://{host}:{port}'
                '" with runtime_api_cert, runtime_api_key and runtime_api_ca)'
            )
        return cls(host=host, port=port, tls=tls)

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{'tls://' if self.tls else ''}{host}:{self.port}"


def _host_port(text: str, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Runtime API address {text!r} is neither a socket path nor host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        import ipaddress  # noqa: PLC0415 - rare; the plugin's start stays light

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"Runtime API address {text!r}: {host!r} is not an IPv6 address"
            ) from None
    elif not _HOST.fullmatch(host):
        raise ValueError(
            f"Runtime API address {text!r}: {host!r} is not a host name or IPv4 address"
        )
    return host, int(port_text)


@frozen
class TlsFiles(Frozen):
    """The client side of a TLS Runtime API: our certificate and key, the CA of HAProxy's."""

    cert: Path
    key: Path
    ca: Path


@frozen
class ServerState(Frozen):
    """One line of ``show servers state``."""

    backend: str
    server: str
    address: str
    op_state: int  # 0 stopped, 1 starting, 2 running, 3 stopping
    admin_state: int  # bit field, see _ADMF_*
    uweight: int  # current (user) weight
    iweight: int  # configured weight
    check_status: int
    check_result: int
    port: int = 0  # srv_port (0: not given)
    fqdn: str = ""  # srv_fqdn: the name DNS fills the slot from, or the configured host name

    @property
    def ref(self) -> ServerRef:
        return ServerRef(self.backend, self.server)

    @property
    def endpoint(self) -> str:
        """``ADDR:PORT`` as HAProxy connects to it (``%si:%sp`` in a log format), or "" for a
        slot with no address."""
        if self.empty or not self.address or self.address == "-":
            return ""
        return f"{self.address}:{self.port}"

    @property
    def admin(self) -> AdminState:
        """The admin state the Runtime API sets (and a revert restores): not the resolution
        maintenance of an empty slot, which only DNS sets and clears (see :attr:`empty`)."""
        if self.admin_state & _ADMF_MAINT:
            return AdminState.MAINT
        if self.admin_state & _ADMF_DRAIN:
            return AdminState.DRAIN
        return AdminState.READY

    @property
    def empty(self) -> bool:
        """A slot with no address (``MAINT (resolution)``): a ``server-template`` slot no
        replica fills now. It takes no traffic; its weight waits for the replica that comes."""
        return bool(self.admin_state & _ADMF_RMAINT)

    @property
    def takes_traffic(self) -> bool:
        """Filled, ready, weight above zero: new requests are balanced onto it."""
        return not self.empty and self.admin is AdminState.READY and self.uweight > 0


@frozen
class StatRow(Frozen):
    """The columns of ``show stat`` the gate needs, plus the raw row."""

    backend: str
    server: str
    status: str  # UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2", no check ...
    weight: int
    scur: int
    stot: int
    hrsp_2xx: int
    hrsp_5xx: int
    check_status: str
    raw: dict[str, str]

    @property
    def ref(self) -> ServerRef:
        return ServerRef(self.backend, self.server)

    @property
    def is_up(self) -> bool:
        """Health checks pass, whatever the weight: ``UP``, ``DRAIN`` or ``NOLB``, settled.
        ``UP 1/2`` is going down, and ``no check`` is not known to be healthy."""
        return self.status in {"UP", "DRAIN", "NOLB"}

    @property
    def empty(self) -> bool:
        """A slot with no address: ``MAINT (resolution)`` (see :attr:`ServerState.empty`)."""
        return self.status.endswith("(resolution)")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def parse_show_stat(text: str) -> list[StatRow]:
    """Parse ``show stat`` CSV; proxies' FRONTEND/BACKEND rows are kept too."""
    body = text.lstrip()
    if body.startswith("# "):
        body = body[2:]
    rows: list[StatRow] = []
    import csv  # noqa: PLC0415 - only when reading HAProxy; the plugin's start stays light
    import io  # noqa: PLC0415

    for raw in csv.DictReader(io.StringIO(body)):
        if not raw.get("pxname"):
            continue
        row = {k: (v or "") for k, v in raw.items() if k}
        rows.append(
            StatRow(
                backend=row["pxname"],
                server=row.get("svname", ""),
                status=row.get("status", ""),
                weight=_int(row.get("weight")),
                scur=_int(row.get("scur")),
                stot=_int(row.get("stot")),
                hrsp_2xx=_int(row.get("hrsp_2xx")),
                hrsp_5xx=_int(row.get("hrsp_5xx")),
                check_status=row.get("check_status", ""),
                raw=row,
            )
        )
    return rows


_STATE_COLUMNS = (
    "be_name",
    "srv_name",
    "srv_op_state",
    "srv_admin_state",
    "srv_uweight",
    "srv_iweight",
)


def parse_servers_state(text: str) -> list[ServerState]:
    """Parse ``show servers state`` (format version 1)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    if lines[0].strip() != "1":
        raise RuntimeApiError(
            "show servers state", lines[0], f"unsupported servers state format {lines[0]!r}"
        )
    header: list[str] = []
    states: list[ServerState] = []
    for line in lines[1:]:
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            missing = [c for c in _STATE_COLUMNS if c not in header]
            if missing:  # a silent 0 here would become a weight written back by a revert
                raise RuntimeApiError(
                    "show servers state",
                    line,
                    f"'show servers state' has no column {', '.join(missing)}: this HAProxy's "
                    "format is not one the gate knows",
                )
            continue
        fields = line.split()
        if len(fields) < len(header):
            raise RuntimeApiError(
                "show servers state", line, f"'show servers state' line is cut short: {line!r}"
            )
        values = dict(zip(header, fields, strict=False))
        states.append(
            ServerState(
                backend=values.get("be_name", ""),
                server=values.get("srv_name", ""),
                address=values.get("srv_addr", ""),
                op_state=_int(values.get("srv_op_state")),
                admin_state=_int(values.get("srv_admin_state")),
                uweight=_int(values.get("srv_uweight")),
                iweight=_int(values.get("srv_iweight")),
                check_status=_int(values.get("srv_check_status")),
                check_result=_int(values.get("srv_check_result")),
                port=_int(values.get("srv_port")),
                fqdn=_fqdn(values.get("srv_fqdn", "")),
            )
        )
    return states


def _fqdn(value: str) -> str:
    return "" if value in ("", "-") else value


class RuntimeApi:
    """Runtime API client. Each command is one short connection (non-interactive mode)."""

    def __init__(
        self,
        address: str | RuntimeApiAddress,
        timeout: float = 2.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.address = (
            address if isinstance(address, RuntimeApiAddress) else RuntimeApiAddress.parse(address)
        )
        self.timeout = timeout
        if self.address.tls and tls is None:
            raise ValueError(f"{self.address} needs TlsFiles (client certificate, key, CA)")
        self.tls = tls
        self._context: Any = None

    def __repr__(self) -> str:
        return f"RuntimeApi({str(self.address)!r}, timeout={self.timeout})"

    # -- transport ---------------------------------------------------------------------------
    def _connect(self, command: str) -> socket.socket:
        addr = self.address
        try:
            if addr.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(addr.path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            assert addr.host is not None
            assert addr.port is not None
            sock = socket.create_connection((addr.host, addr.port), timeout=self.timeout)
            if not addr.tls:
                return sock
            try:
                return self._tls_context().wrap_socket(sock, server_hostname=addr.host)  # type: ignore[no-any-return]
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            if type(exc).__module__ == "ssl":  # a certificate one side does not accept
                message = f"HAProxy Runtime API at {addr}: the TLS handshake failed: {exc}"
            else:
                message = f"HAProxy Runtime API at {addr} is unreachable: {exc}"
            raise RuntimeApiUnreachable(command, "", message) from exc

    def _tls_context(self) -> Any:
        if self._context is None:
            import ssl  # noqa: PLC0415 - only for a TLS Runtime API

            assert self.tls is not None
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            self._context = context
        return self._context

    def execute(self, command: str) -> str:
        """Send one command, return HAProxy's whole answer."""
        if "\n" in command or "\r" in command or ";" in command:
            raise RuntimeApiError(command, "", f"refusing to send a multi-command line {command!r}")
        sock = self._connect(command)
        chunks: list[bytes] = []
        try:
            sock.sendall(command.encode() + b"\n")
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except OSError as exc:
            raise RuntimeApiUnreachable(
                command, "", f"HAProxy Runtime API at {self.address} failed on {command!r}: {exc}"
            ) from exc
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def _set(self, command: str) -> None:
        answer = self.execute(command)
        if not answer:
            # a successful set answers one empty line; nothing at all means HAProxy went away
            # or the connection dropped after the command: it may have been applied
            raise RuntimeApiUnreachable(
                command,
                "",
                f"HAProxy Runtime API at {self.address} closed the connection without "
                f"answering {command!r} (it may have been applied)",
            )
        if answer.strip():
            if "permission denied" in answer.lower():
                raise RuntimeApiPermissionError(command, answer)
            raise RuntimeApiError(command, answer)

    # -- reading -----------------------------------------------------------------------------
    def show_info(self) -> dict[str, str]:
        answer = self.execute("show info")
        info: dict[str, str] = {}
        for line in answer.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        if "Version" not in info:
            raise RuntimeApiError(
                "show info", answer, f"unexpected answer to 'show info': {answer!r}"
            )
        return info

    def version(self) -> str:
        return self.show_info()["Version"]

    def cli_sockets(self) -> tuple[str, ...]:
        """Every Runtime API socket of the process that answers (``show cli sockets``), as
        HAProxy names them (``unix@/run/haproxy/admin.sock``, ``ipv4@127.0.0.1:9999``),
        sorted: the same list whichever of them asks, and across a reload that keeps them."""
        answer = self.execute("show cli sockets")
        lines = [line for line in answer.splitlines() if line.strip()]
        if not lines or not lines[0].startswith("# socket"):
            raise RuntimeApiError("show cli sockets", answer)
        return tuple(sorted({line.split()[0] for line in lines[1:] if not line.startswith("#")}))

    def cli_level(self) -> str:
        """``admin``, ``operator`` or ``user``."""
        answer = self.execute("show cli level").strip()
        if answer not in {"admin", "operator", "user"}:
            raise RuntimeApiError("show cli level", answer)
        return answer

    def require_admin(self) -> None:
        level = self.cli_level()
        if level != "admin":
            raise RuntimeApiPermissionError(
                "show cli level",
                level,
                f"HAProxy Runtime API at {self.address} is at level {level!r}; "
                "switching needs 'level admin' on the stats socket",
            )

    def show_stat(self) -> list[StatRow]:
        answer = self.execute("show stat")
        if not answer.lstrip().startswith("# pxname"):
            if "permission denied" in answer.lower():
                raise RuntimeApiPermissionError("show stat", answer)
            raise RuntimeApiError("show stat", answer)
        return parse_show_stat(answer)

    def servers_state_text(self, backend: str | None = None) -> str:
        command = "show servers state" + (f" {_checked(backend)}" if backend else "")
        answer = self.execute(command)
        if not answer.lstrip().startswith("1"):
            if "permission denied" in answer.lower():
                raise RuntimeApiPermissionError(command, answer)
            raise RuntimeApiError(command, answer)
        return answer

    def servers_state(self, backend: str | None = None) -> list[ServerState]:
        return parse_servers_state(self.servers_state_text(backend))

    def server_states(self, refs: Iterable[ServerRef]) -> dict[ServerRef, ServerState]:
        """The states of the given servers; a missing one is a RuntimeApiError."""
        wanted = list(refs)
        found = {s.ref: s for s in self.servers_state()}
        missing = [str(r) for r in wanted if r not in found]
        if missing:
            raise RuntimeApiError(
                "show servers state",
                "",
                f"HAProxy at {self.address} has no server {', '.join(missing)}",
            )
        return {r: found[r] for r in wanted}

    # -- changing ----------------------------------------------------------------------------
    def set_weight(self, ref: ServerRef, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise ValueError(f"HAProxy weights are 0..256, not {weight}")
        self._set(f"set server {_checked(ref.backend)}/{_checked(ref.server)} weight {weight}")

    def set_state(self, ref: ServerRef, state: AdminState) -> None:
        self._set(f"set server {_checked(ref.backend)}/{_checked(ref.server)} state {state.value}")

    def save_server_state(self, path: str | os.PathLike[str]) -> None:
        """Write ``show servers state`` atomically to ``path`` (the ``server-state-file``)."""
        text = self.servers_state_text()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # noqa: PLC0415 - only after a switch; the plugin's start stays light

        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a valid HAProxy proxy or server name: {name!r}")
    return name
