"""The Runtime API client (pytest_bluegreen/haproxy.py) against a real HAProxy 2.6.

Integration tests talk to the ``stack`` fixture's HAProxy over its admin TCP socket, its admin
unix socket and its operator-level TCP socket. The parser tests run on text captured from that
same HAProxy 2.6.12 (``show stat``: header and the switched backends' rows; ``show servers
state``: complete) while blue answered 3 requests, green failed its health checks (503),
frontend_backend/green-frontend was in maint and frontend_backend/blue-frontend in drain.
"""

# ruff: noqa: E501  (captured HAProxy lines are kept verbatim)

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.address import RuntimeApiAddress
from pytest_bluegreen.haproxy.answers import (
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
from pytest_bluegreen.haproxy.runtime import (
    RuntimeApi,
    _answers,
    state_command,
    supported_version,
    weight_command,
)
from pytest_bluegreen.local.haproxy import EMPTY_SERVER_STATE
from tests.support.faults import RuntimeApiProxy
from tests.support.stack import Stack, wait_for

BLUE_API = ServerRef("api_backend", "blue-api")
GREEN_API = ServerRef("api_backend", "green-api")
MISSING = ServerRef("api_backend", "no-such-server")

CAPTURED_SHOW_STAT = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
api_routing,FRONTEND,,,0,1,4096,3,381,729,0,0,0,,,,,OPEN,,,,,,,,,1,5,0,,,,0,3,0,3,,,,0,3,0,0,0,0,,3,3,3,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,3,3,3,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3,3,456,756,0,0,
api_backend,blue-api,0,0,0,1,,3,381,729,,0,,0,0,0,0,UP,100,1,0,0,0,0,0,,1,10,1,,3,,2,3,,3,L7OK,200,1,0,3,0,0,0,0,,,,3,0,0,,,,,0,,,0,0,1,1,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:46233,,http,,,,,,,,0,3,0,,,2,,0,0,1,1,0,2,0,0,1,100,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
api_backend,green-api,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,0,1,0,2,1,0,0,,1,10,2,,0,,2,0,,0,L7STS,503,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Service Unavailable,,0,0,0,0,,,,Layer7 wrong status,,2,2,0,,,,127.0.0.1:35121,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,0,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
api_backend,BACKEND,0,0,0,1,820,3,381,729,0,0,,0,0,0,0,UP,100,1,0,,0,0,0,,1,10,0,,3,,1,3,,3,,,,0,3,0,0,0,0,,,,3,0,0,0,0,0,0,0,,,0,0,1,1,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,3,0,0,0,,,0,0,1,1,0,,,,,100,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,9,9,2209,528,0,0,
frontend_backend,blue-frontend,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,100,1,0,0,0,0,0,,1,11,1,,0,,2,0,,0,L7OK,200,1,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:46233,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,100,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
frontend_backend,green-frontend,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,0,1,0,1,1,0,0,,1,11,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:35121,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,0,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
frontend_backend,BACKEND,0,0,0,0,820,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,1,0,0,,1,11,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,4,4,925,96,0,0,
"""

CAPTURED_SERVERS_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
10 api_backend 1 blue-api 127.0.0.1 2 0 100 100 0 15 3 3 6 0 0 0 - 46233 - 0 0 - - 0
10 api_backend 2 green-api 127.0.0.1 0 0 0 0 0 17 2 0 6 0 0 0 - 35121 - 0 0 - - 0
11 frontend_backend 1 blue-frontend 127.0.0.1 2 8 100 100 0 15 3 3 6 0 0 0 - 46233 - 0 0 - - 0
11 frontend_backend 2 green-frontend 127.0.0.1 0 1 0 0 0 17 2 0 14 0 0 0 - 35121 - 0 0 - - 0
12 blue_direct 1 blue-api-direct 127.0.0.1 2 0 1 1 0 15 3 3 6 0 0 0 - 46233 - 0 0 - - 0
13 green_direct 1 green-api-direct 127.0.0.1 0 0 1 1 0 17 2 0 6 0 0 0 - 35121 - 0 0 - - 0

"""


# -- helpers ----------------------------------------------------------------------------------
def stat_row(api: RuntimeApi, ref: ServerRef) -> StatRow:
    [row] = [r for r in api.show_stat() if r.ref == ref]
    return row


def server_state(api: RuntimeApi, ref: ServerRef) -> ServerState:
    [state] = [s for s in api.servers_state(ref.backend) if s.ref == ref]
    return state


@contextmanager
def silent_listener() -> Iterator[socket.socket]:
    """A TCP socket on 127.0.0.1 that accepts connections (in the kernel) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener
    finally:
        listener.close()


def address_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()
    return f"{host}:{port}"


def assert_nothing_connected(listener: socket.socket) -> None:
    """A client's connect() completes in the listener's backlog: none there means none made."""
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        pytest.param("2.6.12-1+deb12u4", True, id="debian-12"),
        pytest.param("2.6", True, id="2.6"),
        pytest.param("2.8.5-1ubuntu3", True, id="2.8"),
        pytest.param("3.0.5", True, id="3.0"),
        pytest.param("3.2-dev7", True, id="3.2-dev"),
        pytest.param("10.1.0", True, id="10.1"),
        pytest.param("2.4.22-0+deb11u1", False, id="2.4"),
        pytest.param("2.5.14", False, id="2.5"),
        pytest.param("1.8.30", False, id="1.8"),
        pytest.param("2", False, id="no-minor"),
        pytest.param("unknown", False, id="not-a-version"),
        pytest.param("", False, id="empty"),
    ],
)
def test_supported_versions_are_2_6_or_later(version: str, supported: bool) -> None:
    assert supported_version(version) is supported


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        yield session


# -- transports, version, level -----------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "unix-path", "unix-prefix"])
def test_version_over_each_transport(stack: Stack, transport: str) -> None:
    address = {
        "tcp": stack.runtime,
        "unix-path": str(stack.socket_path),
        "unix-prefix": f"unix:{stack.socket_path}",
    }[transport]
    api = RuntimeApi(address)
    if transport == "tcp":
        assert (api.address.host, api.address.port) == ("127.0.0.1", stack.ports["runtime"])
    else:
        assert api.address.path == str(stack.socket_path)
    assert supported_version(api.version())
    assert api.show_info()["Name"] == "HAProxy"


def test_cli_levels(stack: Stack) -> None:
    assert stack.api().cli_level() == "admin"
    assert RuntimeApi(str(stack.socket_path)).cli_level() == "admin"
    assert RuntimeApi(stack.operator_runtime).cli_level() == "operator"


def test_require_admin(stack: Stack) -> None:
    stack.api().require_admin()
    RuntimeApi(str(stack.socket_path)).require_admin()
    with pytest.raises(RuntimeApiPermissionError) as info:
        RuntimeApi(stack.operator_runtime).require_admin()
    assert info.value.command == "show cli level"
    assert info.value.answer == "operator"
    assert f"at {stack.operator_runtime} is at level 'operator'" in str(info.value)


# -- reading ------------------------------------------------------------------------------
def test_show_stat_rows_for_the_switched_servers(stack: Stack, http: requests.Session) -> None:
    api = stack.api()
    blue, green = stat_row(api, BLUE_API), stat_row(api, GREEN_API)
    assert (blue.status, blue.weight, blue.is_up, blue.check_status) == ("UP", 100, True, "L7OK")
    assert (green.status, green.weight, green.is_up, green.check_status) == ("UP", 0, True, "L7OK")
    for row in (blue, green):
        assert isinstance(row.scur, int)
        assert isinstance(row.stot, int)
        assert row.raw["pxname"] == "api_backend"
    for _ in range(5):
        assert http.get(f"{stack.routed_url}/health", timeout=5).status_code == 200
    blue_after, green_after = stat_row(api, BLUE_API), stat_row(api, GREEN_API)
    assert blue_after.stot - blue.stot == 5
    assert blue_after.hrsp_2xx - blue.hrsp_2xx == 5
    # the last answer's session ends just after the client has read it (a full run saw 1)
    wait_for(lambda: stat_row(api, BLUE_API).scur == 0, 10, "blue-api's sessions to end")
    assert green_after.stot == green.stot
    frontends = {r.backend for r in api.show_stat() if r.server == "FRONTEND"}
    assert {"api_routing", "https_in", "http_in", "stats"} <= frontends


def test_servers_state_gives_weights_and_admin_state(stack: Stack) -> None:
    states = {s.ref: s for s in stack.api().servers_state()}
    blue, green = states[BLUE_API], states[GREEN_API]
    assert (blue.uweight, blue.iweight, blue.admin, blue.op_state) == (100, 100, "ready", 2)
    assert (green.uweight, green.iweight, green.admin, green.op_state) == (0, 0, "ready", 2)
    assert blue.takes_traffic
    assert not green.takes_traffic
    assert blue.address == green.address == "127.0.0.1"
    assert set(states) >= {
        ServerRef("frontend_backend", "blue-frontend"),
        ServerRef("frontend_backend", "green-frontend"),
        ServerRef("blue_direct", "blue-api-direct"),
        ServerRef("green_direct", "green-api-direct"),
    }
    # one backend only
    assert {s.backend for s in stack.api().servers_state("api_backend")} == {"api_backend"}


def test_servers_state_of_unknown_backend(stack: Stack) -> None:
    with pytest.raises(RuntimeApiError, match="Can't find backend") as info:
        stack.api().servers_state("no_such_backend")
    assert type(info.value) is RuntimeApiError  # neither unreachable nor a permission problem
    assert info.value.command == "show servers state no_such_backend"
    assert info.value.answer == "Can't find backend."


# -- changing -----------------------------------------------------------------------------
def test_set_state_drain_maint_ready(stack: Stack) -> None:
    api = stack.api()
    api.set_state(GREEN_API, AdminState.DRAIN)
    state = server_state(api, GREEN_API)
    assert (state.admin, state.admin_state) == (AdminState.DRAIN, 8)
    assert stat_row(api, GREEN_API).status.startswith("DRAIN")

    api.set_state(GREEN_API, AdminState.MAINT)
    state = server_state(api, GREEN_API)
    assert (state.admin, state.admin_state) == (AdminState.MAINT, 1)
    row = stat_row(api, GREEN_API)
    assert (row.status, row.is_up) == ("MAINT", False)

    api.set_state(GREEN_API, AdminState.READY)
    state = server_state(api, GREEN_API)
    assert (state.admin, state.admin_state) == (AdminState.READY, 0)
    assert not stat_row(api, GREEN_API).status.startswith(("MAINT", "DRAIN"))


def test_drained_server_takes_no_traffic_whatever_its_weight(stack: Stack) -> None:
    api = stack.api()
    api.set_state(BLUE_API, AdminState.DRAIN)
    blue = server_state(api, BLUE_API)
    assert (blue.uweight, blue.admin, blue.takes_traffic) == (100, AdminState.DRAIN, False)


def test_set_weight(stack: Stack) -> None:
    api = stack.api()
    api.set_weight(GREEN_API, 50)
    green = server_state(api, GREEN_API)
    assert (green.uweight, green.iweight) == (50, 0)  # the configured weight stays
    assert stat_row(api, GREEN_API).weight == 50
    api.set_weight(GREEN_API, 0)
    assert server_state(api, GREEN_API).uweight == 0


@pytest.mark.parametrize(
    ("change", "command", "answer"),
    [
        (
            lambda api: api.set_weight(MISSING, 5),
            "set server api_backend/no-such-server weight 5",
            "No such server.",
        ),
        (
            lambda api: api.set_state(MISSING, AdminState.DRAIN),
            "set server api_backend/no-such-server state drain",
            "No such server.",
        ),
        (
            lambda api: api.set_state(ServerRef("no_such_backend", "blue-api"), AdminState.MAINT),
            "set server no_such_backend/blue-api state maint",
            "No such backend.",
        ),
    ],
    ids=["weight-unknown-server", "state-unknown-server", "state-unknown-backend"],
)
def test_unknown_server_is_an_error_with_command_and_answer(
    stack: Stack, change: Callable[[RuntimeApi], None], command: str, answer: str
) -> None:
    with pytest.raises(RuntimeApiError) as info:
        change(stack.api())
    assert type(info.value) is RuntimeApiError  # neither unreachable nor a permission problem
    assert info.value.command == command
    assert info.value.answer == answer
    assert answer in str(info.value)


@pytest.mark.parametrize(
    ("change", "command"),
    [
        (
            lambda api: api.set_state(GREEN_API, AdminState.DRAIN),
            "set server api_backend/green-api state drain",
        ),
        (lambda api: api.set_weight(GREEN_API, 100), "set server api_backend/green-api weight 100"),
    ],
    ids=["state", "weight"],
)
def test_operator_level_cannot_change_servers(
    stack: Stack, change: Callable[[RuntimeApi], None], command: str
) -> None:
    operator = RuntimeApi(stack.operator_runtime)
    # HAProxy 2.6 answers "Permission denied" (then an empty line) to 'set server' below admin
    assert operator.execute(command) == "Permission denied\n\n"
    with pytest.raises(RuntimeApiPermissionError) as info:
        change(operator)
    assert info.value.command == command
    assert info.value.answer == "Permission denied"
    green = server_state(stack.api(), GREEN_API)
    assert (green.uweight, green.admin) == (0, AdminState.READY)  # nothing changed
    # reading is allowed at operator level
    assert stat_row(operator, GREEN_API).weight == 0


# --- several commands on one line: one connection for a switch's step on one HAProxy ---------

GREEN_FRONTEND = ServerRef("frontend_backend", "green-frontend")


def test_set_each_sends_every_command_on_one_line_and_says_which_failed(stack: Stack) -> None:
    api = stack.api()
    commands = [
        weight_command(GREEN_API, 40),
        weight_command(MISSING, 5),
        state_command(GREEN_FRONTEND, AdminState.DRAIN),
    ]
    first, missing, last = api.set_each(commands)
    assert first is None
    assert last is None  # HAProxy goes on after a command that fails
    assert type(missing) is RuntimeApiError
    assert (missing.command, missing.answer) == (commands[1], "No such server.")
    assert server_state(api, GREEN_API).uweight == 40
    assert server_state(api, GREEN_FRONTEND).admin is AdminState.DRAIN
    with pytest.raises(RuntimeApiError) as info:
        api.set_all(commands)
    assert info.value.command == commands[1]
    api.set_all([state_command(GREEN_FRONTEND, AdminState.READY)])
    assert server_state(api, GREEN_FRONTEND).admin is AdminState.READY


def test_set_each_at_operator_level_is_a_permission_error_for_each(stack: Stack) -> None:
    operator = RuntimeApi(stack.operator_runtime)
    found = operator.set_each([weight_command(GREEN_API, 40), weight_command(BLUE_API, 0)])
    assert [type(error) for error in found] == [RuntimeApiPermissionError] * 2
    assert server_state(stack.api(), GREEN_API).uweight == 0  # nothing applied


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        ("\n\n", ["", ""]),
        ("\nNo such server.\n\n\n", ["", "No such server.", ""]),
        ("\nNo such server.\n", [""]),  # the second answer cut short: not one
        ("\nNo such", [""]),
        ("", []),
    ],
    ids=["both-applied", "the-second-refused", "cut-after-the-text", "cut-mid-line", "nothing"],
)
def test_the_answers_of_a_line_of_commands(answer: str, found: list[str]) -> None:
    assert _answers(answer) == found


def test_an_answer_lost_on_a_line_leaves_every_command_unknown(stack: Stack) -> None:
    proxy = RuntimeApiProxy(("127.0.0.1", stack.ports["runtime"]))
    try:
        proxy.lose_answers("set server")
        commands = [weight_command(GREEN_API, 40), weight_command(BLUE_API, 60)]
        found = RuntimeApi(proxy.address).set_each(commands)
        assert [type(error) for error in found] == [RuntimeApiUnreachable] * 2
        assert proxy.lost == ["; ".join(commands)]
        api = stack.api()  # applied: HAProxy answered, the answer never came back
        assert (server_state(api, GREEN_API).uweight, server_state(api, BLUE_API).uweight) == (
            40,
            60,
        )
        proxy.fail_next.set()  # refused before HAProxy: the first said, the next unknown
        refused, after = RuntimeApi(proxy.address).set_each(commands)
        assert type(refused) is RuntimeApiError
        assert refused.answer == "No such server."
        assert type(after) is RuntimeApiUnreachable
    finally:
        proxy.close()


def test_a_multi_command_line_is_never_sent_from_one_command(stack: Stack) -> None:
    with pytest.raises(RuntimeApiError, match="multi-command line"):
        stack.api().set_all([f"{weight_command(GREEN_API, 40)}; show info"])
    assert server_state(stack.api(), GREEN_API).uweight == 0


# -- unreachable ----------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_stopped_haproxy_is_unreachable_quickly(stack: Stack, transport: str) -> None:
    address = stack.runtime if transport == "tcp" else str(stack.socket_path)
    api = RuntimeApi(address, timeout=0.5)
    assert supported_version(api.version())
    stack.haproxy.stop()
    started = time.monotonic()
    with pytest.raises(RuntimeApiUnreachable) as info:
        api.show_stat()
    assert time.monotonic() - started < 1
    shown = stack.runtime if transport == "tcp" else f"unix:{stack.socket_path}"
    assert f"HAProxy Runtime API at {shown} is unreachable" in str(info.value)
    assert info.value.command == "show stat"


def test_missing_socket_path_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "admin.sock"
    with pytest.raises(RuntimeApiUnreachable) as info:
        RuntimeApi(str(path), timeout=0.5).cli_level()
    assert f"unix:{path} is unreachable" in str(info.value)
    assert "No such file or directory" in str(info.value)


def test_silent_socket_times_out_within_the_timeout() -> None:
    with silent_listener() as listener:
        address = address_of(listener)
        api = RuntimeApi(address, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RuntimeApiUnreachable) as info:
            api.show_info()
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5
    assert f"HAProxy Runtime API at {address} failed on 'show info': timed out" == str(info.value)


# -- validation before sending --------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "error", "complaint"),
    [
        (
            lambda api: api.set_weight(ServerRef("api_backend", "blue;api"), 0),
            ValueError,
            "not a valid HAProxy proxy or server name: 'blue;api'",
        ),
        (
            lambda api: api.set_weight(ServerRef("api_backend", "blue\napi"), 0),
            ValueError,
            "not a valid HAProxy proxy or server name: 'blue\\napi'",
        ),
        (
            lambda api: api.set_state(ServerRef("api;backend", "x"), AdminState.MAINT),
            ValueError,
            "not a valid HAProxy proxy or server name: 'api;backend'",
        ),
        (
            lambda api: api.set_state(ServerRef("api_backend", "a b"), AdminState.MAINT),
            ValueError,
            "not a valid HAProxy proxy or server name: 'a b'",
        ),
        (
            lambda api: api.set_state(ServerRef("api_backend", ""), AdminState.MAINT),
            ValueError,
            "not a valid HAProxy proxy or server name: ''",
        ),
        (
            lambda api: api.set_weight(GREEN_API, 257),
            ValueError,
            "HAProxy weights are 0..256, not 257",
        ),
        (
            lambda api: api.set_weight(GREEN_API, -1),
            ValueError,
            "HAProxy weights are 0..256, not -1",
        ),
        (
            lambda api: api.servers_state("api_backend;show info"),
            ValueError,
            "not a valid HAProxy proxy or server name: 'api_backend;show info'",
        ),
        (
            lambda api: api.execute("show info; show stat"),
            RuntimeApiError,
            "refusing to send a multi-command line 'show info; show stat'",
        ),
        (
            lambda api: api.execute("show info\nshow stat"),
            RuntimeApiError,
            "refusing to send a multi-command line 'show info\\nshow stat'",
        ),
        (
            lambda api: api.execute("show info\r"),
            RuntimeApiError,
            "refusing to send a multi-command line 'show info\\r'",
        ),
    ],
    ids=[
        "semicolon-server",
        "newline-server",
        "semicolon-backend",
        "space",
        "empty",
        "weight-257",
        "weight-negative",
        "semicolon-show-backend",
        "execute-semicolon",
        "execute-newline",
        "execute-cr",
    ],
)
def test_bad_input_is_rejected_before_anything_is_sent(
    call: Callable[[RuntimeApi], object], error: type[Exception], complaint: str
) -> None:
    with silent_listener() as listener:
        api = RuntimeApi(address_of(listener), timeout=0.3)
        with pytest.raises(error, match=f"^{re.escape(complaint)}$") as raised:
            call(api)
        assert type(raised.value) is error
        assert_nothing_connected(listener)


@pytest.mark.parametrize(
    "text", ["api_backend", "api_backend/", "/blue-api", "a/b/c", "api backend/x", "api;x/y", ""]
)
def test_bad_server_refs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a HAProxy server reference"):
        ServerRef.parse(text)


def test_server_ref_round_trip() -> None:
    ref = ServerRef.parse(" api_backend/green-api ")
    assert ref == GREEN_API
    assert str(ref) == "api_backend/green-api"


def test_trailing_newline_in_a_name_fails_the_name_check() -> None:
    with silent_listener() as listener:
        api = RuntimeApi(address_of(listener), timeout=0.3)
        with pytest.raises(ValueError, match="not a valid HAProxy proxy or server name"):
            api.set_weight(ServerRef("api_backend", "green-api\n"), 0)
        assert_nothing_connected(listener)


def test_connection_closed_without_any_answer_is_not_a_success() -> None:
    with silent_listener() as listener:
        listener.settimeout(5)
        received: list[bytes] = []

        def close_after_reading() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                received.append(conn.recv(4096))

        server = threading.Thread(target=close_after_reading, daemon=True)
        server.start()
        api = RuntimeApi(address_of(listener), timeout=2)
        try:
            # not a success, and not HAProxy refusing: it went away (a reload, a crash)
            with pytest.raises(
                RuntimeApiUnreachable, match="closed the connection without answering"
            ):
                api.set_weight(GREEN_API, 100)
        finally:
            server.join(5)
    assert received == [b"set server api_backend/green-api weight 100\n"]


# -- server-state file across restarts ------------------------------------------------------
def test_saved_server_state_survives_a_restart(stack: Stack) -> None:
    api = stack.api()
    api.set_weight(BLUE_API, 0)
    api.set_weight(GREEN_API, 100)
    api.save_server_state(stack.server_state_file)
    text = stack.server_state_file.read_text()
    assert text.startswith("1\n# be_id be_name")
    assert {(s.server, s.uweight) for s in parse_servers_state(text)} >= {
        ("blue-api", 0),
        ("green-api", 100),
    }

    stack.restart_haproxy()
    assert stack.haproxy.starts == 2
    api = stack.api()
    assert (server_state(api, BLUE_API).uweight, server_state(api, GREEN_API).uweight) == (0, 100)
    assert (stat_row(api, BLUE_API).weight, stat_row(api, GREEN_API).weight) == (0, 100)
    assert stack.served_color() == "green"


def test_saved_admin_states_survive_a_restart(stack: Stack) -> None:
    api = stack.api()
    drained = ServerRef("frontend_backend", "blue-frontend")
    api.set_state(drained, AdminState.DRAIN)
    api.set_state(GREEN_API, AdminState.MAINT)
    api.save_server_state(stack.server_state_file)
    # stack.restart_haproxy() waits for every server to be UP; a drained or maint one is not
    stack.haproxy.stop()
    stack.haproxy.start(stack.runtime)
    api = stack.api()
    assert server_state(api, drained).admin is AdminState.DRAIN
    assert server_state(api, GREEN_API).admin is AdminState.MAINT
    assert server_state(api, BLUE_API).admin is AdminState.READY


def test_unsaved_runtime_changes_are_lost_on_restart(stack: Stack) -> None:
    api = stack.api()
    api.set_weight(BLUE_API, 0)
    api.set_weight(GREEN_API, 100)
    assert stack.server_state_file.read_text() == EMPTY_SERVER_STATE  # nothing saved
    stack.restart_haproxy()
    api = stack.api()
    assert (server_state(api, BLUE_API).uweight, server_state(api, GREEN_API).uweight) == (100, 0)
    assert stack.served_color() == "blue"


# -- RuntimeApiAddress.parse (no HAProxy) -------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        (
            "unix:/run/haproxy/admin.sock",
            RuntimeApiAddress(path="/run/haproxy/admin.sock"),
            "unix:/run/haproxy/admin.sock",
        ),
        (
            "/run/haproxy/admin.sock",
            RuntimeApiAddress(path="/run/haproxy/admin.sock"),
            "unix:/run/haproxy/admin.sock",
        ),
        ("./admin.sock", RuntimeApiAddress(path="./admin.sock"), "unix:./admin.sock"),
        ("unix:admin.sock", RuntimeApiAddress(path="admin.sock"), "unix:admin.sock"),
        ("127.0.0.1:9999", RuntimeApiAddress(host="127.0.0.1", port=9999), "127.0.0.1:9999"),
        ("tcp:127.0.0.1:9999", RuntimeApiAddress(host="127.0.0.1", port=9999), "127.0.0.1:9999"),
        ("ipv4@127.0.0.1:9999", RuntimeApiAddress(host="127.0.0.1", port=9999), "127.0.0.1:9999"),
        (
            "  localhost:65535 \n",
            RuntimeApiAddress(host="localhost", port=65535),
            "localhost:65535",
        ),
        # leading zeros, as HAProxy takes them in a bind or stats socket line
        ("127.0.0.1:009999", RuntimeApiAddress(host="127.0.0.1", port=9999), "127.0.0.1:9999"),
    ],
)
def test_address_parse(text: str, expected: RuntimeApiAddress, shown: str) -> None:
    parsed = RuntimeApiAddress.parse(text)
    assert parsed == expected
    assert str(parsed) == shown


def test_address_parse_bracketed_ipv6() -> None:
    assert RuntimeApiAddress.parse("[::1]:20000") == RuntimeApiAddress(host="::1", port=20000)


@pytest.mark.parametrize("text", ["unix:/run/a.sock", "/run/a.sock", "127.0.0.1:20000"])
def test_address_str_parses_back(text: str) -> None:
    address = RuntimeApiAddress.parse(text)
    assert RuntimeApiAddress.parse(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "unix:",
        "admin.sock",
        "127.0.0.1",
        "127.0.0.1:",
        ":9999",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:http",
        "127.0.0.1:\u00b2",  # str.isdigit() says yes, int() says no
        "127.0.0.1:\u0663",  # an Arabic-Indic 3: int() reads it, HAProxy does not
        "127.0.0.1:" + "9" * 5000,  # past int()'s 4300 digits
        "tcp:",
        "ipv4@",
        "unix@/run/haproxy/admin.sock",
    ],
)
def test_address_parse_rejects(text: str) -> None:
    if not text.strip():
        complaint = "the Runtime API address is empty"
    elif text == "unix:":
        complaint = "unix: needs a socket path"
    else:
        complaint = f"Runtime API address {text!r} is neither a socket path nor host:port"
    with pytest.raises(ValueError, match=f"^{re.escape(complaint)}$"):
        RuntimeApiAddress.parse(text)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("http://127.0.0.1:9999", "http://127.0.0.1"),
        ("::1", ":"),
        ("ipv6@[::1]:9999", "ipv6@[::1]"),
    ],
)
def test_address_parse_rejects_malformed_hosts(text: str, host: str) -> None:
    complaint = f"Runtime API address {text!r}: {host!r} is not a host name or IPv4 address"
    with pytest.raises(ValueError, match=f"^{re.escape(complaint)}$"):
        RuntimeApiAddress.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "tcp://admin:hunter2-pw@127.0.0.1:9999",
        "admin:hunter2-pw@127.0.0.1:9999",
        "tls://admin:hunter2-pw@10.0.0.1:9999",
        "admin:hunter2-pw@[::1]:9999",
    ],
)
def test_a_password_given_in_an_address_is_not_said(text: str) -> None:
    """A user and password written into the address (a URL's habit): refused, and the error
    line names the address without them."""
    with pytest.raises(ValueError, match=r"^Runtime API address ") as raised:
        RuntimeApiAddress.parse(text)
    assert "hunter2-pw" not in str(raised.value)
    assert "***@" in str(raised.value)


# -- parsers on captured HAProxy 2.6 text ---------------------------------------------------
def test_parse_show_stat_on_captured_text() -> None:
    rows = {(r.backend, r.server): r for r in parse_show_stat(CAPTURED_SHOW_STAT)}
    assert set(rows) == {
        ("api_routing", "FRONTEND"),
        ("api_backend", "blue-api"),
        ("api_backend", "green-api"),
        ("api_backend", "BACKEND"),
        ("frontend_backend", "blue-frontend"),
        ("frontend_backend", "green-frontend"),
        ("frontend_backend", "BACKEND"),
    }
    blue = rows["api_backend", "blue-api"]
    assert (blue.status, blue.weight, blue.scur, blue.stot) == ("UP", 100, 0, 3)
    assert (blue.hrsp_2xx, blue.hrsp_5xx, blue.check_status) == (3, 0, "L7OK")
    assert blue.is_up
    assert blue.ref == BLUE_API
    assert blue.raw["addr"].startswith("127.0.0.1:")
    green = rows["api_backend", "green-api"]
    assert (green.status, green.check_status, green.raw["check_code"]) == ("DOWN", "L7STS", "503")
    assert not green.is_up
    drained = rows["frontend_backend", "blue-frontend"]
    assert (drained.status, drained.weight, drained.is_up) == ("DRAIN", 100, True)
    maint = rows["frontend_backend", "green-frontend"]
    assert (maint.status, maint.is_up) == ("MAINT", False)
    assert rows["frontend_backend", "BACKEND"].status == "DOWN"  # no server takes traffic
    assert rows["api_routing", "FRONTEND"].stot == 3
    assert "" not in blue.raw  # the trailing comma of each line makes no column


@pytest.mark.parametrize(
    ("status", "up"),
    [
        ("UP", True),
        ("UP 1/2", False),  # going down: not a server to move traffic to
        ("DOWN 1/2", False),  # going up, still down
        ("DOWN", False),
        ("DRAIN", True),
        ("NOLB", True),
        ("MAINT", False),
        ("MAINT (resolution)", False),
        ("no check", False),  # not known to be healthy
    ],
)
def test_stat_row_is_up(status: str, up: bool) -> None:
    row = StatRow("b", "s", status, 1, 0, 0, 0, 0, "", {})
    assert row.is_up is up


def test_parse_servers_state_on_captured_text() -> None:
    states = {s.ref: s for s in parse_servers_state(CAPTURED_SERVERS_STATE)}
    assert len(states) == 6
    blue = states[BLUE_API]
    assert (blue.op_state, blue.admin, blue.uweight, blue.iweight) == (2, "ready", 100, 100)
    assert (blue.address, blue.check_status, blue.check_result) == ("127.0.0.1", 15, 3)
    assert blue.takes_traffic
    green = states[GREEN_API]
    assert (green.op_state, green.admin, green.uweight, green.iweight) == (0, "ready", 0, 0)
    assert (green.check_status, green.check_result) == (17, 2)
    drained = states[ServerRef("frontend_backend", "blue-frontend")]
    assert (drained.admin_state, drained.admin, drained.uweight) == (8, AdminState.DRAIN, 100)
    assert not drained.takes_traffic
    maint = states[ServerRef("frontend_backend", "green-frontend")]
    assert (maint.admin_state, maint.admin) == (1, AdminState.MAINT)
    direct = states[ServerRef("blue_direct", "blue-api-direct")]
    assert (direct.uweight, direct.iweight) == (1, 1)


@pytest.mark.parametrize(
    ("admin_state", "admin"),
    [
        (0, "ready"),
        (0x01, "maint"),
        (0x02, "maint"),
        (0x04, "maint"),
        (0x08, "drain"),
        (0x10, "drain"),
        (0x01 | 0x08, "maint"),
        # resolution maint: an empty server-template slot, not a state the Runtime API sets
        (0x20, "ready"),
        (0x20 | 0x40, "ready"),
        (0x20 | 0x01, "maint"),
        (0x20 | 0x08, "drain"),
    ],
)
def test_admin_state_bits(admin_state: int, admin: str) -> None:
    state = ServerState("b", "s", "127.0.0.1", 2, admin_state, 1, 1, 0, 0)
    assert state.admin == admin
    assert state.empty is bool(admin_state & 0x20)
    assert state.takes_traffic is (admin == "ready" and not state.empty)


def test_parse_servers_state_edge_cases() -> None:
    assert parse_servers_state("") == []
    assert parse_servers_state("\n\n") == []
    with pytest.raises(RuntimeApiError, match="unsupported servers state format '2'"):
        parse_servers_state("2\n# be_id be_name\n1 x\n")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"
            "3 api_backend 1 blue-api 127.0.0.1 2 0\n",
            id="no-weight-columns",
        ),
        pytest.param(
            "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
            "srv_uweight srv_iweight\n3 api_backend 1 blue-api 127.0.0.1 2 0\n",
            id="line-cut-short",
        ),
    ],
)
def test_a_servers_state_the_gate_cannot_read_is_an_error(text: str) -> None:
    # a missing weight read as 0 would be written back by a revert
    with pytest.raises(RuntimeApiError, match="show servers state"):
        parse_servers_state(text)
