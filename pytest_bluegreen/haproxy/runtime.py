"""A small client for the HAProxy Runtime API (the "stats socket").

The commands (``show info``, ``show servers state``, ``set server ...``) and what their answers
mean; see HAProxy's ``doc/management.txt``, section "Unix Socket commands". How a command
travels (one line per connection over a unix socket, TCP or TLS) is :mod:`.transport`'s; the
records are its siblings': :mod:`.address` (where the Runtime API listens) and :mod:`.answers`
(the errors and the rows of its answers, with their parsers), both handed on from here too; the
name of the canary's variable is :mod:`.sticky`'s; it imports nothing else of the package.

Any non-empty answer to a ``set`` command is an error: HAProxy answers an empty
line on success and plain text (``No such server.``, ``Permission denied``) on
failure, with no status code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .address import LOOPBACK_NAMES, RuntimeApiAddress, TlsFiles, is_loopback
from .answers import (
    _NAME,
    AdminState,
    RuntimeApiError,
    RuntimeApiPermissionError,
    RuntimeApiUnreachable,
    ServerRef,
    ServerState,
    StatRow,
    parse_servers_state,
    parse_show_stat,
)
from .sticky import CANARY_VAR, is_canary_id, new_canary_id
from .transport import Transport

__all__ = [
    "LOOPBACK_NAMES",
    "MAX_LINE",
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
    "is_loopback",
    "parse_servers_state",
    "parse_show_stat",
    "state_command",
    "supported_version",
    "weight_command",
]

# bytes of commands on one line (HAProxy reads a line into a buffer of tune.bufsize, 16 kB by
# default): a switch's step on one HAProxy fits on one
MAX_LINE = 4096
# the oldest HAProxy this package is made for (Debian 12's): its Runtime API commands, server
# state files and ``show servers state`` columns; any later one, 3.x included, is fine
MINIMUM_VERSION = (2, 6)
_VERSION = re.compile(r"(\d+)\.(\d+)")
# ``get var``'s answer: ``proc.bg_canary: type=str value=<c0123456789ab>``
_VAR = re.compile(r"\A(?P<name>\S+): type=\w+ value=<(?P<value>.*)>\s*\Z")


def supported_version(version: str) -> bool:
    """Whether an HAProxy version (``show info``'s ``Version``: ``2.6.12-1+deb12u4``,
    ``3.0.5``) is :data:`MINIMUM_VERSION` or later; False for anything that is not one."""
    found = _VERSION.match(version.strip())
    return found is not None and (int(found[1]), int(found[2])) >= MINIMUM_VERSION


class RuntimeApi:
    """The Runtime API client of one HAProxy: its commands, each one short connection of its
    :class:`~.transport.Transport` (non-interactive mode). Several instances as one are
    :class:`~.instances.Haproxies`, which holds one of these per instance."""

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
        self.tls = tls
        self.transport = Transport(self.address, timeout, tls)  # raises for tls:// without files

    def __repr__(self) -> str:
        return f"RuntimeApi({str(self.address)!r}, timeout={self.timeout})"

    def execute(self, command: str) -> str:
        """Send one command, return HAProxy's whole answer."""
        return self.transport.exchange(command)

    def _set(self, command: str, *, experimental: bool = False) -> None:
        if experimental:
            answer = self.transport.exchange(command, experimental=True)
        else:
            answer = self.execute(command)
        if not answer.strip() and answer.count("\n") < (2 if experimental else 1):
            # a successful set answers one empty line (after experimental-mode's own empty
            # line: two); less means HAProxy went away or the connection dropped after the
            # command: it may have been applied
            raise RuntimeApiUnreachable(
                command,
                "",
                f"HAProxy Runtime API at {self.address} closed the connection without "
                f"answering {command!r} (it may have been applied)",
            )
        if answer.strip():
            raise _refusal(command, answer)

    def set_each(self, commands: Sequence[str]) -> list[RuntimeApiError | None]:
        """Several ``set`` commands (:func:`weight_command`, :func:`state_command`) on as few
        connections as a line holds (one for a switch's step on one HAProxy): each command's
        error, or None where HAProxy applied it. Every command is sent: HAProxy goes on after
        one that fails. A connection that closes before an answer leaves that command and
        the ones after it on the line unknown (RuntimeApiUnreachable: they may have been
        applied)."""
        found: list[RuntimeApiError | None] = []
        for line in _lines(commands):
            try:
                answer = self.transport.exchange_all(line)
            except RuntimeApiUnreachable as exc:
                found += [exc] * len(line)
                continue
            answers = _answers(answer)
            for index, command in enumerate(line):
                if index >= len(answers):
                    found.append(
                        RuntimeApiUnreachable(
                            command,
                            "",
                            f"HAProxy Runtime API at {self.address} closed the connection "
                            f"without answering {command!r} (it may have been applied)",
                        )
                    )
                elif answers[index].strip():
                    found.append(_refusal(command, answers[index]))
                else:
                    found.append(None)
        return found

    def set_all(self, commands: Sequence[str]) -> None:
        """:meth:`set_each`, the first command's error raised (the others were sent too)."""
        if not commands:
            return
        for error in self.set_each(commands):
            if error is not None:
                raise error

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

    def sticky(self) -> bool:
        """Whether a canary's sticky users are on: the variable :meth:`set_sticky` sets holds
        a canary's id (what the shipped ``ignore-persist`` tests). Unset (never set, or
        HAProxy reloaded or restarted since) is False."""
        return self.sticky_id() is not None

    def sticky_id(self) -> str | None:
        """The id of the canary whose sticky users are on (:meth:`set_sticky`), or None: off,
        or unset (never set, or HAProxy reloaded or restarted since)."""
        command = f"get var {CANARY_VAR}"
        answer = self.execute(command)
        found = _VAR.match(answer)
        if found is not None and found["name"] == CANARY_VAR:
            return found["value"] if is_canary_id(found["value"]) else None
        if answer.strip() == "Variable not found.":
            return None
        if not answer:
            raise RuntimeApiUnreachable(
                command, "", f"HAProxy Runtime API at {self.address} closed without answering"
            )
        if "permission denied" in answer.lower():
            raise RuntimeApiPermissionError(command, answer)
        raise RuntimeApiError(command, answer)

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
        self._set(weight_command(ref, weight))

    def set_state(self, ref: ServerRef, state: AdminState) -> None:
        self._set(state_command(ref, state))

    def set_sticky(self, on: bool, *, canary: str | None = None) -> None:
        """Turn a canary's sticky users on or off (the process variable the shipped
        ``haproxy.cfg``'s switched backends read, :mod:`.sticky`): on, a user keeps the color
        that first answered them in this canary; off, every request is balanced by the weights
        again. On sets the canary's id: ``canary``, or a fresh one (:func:`.new_canary_id`);
        every instance of a group needs the same one, or a user answered by another instance
        counts as one of an earlier canary there. A sticky cookie kept from an earlier canary
        counts for nothing. Off before a full switch or an abort: HAProxy honours the cookie of
        a server in DRAIN or at weight 0. ``set var`` needs experimental mode (its
        ``experimental-mode on`` needs the admin level). A reload or restart of HAProxy
        forgets it: off."""
        if not on:
            self._set(f"set var {CANARY_VAR} int(0)", experimental=True)
            return
        value = new_canary_id() if canary is None else canary
        command = f"set var {CANARY_VAR} str({value})"
        if not is_canary_id(value):  # it travels unquoted: nothing else may reach the command
            raise RuntimeApiError(command, "", f"{value!r} is not a canary id (c and hex digits)")
        self._set(command, experimental=True)

    def shutdown_sessions(self, ref: ServerRef) -> None:
        """Close every session on the server now (``shutdown sessions server``): its clients
        see their connection end and reconnect, which the weights send elsewhere."""
        self._set(f"shutdown sessions server {_checked(ref.backend)}/{_checked(ref.server)}")

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


def weight_command(ref: ServerRef, weight: int) -> str:
    """``set server B/S weight W`` (:meth:`RuntimeApi.set_weight`, or one of a
    :meth:`RuntimeApi.set_all`)."""
    if not 0 <= weight <= 256:
        raise ValueError(f"HAProxy weights are 0..256, not {weight}")
    return f"set server {_checked(ref.backend)}/{_checked(ref.server)} weight {weight}"


def state_command(ref: ServerRef, state: AdminState) -> str:
    """``set server B/S state ready|drain|maint``."""
    return f"set server {_checked(ref.backend)}/{_checked(ref.server)} state {state.value}"


def _refusal(command: str, answer: str) -> RuntimeApiError:
    if "permission denied" in answer.lower():
        return RuntimeApiPermissionError(command, answer)
    return RuntimeApiError(command, answer)


def _lines(commands: Sequence[str]) -> list[list[str]]:
    """The commands on as few lines as :data:`MAX_LINE` allows, in order."""
    lines: list[list[str]] = []
    size = MAX_LINE
    for command in commands:
        if size + len(command) + 2 > MAX_LINE:
            lines.append([])
            size = 0
        lines[-1].append(command)
        size += len(command) + 2
    return lines


def _answers(text: str) -> list[str]:
    """The answers on one line of commands, in order: each is its text (a ``set`` command's is
    empty, or one line saying why it failed) and then an empty line. A last answer cut short
    (no empty line after it) is not one."""
    answers: list[str] = []
    lines: list[str] = []
    for line in text.split("\n")[:-1]:  # what follows the last line break is no whole line
        if line.strip():
            lines.append(line)
        else:
            answers.append("\n".join(lines))
            lines = []
    return answers


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a valid HAProxy proxy or server name: {name!r}")
    return name
