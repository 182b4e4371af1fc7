"""What HAProxy's Runtime API answers, typed: the errors a refusal becomes, the server
reference and admin states its commands name, and the rows of ``show stat`` and ``show servers
state`` with their parsers. The client that sends the commands is in :mod:`.runtime`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from pytest_bluegreen.errors import Refused
from pytest_bluegreen.frozen import Frozen, frozen

__all__ = [
    "AdminState",
    "RuntimeApiError",
    "RuntimeApiPermissionError",
    "RuntimeApiUnreachable",
    "ServerRef",
    "ServerState",
    "StatRow",
    "parse_servers_state",
    "parse_show_stat",
]

_NAME = re.compile(r"\A[A-Za-z0-9_.:\-]+\Z")

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
