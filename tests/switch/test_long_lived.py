"""Long-lived connections (Server-Sent Events) across a switch, on a real HAProxy: the promise.

New connections go to the new color at once; a stream open on the old color keeps flowing
from it (never from both) until the drain ends at ``drain_timeout`` (or a signal), then
HAProxy closes it (``shutdown sessions server``: the client sees its connection end) and a
client that reconnects lands on the new color; nothing else fails. ``drain_close = false``
leaves such streams to end on their own.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import pytest

from pytest_bluegreen.haproxy.answers import RuntimeApiError, ServerRef
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.switch import transaction as switch
from pytest_bluegreen.switch.journal import Journal, read_journal
from tests.support.cli import clean_environ
from tests.support.gate import CHECKS, WatchedGate, history
from tests.support.stack import Stack, StackFactory, wait_for
from tests.support.streams import Stream
from tests.support.switching import LoadProcess, stack_settings

DRAIN = 1.5


@pytest.fixture
def streams(stack: Stack) -> Iterator[list[Stream]]:
    """Three streams on blue (live) through the routed API."""
    opened = [Stream.open(stack.ports["api"]) for _ in range(3)]
    yield opened
    for stream in opened:
        stream.close()


def sessions_on(stack: Stack, server: str) -> int:
    return sum(
        r.scur for r in stack.api().show_stat() if r.backend == "api_backend" and r.server == server
    )


def switch_to_green(
    stack: Stack, on_step: Callable[[str], None] = lambda step: None, **settings: object
) -> tuple[switch.SwitchResult, float]:
    """The journaled switch, as the gate makes it; and when it began. ``on_step(step)`` runs
    before each step (the switch's step hook)."""
    resolved = stack_settings(stack, drain_timeout=DRAIN, **settings)
    plan = switch.plan(stack.haproxies(), resolved.topology, "green", 100)
    started = time.monotonic()
    result = switch.apply(
        stack.haproxies(),
        plan,
        resolved.switching,
        resolved.topology,
        journal=Journal(stack.journal_file),
        server_state_file=stack.server_state_file,
        on_step=lambda step, _plan: on_step(step),
    )
    return result, started


def test_old_streams_flow_until_the_drain_ends_then_reconnect_to_the_new_color(
    stack: Stack, streams: list[Stream]
) -> None:
    assert sessions_on(stack, "blue-api") >= 3
    # the suite's bounded load, in a process of its own (at most 2,000 requests or 60 s)
    load = LoadProcess(f"{stack.routed_url}/health", 2000, 60, 1, pause=0.005)
    newcomer: list[Stream] = []

    def open_during_the_drain(step: str) -> None:
        # green promoted, blue draining, the drain wait about to begin (the switch's own
        # step hook: no race with a watcher that could miss the window on a loaded machine)
        if step == "wait-drained":
            newcomer.append(Stream.open(stack.ports["api"]))

    try:
        result, started = switch_to_green(stack, open_during_the_drain)
    finally:
        loaded = load.finish(30)
    assert result.closed_sessions == 3, result.notes
    assert any("3 old session(s) still open, closed" in note for note in result.notes), result.notes
    drain_end = started + DRAIN
    for stream in streams:
        ended = stream.wait_ended(10)
        assert ended >= drain_end  # allowed to flow until drain_timeout
        assert stream.colors == {"blue"}  # never from both colors
        assert stream.events_after(started + DRAIN / 2) > 0  # still flowing during the drain
    [new] = newcomer
    try:
        assert new.colors == {"green"}, "a new connection during the drain went to the old color"
        assert new.ended is None  # not closed: it is on the new color
    finally:
        new.close()
    again = [Stream.open(stack.ports["api"]) for _ in streams]  # the clients reconnect
    try:
        assert all(stream.colors == {"green"} for stream in again)
    finally:
        for stream in again:
            stream.close()
    assert sessions_on(stack, "blue-api") == 0
    assert loaded.count > 0
    assert loaded.failed == []


def test_a_close_whose_answer_was_lost_is_counted_not_called_a_drain(
    stack: Stack, streams: list[Stream], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HAProxy closes the sessions but its answer is lost (a reset socket): the step is tried
    again and finds nothing open. The switch, its output and the journal still say the drain
    ended by closing 3 sessions, never that the old color drained by itself."""
    shutdown = RuntimeApi.shutdown_sessions
    sent: list[ServerRef] = []

    def answer_lost(api: RuntimeApi, ref: ServerRef) -> None:
        shutdown(api, ref)
        sent.append(ref)
        if len(sent) == 1:
            raise RuntimeApiError(f"shutdown sessions server {ref}", "", "connection reset")

    monkeypatch.setattr(RuntimeApi, "shutdown_sessions", answer_lost)
    result, _ = switch_to_green(stack)
    for stream in streams:
        stream.wait_ended(10)
    assert not result.drained
    assert result.closed_sessions == 3, result.notes
    assert any("3 old session(s) still open, closed" in note for note in result.notes)
    entry = read_journal(stack.journal_file)
    assert entry is not None
    [drained] = [step for step in entry.steps if step["step"] == "wait-drained"]
    assert (drained["drained"], drained["closed"]) == (False, 3), drained
    assert stack.served_color() == "green"


def test_drain_close_false_leaves_old_streams_to_end_on_their_own(
    stack: Stack, streams: list[Stream]
) -> None:
    result, _ = switch_to_green(stack, drain_close=False)
    assert result.closed_sessions == 0
    assert any("3 old session(s) finish on their own" in note for note in result.notes)
    after = time.monotonic()
    wait_for(lambda: all(s.events_after(after) > 0 for s in streams), 10, "the old streams to flow")
    assert all(s.ended is None and s.colors == {"blue"} for s in streams)
    assert sessions_on(stack, "blue-api") >= 3


def test_a_sigterm_during_the_drain_ends_it_and_closes_the_old_streams(
    stack: Stack, streams: list[Stream]
) -> None:
    folder = stack.workdir / "gate"
    folder.mkdir()
    (folder / "bluegreen.toml").write_text(stack.settings_toml(drain_timeout=60))
    (folder / "test_checks.py").write_text(CHECKS)
    gate = WatchedGate(folder, "--env", "green", "--switch", "-m", "quick", env=clean_environ())
    try:
        assert gate.said("bluegreen: draining:", 60), gate.text
        signalled = time.monotonic()
        gate.proc.send_signal(signal.SIGTERM)
        code = gate.finish(60)
    finally:
        gate.finish(0.1)
    lines, text = gate.lines, gate.text
    assert any(
        "drain wait cut short by SIGTERM: 3 old session(s) still open, closed" in line
        for line in lines
    ), text
    for stream in streams:
        assert stream.wait_ended(10) >= signalled
        assert stream.colors == {"blue"}
    assert stack.served_color() == "green"
    assert [e["outcome"] for e in history(stack)][-1:] == ["switched"], text
    assert code == 0, text  # past the point of no return a SIGTERM completes the switch: 0


def test_an_error_answer_at_the_close_is_tried_again_and_the_switch_completes(
    stack: Stack, streams: list[Stream], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HAProxy refuses the first close (nothing applied): past the point of no return the step
    is tried again, the streams are closed then, and the switch completes."""
    shutdown = RuntimeApi.shutdown_sessions
    refused: list[ServerRef] = []

    def refuse_once(api: RuntimeApi, ref: ServerRef) -> None:
        if not refused:
            refused.append(ref)
            raise RuntimeApiError(f"shutdown sessions server {ref}", "Internal error.", "refused")
        shutdown(api, ref)

    monkeypatch.setattr(RuntimeApi, "shutdown_sessions", refuse_once)
    result, _ = switch_to_green(stack)
    assert refused
    assert any("'wait-drained' failed" in note for note in result.notes), result.notes
    assert result.closed_sessions == 3, result.notes
    for stream in streams:
        stream.wait_ended(10)
        assert stream.colors == {"blue"}
    assert stack.served_color() == "green"
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert (entry.status, entry.outcome) == ("closed", "switched")


def test_a_step_hook_raising_at_the_drain_still_closes_the_old_streams(
    stack: Stack, streams: list[Stream]
) -> None:
    """Past the point of no return a raising step hook is reported, not obeyed: the drain
    still ends by closing what is left, and the switch completes."""

    def raising(step: str) -> None:
        if step == "wait-drained":
            raise ConnectionError("the notification service does not answer")

    result, _ = switch_to_green(stack, raising)
    assert any("the step hook raised ConnectionError" in note for note in result.notes)
    assert result.closed_sessions == 3, result.notes
    for stream in streams:
        stream.wait_ended(10)
    assert stack.served_color() == "green"
    entry = read_journal(stack.journal_file)
    assert entry is not None
    assert (entry.status, entry.outcome) == ("closed", "switched")


def test_a_reload_never_keeps_a_stream_on_an_old_process_past_hard_stop_after(
    stack_factory: StackFactory,
) -> None:
    """A soft reload (systemctl reload) leaves the open streams with the old process, where
    no Runtime API reaches them and no drain can close them: BG_HARD_STOP_AFTER bounds how
    long (the shipped haproxy.cfg's hard-stop-after), then the clients reconnect to the new
    process."""
    stack = stack_factory(env={"BG_HARD_STOP_AFTER": "1s"})
    opened = [Stream.open(stack.ports["api"]) for _ in range(2)]
    try:
        old = stack.haproxy.proc
        assert old is not None
        reloaded = time.monotonic()
        stack.haproxy.reload(stack.runtime)  # waits for the old process (kills it after 15 s)
        assert old.returncode is not None
        assert old.returncode != -signal.SIGKILL, "the old process outlived hard-stop-after"
        for stream in opened:
            assert stream.wait_ended(10) >= reloaded
        again = Stream.open(stack.ports["api"])
        again.close()
        assert again.colors == {"blue"}
    finally:
        for stream in opened:
            stream.close()
