"""Which HAProxy process answers at an address: its Pid and start time (a reload or a restart
changes them) and its node name, from ``show info``. The journal records it per instance, the
lock tells one HAProxy reached twice by it, the bake reads counters only within one process."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["InstanceIdentity"]


@dataclass(frozen=True)
class InstanceIdentity:
    """Which HAProxy process answers: a reload or restart changes it."""

    address: str
    pid: int
    start_time: int  # Start_time_sec, else now - Uptime_sec
    node: str = ""  # show info's node (the host name unless the configuration names it)

    @classmethod
    def from_info(cls, address: str, info: Mapping[str, str]) -> InstanceIdentity:
        pid = int(info.get("Pid", "0") or 0)
        start = info.get("Start_time_sec")
        if start is None or not (start.isascii() and start.isdigit()):
            start = str(int(time.time()) - int(info.get("Uptime_sec", "0") or 0))
        return cls(address, pid, int(start), info.get("node", ""))

    def same_process(self, other: InstanceIdentity) -> bool:
        # Start_time_sec is exact; the Uptime_sec fallback may differ by a second
        return self.pid == other.pid and abs(self.start_time - other.start_time) <= 1

    def __str__(self) -> str:
        return f"pid {self.pid}, started {self.start_time}"
