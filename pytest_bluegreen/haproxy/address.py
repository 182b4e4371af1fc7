"""Where HAProxy's Runtime API listens: a unix socket path, a TCP ``host:port`` on this host
or ``tls://host:port`` anywhere (:class:`RuntimeApiAddress`), and the client's certificate,
key and CA for a TLS one (:class:`TlsFiles`). The client is in :mod:`.runtime`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_bluegreen.frozen import Frozen, frozen

__all__ = ["LOOPBACK_NAMES", "RuntimeApiAddress", "TlsFiles", "is_loopback"]

_HOST = re.compile(r"[A-Za-z0-9.\-]+")
_PORT = re.compile(r"0*[0-9]{1,5}")  # ASCII digits, at most five past leading zeros (HAProxy's)


# what HAProxy writes before an ``@`` in an address: a family, never a user
_FAMILIES = frozenset(
    {"unix", "abns", "abnsz", "fd", "sockpair", "ipv4", "ipv6", "tcp", "tcp4", "tcp6", "udp"}
    | {"udp4", "udp6", "uxst", "uxdg", "quic4", "quic6"}
)


def _shown(text: str) -> str:
    """``text`` for an error line: a user and a password before an ``@`` (a URL's habit, not
    an address's) are ``***``; HAProxy's ``unix@``, ``ipv6@`` ... stay."""
    match = re.match(r"(\s*(?:tls://|tcp://|tcp:)?)(.*)@(.*)$", text, re.DOTALL)
    if match is None or match.group(2).strip().lower() in _FAMILIES:
        return text
    return f"{match.group(1)}***@{match.group(3)}"


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
                f"Runtime API address {_shown(text.strip())!r} is not on this host: the Runtime "
                "API has no authentication, so plain TCP is only taken on loopback; reach a remote "
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
    if not sep or not host or not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"Runtime API address {_shown(text)!r} is neither a socket path nor host:port"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        import ipaddress  # noqa: PLC0415 - rare; the plugin's start stays light

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"Runtime API address {_shown(text)!r}: {_shown(host)!r} is not an IPv6 address"
            ) from None
    elif not _HOST.fullmatch(host):
        raise ValueError(
            f"Runtime API address {_shown(text)!r}: {_shown(host)!r} is not a host name or IPv4 "
            "address"
        )
    return host, int(port_text)


@frozen
class TlsFiles(Frozen):
    """The client side of a TLS Runtime API: our certificate and key, the CA of HAProxy's."""

    cert: Path
    key: Path
    ca: Path
