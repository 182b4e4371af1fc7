"""How a Runtime API command travels: one short connection per line (HAProxy's
non-interactive mode) over a unix socket, loopback TCP, or TLS with a client certificate; one
line sent (a command, or several separated by ``;``, which HAProxy runs in order and answers
in turn), the whole answer read until HAProxy closes the connection.

It knows no command and reads no answer: the commands are :mod:`.runtime`'s, what their
answers say is :mod:`.answers`'. A connection that fails is :class:`RuntimeApiUnreachable`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from pytest_bluegreen.errors import OutOfOrder

from .address import RuntimeApiAddress, TlsFiles
from .answers import RuntimeApiError, RuntimeApiUnreachable

__all__ = ["EXPERIMENTAL_MODE", "Transport"]

# what goes first on a line whose command needs it: the mode lasts for that one connection
EXPERIMENTAL_MODE = "experimental-mode on"


class Transport:
    """One Runtime API address, its timeout and (for ``tls://``) the client's certificate."""

    def __init__(self, address: RuntimeApiAddress, timeout: float, tls: TlsFiles | None) -> None:
        if address.tls and tls is None:
            raise ValueError(f"{address} needs TlsFiles (client certificate, key, CA)")
        self.address = address
        self.timeout = timeout
        self.tls = tls
        self._context: Any = None

    def exchange(self, command: str, *, experimental: bool = False) -> str:
        """Send one command, return HAProxy's whole answer (empty when it closed without one).

        ``experimental``: the command needs the connection in experimental mode (``set var``
        does), so ``experimental-mode on;`` goes before it on the same line; its answer (an
        empty line, or ``Permission denied`` below the admin level) comes first."""
        _single(command)
        line = f"{EXPERIMENTAL_MODE}; {command}" if experimental else command
        return self._send(line, command)

    def exchange_all(self, commands: Sequence[str]) -> str:
        """Send several commands on one line, one connection for all: HAProxy runs them in
        order, each answered in turn (its text, then an empty line), the ones after an error
        too. Return the whole answer (cut short when HAProxy closed before the end)."""
        if not commands:
            raise OutOfOrder("exchange_all() needs at least one command")
        for command in commands:
            _single(command)
        return self._send("; ".join(commands), commands[0])

    def _send(self, line: str, command: str) -> str:
        """One line sent, the whole answer read; ``command`` names it in an error."""
        sock = self._connect(command)
        chunks: list[bytes] = []
        try:
            sock.sendall(line.encode() + b"\n")
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
            if addr.host is None or addr.port is None:  # RuntimeApiAddress.parse never makes one
                raise ValueError(f"Runtime API address {addr!r} has neither a path nor host:port")
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

            if self.tls is None:  # refused in __init__
                raise ValueError(f"{self.address} needs TlsFiles (client certificate, key, CA)")
            context = ssl.create_default_context(cafile=str(self.tls.ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            self._context = context
        return self._context


def _single(command: str) -> None:
    """One command: a line break or a ``;`` in it would make HAProxy run what follows too."""
    if "\n" in command or "\r" in command or ";" in command:
        raise RuntimeApiError(command, "", f"refusing to send a multi-command line {command!r}")
