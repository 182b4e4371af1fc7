"""HAProxy's server-state file saved whole: ``show servers state`` written durably only when it
names every server, shows the wanted states and came from one HAProxy process throughout."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bluegreen.errors import BluegreenError, ExitCode
from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef, parse_servers_state
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.record.durable import write_durably

from .outcome import Wanted
from .reading import identity

__all__ = ["ServerStateFileError", "StateMoved", "save_server_state"]

if not TYPE_CHECKING:  # its old name, for one release (the history's is record.history's)
    from pytest_bluegreen._moved import renamed

    __getattr__ = renamed(__name__, {"StateFileError": "ServerStateFileError"})


class ServerStateFileError(BluegreenError):
    """HAProxy's server-state file could not be written (the folder, the disk): a switch, a
    revert or ``bluegreen recover`` that cannot save it ends unfinished (exit 10)."""

    exit_code = ExitCode.REVERT_FAILED


class StateMoved(ServerStateFileError):
    """While its server-state file was saved, HAProxy showed other states than wanted or was
    reloaded or restarted: the new process may run what the file held before (the save is
    done again after the states are applied again, or it counts as not saved)."""


def save_server_state(
    api: RuntimeApi,
    path: Path,
    refs: Iterable[ServerRef],
    *,
    wanted: Iterable[Wanted] = (),
) -> None:
    """``show servers state`` into HAProxy's server-state file ``path``, durably, and only a
    whole answer: it must parse and name every server in ``refs`` (an answer lost or cut short
    would write a file from which a reload takes the configuration's weights instead), show
    every server of ``wanted`` as wanted, and come from one HAProxy process from before the
    answer to after the write (``show info``'s Pid and Start_time_sec): a reload during the
    save starts a process from the file as it *was*, so a save it overlapped saves nothing.

    Raises StateMoved (HAProxy showed other states, or another process took over), another
    ServerStateFileError (the file) or RuntimeApiError (HAProxy's answer); except for a StateMoved
    after the write, the file is the one before."""
    before = identity(api)
    text = api.servers_state_text()
    found = {state.ref: state for state in parse_servers_state(text)}
    missing = [str(ref) for ref in refs if ref not in found]
    if missing:
        raise RuntimeApiError(
            "show servers state",
            "",
            f"HAProxy at {api.address} answered 'show servers state' without "
            f"{', '.join(missing)} (cut short?): {path} was not written",
        )
    differ = [
        f"{want.ref} weight {found[want.ref].uweight} {found[want.ref].admin.value}"
        for want in wanted
        if want.ref in found and not want.shows(found[want.ref])
    ]
    if differ:
        raise StateMoved(
            f"HAProxy at {api.address} shows other states than it should while its "
            f"server-state file is saved ({', '.join(differ)}; reloaded from an older file?): "
            f"{path} was not written"
        )
    try:
        write_durably(path, text)
    except OSError as exc:
        raise ServerStateFileError(
            f"HAProxy's server-state file {path} was not saved: {exc}"
        ) from exc
    after = identity(api)
    if not after.same_process(before):
        raise StateMoved(
            f"HAProxy at {api.address} was reloaded or restarted while its server-state file "
            f"{path} was saved ({before} -> {after}): the new process started from the file "
            "as it was, and may serve other states than the ones saved"
        )
