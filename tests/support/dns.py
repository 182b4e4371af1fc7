"""A tiny DNS server on 127.0.0.1 for HAProxy's ``resolvers``, answering A records that a test
changes while HAProxy runs (replicas appearing, moving, going away), as Docker's embedded DNS
answers ``tasks.<service>`` with the address of every running replica. The addresses are
loopback ones (127.0.0.2, 127.0.0.3 ...): one replica per address, all on the same port.

(A records, not SRV: HAProxy applies an SRV record's weight to the server on every resolution,
which would undo the weights a switch sets; Docker's DNS answers A records.)
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable

__all__ = ["ReplicaDns"]

_A, _IN = 1, 1


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    while data[offset]:
        size = data[offset]
        labels.append(data[offset + 1 : offset + 1 + size].decode())
        offset += 1 + size
    return ".".join(labels).lower(), offset + 1


class ReplicaDns:
    """``set(name, addresses)``: ``name`` answers one A record per address from then on; any
    other name, or one with no address, is NXDOMAIN (as Docker's DNS answers ``tasks.<service>``
    when the service has no running task)."""

    def __init__(self, ttl: int = 1) -> None:
        self.ttl = ttl
        self._records: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="replica-dns", daemon=True)
        self._thread.start()

    def set(self, name: str, addresses: Iterable[str]) -> None:
        with self._lock:
            self._records[name.lower()] = tuple(addresses)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def answer(self, data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        ident, _flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1:
            return None
        qname, end = _read_name(data, 12)
        qtype, _qclass = struct.unpack("!HH", data[end : end + 4])
        question = data[12 : end + 4]
        with self._lock:
            addresses = self._records.get(qname)
        answers = [
            b"\xc0\x0c" + struct.pack("!HHIH", _A, _IN, self.ttl, 4) + socket.inet_aton(address)
            for address in (addresses or ())
            if qtype == _A
        ]
        rcode = 0 if addresses else 3  # NOERROR / NXDOMAIN
        header = struct.pack("!HHHHHH", ident, 0x8400 | rcode, 1, len(answers), 0, 0)
        return header + question + b"".join(answers)
