"""Sticky users during a canary, on the real HAProxy of the shipped haproxy.cfg: with both
colors weighted and ``RuntimeApi.set_sticky(True)``, a client keeps the color that first
answered it (one cookie for the API and the frontend) through every public entry, and fresh
clients still see both colors; with it off (the default, and after a reload) a client holding
the cookie is balanced by the weights again. Off matters: with it on, HAProxy keeps sending a
sticky client to a server at weight 0 or draining, which is why the gate turns it off before
the full switch or an abort. Each canary has its own id: a cookie kept from an earlier canary
counts for nothing, and a client holding one is balanced by the weights and given fresh
ones."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.answers import (
    AdminState,
    RuntimeApiError,
    RuntimeApiPermissionError,
    RuntimeApiUnreachable,
    ServerRef,
)
from pytest_bluegreen.haproxy.runtime import RuntimeApi
from pytest_bluegreen.haproxy.sticky import (
    CANARY_COOKIE,
    CANARY_VAR,
    COOKIE,
    backend_lines,
    is_canary_id,
    new_canary_id,
    secure_line,
    server_option,
    shipped_lines,
)
from tests.support.preview import entries
from tests.support.stack import HAPROXY_CFG, Stack

COLOR = "X-Bluegreen-Color"
COLORS = ("blue", "green")
REQUESTS = 12  # per client: roundrobin at 50/50 alternates, so an unstuck client sees both
ID = "c0123456789ab"  # a canary id, for the scripted Runtime API


def servers(color: str) -> list[ServerRef]:
    return [
        ServerRef("api_backend", f"{color}-api"),
        ServerRef("frontend_backend", f"{color}-frontend"),
    ]


def split(api: RuntimeApi, blue: int, green: int) -> None:
    """Both switched backends at these weights, every server ready (a canary's split)."""
    for color, weight in (("blue", blue), ("green", green)):
        for ref in servers(color):
            api.set_weight(ref, weight)
            api.set_state(ref, AdminState.READY)


@pytest.fixture
def client(tls_cert: Path) -> Iterator[Callable[[], requests.Session]]:
    """A fresh client (a browser): a session keeps the cookies it is given."""
    sessions: list[requests.Session] = []

    def fresh() -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        session.verify = str(tls_cert)
        sessions.append(session)
        return session

    yield fresh
    for session in sessions:
        session.close()


def color_of(session: requests.Session, url: str) -> str:
    response = session.get(url, timeout=5)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response.headers[COLOR]


def colors_of(session: requests.Session, url: str, count: int = REQUESTS) -> list[str]:
    return [color_of(session, url) for _ in range(count)]


@pytest.fixture
def canary(stack: Stack) -> RuntimeApi:
    """Blue and green at 50 each, sticky users on."""
    api = stack.api()
    split(api, 50, 50)
    api.set_sticky(True)
    return api


# -- the switch on the Runtime API ------------------------------------------------------------
def test_sticky_is_off_until_set_and_reads_back(stack: Stack) -> None:
    api = stack.api()
    assert api.execute(f"get var {CANARY_VAR}").strip() == "Variable not found."
    assert (api.sticky(), api.sticky_id()) == (False, None)
    api.set_sticky(True)
    first = api.sticky_id()
    assert first is not None
    assert is_canary_id(first)
    assert len(first) == 13, first  # c and 12 hex digits
    assert api.sticky() is True
    assert api.execute(f"get var {CANARY_VAR}").strip() == f"{CANARY_VAR}: type=str value=<{first}>"
    api.set_sticky(True)  # the next canary: another id
    second = api.sticky_id()
    assert second is not None
    assert second != first
    api.set_sticky(True, canary=ID)  # a group's one id
    assert api.sticky_id() == ID
    api.set_sticky(False)
    assert (api.sticky(), api.sticky_id()) == (False, None)
    assert api.execute(f"get var {CANARY_VAR}").strip() == f"{CANARY_VAR}: type=sint value=<0>"
    # reading needs the operator level only
    assert RuntimeApi(stack.operator_runtime).sticky() is False


def test_fresh_ids_differ() -> None:
    ids = {new_canary_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(is_canary_id(i) and len(i) == 13 for i in ids), ids


@pytest.mark.parametrize("bad", ["", "c", "0123", "cABC", "c12 3", "c1)", "c1; set var x int(1)"])
def test_anything_but_a_canary_id_is_refused_before_it_is_sent(stack: Stack, bad: str) -> None:
    api = stack.api()
    with pytest.raises(RuntimeApiError, match="not a canary id") as refused:
        api.set_sticky(True, canary=bad)
    assert type(refused.value) is RuntimeApiError
    assert api.execute(f"get var {CANARY_VAR}").strip() == "Variable not found."


def test_setting_it_below_the_admin_level_is_refused(stack: Stack) -> None:
    """``set var`` needs experimental mode, and HAProxy turns that on at the admin level only:
    an operator-level socket's answer is an error, and nothing changed."""
    with pytest.raises(RuntimeApiPermissionError) as refused:
        RuntimeApi(stack.operator_runtime).set_sticky(True, canary=ID)
    assert refused.value.command == f"set var {CANARY_VAR} str({ID})"
    assert "Permission denied" in refused.value.answer
    assert stack.api().sticky() is False


@contextmanager
def scripted(answer: bytes) -> Iterator[tuple[RuntimeApi, list[bytes]]]:
    """A Runtime API that reads one line, answers ``answer`` and closes; what it read."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        received: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                received.append(conn.recv(4096))
                conn.sendall(answer)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        host, port = listener.getsockname()
        try:
            yield RuntimeApi(f"{host}:{port}", timeout=2), received
        finally:
            server.join(5)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(b"", RuntimeApiUnreachable, id="closed-at-once"),
        # experimental-mode's empty line came, the answer to "set var" did not
        pytest.param(b"\n", RuntimeApiUnreachable, id="closed-after-the-mode"),
        pytest.param(b"\nunknown fetch method 'nosuch'\n", RuntimeApiError, id="error-answer"),
        pytest.param(b"\n\n", None, id="success"),
    ],
)
def test_what_set_sticky_makes_of_each_answer(
    answer: bytes, error: type[RuntimeApiError] | None
) -> None:
    with scripted(answer) as (api, received):
        if error is None:
            api.set_sticky(True, canary=ID)
        else:
            with pytest.raises(error) as raised:
                api.set_sticky(True, canary=ID)
            assert type(raised.value) is error
        assert received == [f"experimental-mode on; set var {CANARY_VAR} str({ID})\n".encode()]


@pytest.mark.parametrize(
    ("answer", "canary"),
    [
        pytest.param(b"Variable not found.\n\n", None, id="unset"),
        pytest.param(f"{CANARY_VAR}: type=str value=<{ID}>\n".encode(), ID, id="an-id"),
        pytest.param(f"{CANARY_VAR}: type=sint value=<0>\n".encode(), None, id="zero"),
        # the 1 of an earlier version: the shipped rules want an id, so it holds nobody
        pytest.param(f"{CANARY_VAR}: type=sint value=<1>\n".encode(), None, id="one"),
        pytest.param(f"{CANARY_VAR}: type=str value=<cafe!>\n".encode(), None, id="not-an-id"),
    ],
)
def test_what_sticky_makes_of_each_answer(answer: bytes, canary: str | None) -> None:
    with scripted(answer) as (api, received):
        assert api.sticky_id() == canary
        assert received == [f"get var {CANARY_VAR}\n".encode()]
    with scripted(answer) as (api, _):
        assert api.sticky() is (canary is not None)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(b"", RuntimeApiUnreachable, id="closed"),
        pytest.param(b"Permission denied\n\n", RuntimeApiPermissionError, id="permission"),
        pytest.param(b"Unknown command: 'get'\n\n", RuntimeApiError, id="unknown-command"),
        pytest.param(b"proc.other: type=sint value=<1>\n", RuntimeApiError, id="another-var"),
    ],
)
def test_sticky_raises_on_any_other_answer(answer: bytes, error: type[RuntimeApiError]) -> None:
    with scripted(answer) as (api, _):
        with pytest.raises(error) as raised:
            api.sticky()
        assert type(raised.value) is error


# -- what clients see -----------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["https-api", "https-frontend", "routed-api", "routed-frontend"])
def test_on_a_client_keeps_its_color_and_clients_see_both(
    stack: Stack, canary: RuntimeApi, client: Callable[[], requests.Session], entry: str
) -> None:
    url = entries(stack)[entry]
    firsts: list[str] = []
    for _ in range(6):
        session = client()
        seen = colors_of(session, url)
        assert seen == [seen[0]] * REQUESTS, seen
        assert session.cookies.get(COOKIE) == seen[0]
        firsts.append(seen[0])
    assert set(firsts) == set(COLORS), firsts


def test_one_cookie_keeps_the_api_and_the_frontend_on_one_color(
    stack: Stack, canary: RuntimeApi, client: Callable[[], requests.Session]
) -> None:
    https = entries(stack)
    firsts: set[str] = set()
    for _ in range(4):
        session = client()
        first = color_of(session, https["https-frontend"])
        firsts.add(first)
        for _ in range(REQUESTS // 2):
            assert color_of(session, https["https-api"]) == first
            assert color_of(session, https["https-frontend"]) == first
    assert firsts == set(COLORS)


@pytest.mark.parametrize("entry", ["https-api", "routed-api"])
def test_the_cookie_as_haproxy_sets_it_and_the_colors_never_hear_it(
    stack: Stack, canary: RuntimeApi, client: Callable[[], requests.Session], entry: str
) -> None:
    """The sticky cookie and the canary's id: HttpOnly everywhere, Secure over TLS only (a
    client of the plain-HTTP entries must send them back); set once; taken out of the request
    before a color sees them, other cookies kept."""
    url = entries(stack)[entry]
    session = client()
    first = session.get(url, timeout=5)
    color = first.headers[COLOR]
    secure = ["Secure"] if url.startswith("https:") else []
    given = [[a.strip() for a in c.split(";")] for c in first.raw.headers.getlist("Set-Cookie")]
    assert sorted(given) == [
        [f"{CANARY_COOKIE}={canary.sticky_id()}", "Path=/", "HttpOnly", *secure],
        [f"{COOKIE}={color}", "path=/", "HttpOnly", *secure],
    ]
    session.cookies.set("other", "kept", domain="127.0.0.1", path="/")
    again = session.get(url, timeout=5)
    assert again.headers[COLOR] == color
    assert "Set-Cookie" not in again.headers  # it has the cookie already (indirect)
    assert again.json()["heard"]["Cookie"] == "other=kept"


RETURNING = 40  # users back from an earlier canary, one request each at the next one


def returning(client: Callable[[], requests.Session], earlier: str | None) -> requests.Session:
    """A user who got green in an earlier canary (``earlier``: its id, or None: from before
    canaries had ids) and kept its session cookies."""
    session = client()
    session.cookies.set(COOKIE, "green", domain="127.0.0.1", path="/")
    if earlier is not None:
        session.cookies.set(CANARY_COOKIE, earlier, domain="127.0.0.1", path="/")
    return session


@pytest.mark.parametrize("entry", ["https-api", "routed-frontend"])
@pytest.mark.parametrize("earlier", ["aborted", "no-id"])
def test_a_cookie_from_an_earlier_canary_counts_for_nothing(
    stack: Stack, client: Callable[[], requests.Session], entry: str, earlier: str
) -> None:
    """Users who got green in an earlier canary (aborted: persistence went off with their
    cookies held) come back at the next one, green at 5: the weights place them, each is
    given the new canary's id and a cookie for the color it got, and keeps that color."""
    url = entries(stack)[entry]
    api = stack.api()
    split(api, 0, 100)
    api.set_sticky(True)
    first = client()
    assert color_of(first, url) == "green"
    assert first.cookies.get(COOKIE) == "green"
    aborted = first.cookies.get(CANARY_COOKIE)
    assert aborted == api.sticky_id()
    api.set_sticky(False)  # the canary aborted

    split(api, 95, 5)
    api.set_sticky(True)  # the next canary
    current = api.sticky_id()
    assert current is not None
    assert current != aborted
    users = [returning(client, aborted if earlier == "aborted" else None) for _ in range(RETURNING)]
    got = [color_of(user, url) for user in users]
    assert got.count("green") <= RETURNING // 10, got  # 5% of 40 is 2; all 40 before the ids
    assert "blue" in got
    for user, color in zip(users, got, strict=True):
        assert user.cookies.get(COOKIE) == color
        assert user.cookies.get(CANARY_COOKIE) == current
    for user, color in zip(users, got, strict=True):  # now users of this canary: they stay
        assert set(colors_of(user, url, 3)) == {color}


def test_a_user_of_the_current_canary_keeps_its_color_even_at_a_small_weight(
    stack: Stack, client: Callable[[], requests.Session]
) -> None:
    """The same cookie with the current id is honoured; without it the weights decide."""
    api = stack.api()
    split(api, 95, 5)
    api.set_sticky(True)
    current = api.sticky_id()
    assert current is not None
    url = entries(stack)["https-frontend"]
    held = returning(client, current)
    assert set(colors_of(held, url)) == {"green"}
    assert held.cookies.get(CANARY_COOKIE) == current
    stale = returning(client, new_canary_id())  # another canary's id: the weights decide
    first = color_of(stale, url)
    assert (stale.cookies.get(COOKIE), stale.cookies.get(CANARY_COOKIE)) == (first, current)
    assert set(colors_of(stale, url)) == {first}


OTHERS = "app=1; bluegreen_preview=green; z=2"  # the app's and the preview route's, kept


@pytest.mark.parametrize(
    ("sent", "heard"),
    [
        pytest.param(f"{COOKIE}=green; {OTHERS}", OTHERS, id="sticky-first"),
        pytest.param(f"app=1; {COOKIE}=green; bluegreen_preview=green; z=2", OTHERS, id="middle"),
        pytest.param(f"{OTHERS}; {COOKIE}=green", OTHERS, id="sticky-last"),
        pytest.param(f"app=1;{COOKIE}=green;z=2", "app=1;z=2", id="no-spaces"),
        pytest.param(f"{CANARY_COOKIE}=cold; {OTHERS}; {COOKIE}=green", OTHERS, id="both"),
        pytest.param(f"{OTHERS}; {COOKIE}=green; {CANARY_COOKIE}=cold", OTHERS, id="both-last"),
        pytest.param(f"{COOKIE}=green; {CANARY_COOKIE}=cold", None, id="only-ours"),
        pytest.param(f"x{COOKIE}=1; {COOKIE}_apix=2", f"x{COOKIE}=1; {COOKIE}_apix=2", id="alike"),
        pytest.param(OTHERS, OTHERS, id="none-of-ours"),
    ],
)
@pytest.mark.parametrize("sticky", [True, False], ids=["canary", "off"])
def test_the_other_cookies_reach_the_color_as_they_were(
    stack: Stack,
    client: Callable[[], requests.Session],
    sent: str,
    heard: str | None,
    sticky: bool,
) -> None:
    """A stale sticky cookie and every canary id are taken out of the request, whatever their
    place; the color hears the other cookies as the client sent them, in order (off, HAProxy's
    own removal of the sticky cookie, as ever, puts a space after each ";")."""
    api = stack.api()
    split(api, 50, 50)
    api.set_sticky(sticky)
    answer = client().get(entries(stack)["routed-api"], headers={"Cookie": sent}, timeout=5)
    assert answer.status_code == 200, answer.text[:200]
    cookies = answer.json()["heard"]["Cookie"]
    if sticky or cookies is None or heard is None:
        assert cookies == heard
    else:
        assert [c.strip() for c in cookies.split(";")] == [c.strip() for c in heard.split(";")]
    given = answer.raw.headers.getlist("Set-Cookie")
    assert len(given) == (2 if sticky else 0), given


@pytest.mark.parametrize("entry", ["https-api", "routed-frontend"])
def test_off_a_client_holding_the_cookie_is_balanced_again(
    stack: Stack, canary: RuntimeApi, client: Callable[[], requests.Session], entry: str
) -> None:
    url = entries(stack)[entry]
    session = client()
    color = color_of(session, url)
    assert session.cookies.get(COOKIE) == color
    canary.set_sticky(False)
    seen = [session.get(url, timeout=5) for _ in range(REQUESTS)]
    assert {r.headers[COLOR] for r in seen} == set(COLORS)
    assert not any("Set-Cookie" in r.headers for r in seen)  # none given while off
    assert session.cookies.get(COOKIE) == color  # held all along: HAProxy ignores it


def test_off_from_the_start_a_cookie_picks_nothing(
    stack: Stack, client: Callable[[], requests.Session]
) -> None:
    """Never turned on (every HAProxy between canaries): a client naming a color is balanced,
    and no cookie is handed out."""
    split(stack.api(), 50, 50)
    for name, url in entries(stack).items():
        session = client()
        session.cookies.set(COOKIE, "green", domain="127.0.0.1", path="/")
        seen = [session.get(url, timeout=5) for _ in range(REQUESTS)]
        assert {r.headers[COLOR] for r in seen} == set(COLORS), name
        assert not any("Set-Cookie" in r.headers for r in seen), name


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda api, ref: api.set_weight(ref, 0), id="weight-0"),
        pytest.param(lambda api, ref: api.set_state(ref, AdminState.DRAIN), id="drain"),
    ],
)
def test_on_a_client_stays_on_a_server_the_switch_takes_out_so_the_gate_turns_it_off(
    stack: Stack,
    canary: RuntimeApi,
    client: Callable[[], requests.Session],
    leave: Callable[[RuntimeApi, ServerRef], None],
) -> None:
    """Why persistence is off outside a canary: a switch drains the old color and sets it to
    weight 0, and HAProxy still honours the cookie of such a server. The gate turns sticky off
    before the full switch or an abort; then every client moves."""
    https = entries(stack)
    session = client()
    color = color_of(session, https["https-frontend"])
    other = next(c for c in COLORS if c != color)
    for ref in servers(color):
        leave(canary, ref)
    fresh = client()
    assert set(colors_of(fresh, https["https-api"])) == {other}  # new clients: the weights
    for name in ("https-api", "https-frontend"):
        assert set(colors_of(session, https[name])) == {color}, name  # still held on
    canary.set_sticky(False)
    for name in ("https-api", "https-frontend"):
        assert set(colors_of(session, https[name])) == {other}, name


def test_a_reload_forgets_it_and_clients_are_balanced(
    stack: Stack, canary: RuntimeApi, client: Callable[[], requests.Session]
) -> None:
    """A reload (or restart) of HAProxy loses the variable: persistence off, the safe side."""
    url = entries(stack)["routed-api"]
    session = client()
    color = color_of(session, url)
    stack.haproxy.reload(stack.runtime)
    api = stack.api()
    assert api.sticky() is False
    split(api, 50, 50)  # the weights came back from the configuration (none saved)
    assert {color_of(session, url) for _ in range(REQUESTS)} == set(COLORS)
    assert session.cookies.get(COOKIE) == color


# -- one source for the lines ---------------------------------------------------------------
def test_the_shipped_config_has_the_lines_of_sticky_py() -> None:
    """haproxy/sticky.py's lines are the shipped haproxy.cfg's (for ``bluegreen init`` to
    propose them as they are): each switched backend's, in both of its variants, its servers'
    cookie, and the TLS frontend's Secure."""
    shipped = HAPROXY_CFG.read_text().splitlines()

    def section(name: str) -> list[str]:
        start = shipped.index(name)
        ends = ("backend ", "frontend ", "# ---")
        end = next(i for i in range(start + 1, len(shipped)) if shipped[i].startswith(ends))
        return shipped[start:end]

    def holds(lines: list[str], part: list[str]) -> bool:
        return any(lines[i : i + len(part)] == part for i in range(len(lines)))

    for backend in ("api_backend", "frontend_backend"):
        lines = section(f"backend {backend}")
        assert holds(lines, shipped_lines(backend))
        for slots in (True, False):  # each variant: the shipped lines less the other one's
            one = backend_lines(backend, slots=slots)
            assert [ln for ln in shipped_lines(backend) if ln in one] == one
        for color in COLORS:
            server = [ln for ln in lines if ln.startswith(f"    server {color}-")]
            assert len(server) == 1, (backend, server)
            assert server[0].endswith(f" {server_option(color)}"), server
    assert secure_line() in section("frontend https_in")
    for plain_http in ("frontend api_routing", "frontend frontend_routing"):
        assert secure_line() not in section(plain_http)


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(f"{COOKIE}=blue; {COOKIE}=green", id="twice"),
        pytest.param(f"app=1, {COOKIE}=green", id="after-a-comma"),
    ],
)
def test_a_stale_cookie_the_removal_misses_takes_the_whole_header(
    stack: Stack, client: Callable[[], requests.Session], sent: str
) -> None:
    """A made-up request (a cookie sent twice, or after a ',' HAProxy also reads as a
    separator) keeps no stale cookie: the weights place it (green at 0 takes nothing), and the
    color hears no cookie at all."""
    api = stack.api()
    split(api, 100, 0)
    api.set_sticky(True)
    for _ in range(4):
        answer = client().get(entries(stack)["routed-api"], headers={"Cookie": sent}, timeout=5)
        assert answer.headers[COLOR] == "blue"
        assert answer.json()["heard"]["Cookie"] is None


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(f"{CANARY_COOKIE}=c1; {CANARY_COOKIE}=c2; app=1", id="twice"),
        pytest.param(f"app=1, {CANARY_COOKIE}=c1", id="after-a-comma"),
    ],
)
@pytest.mark.parametrize("sticky", [True, False], ids=["canary", "off"])
def test_a_canary_id_never_reaches_a_color(
    stack: Stack, client: Callable[[], requests.Session], sent: str, sticky: bool
) -> None:
    api = stack.api()
    split(api, 50, 50)
    api.set_sticky(sticky)
    answer = client().get(entries(stack)["routed-api"], headers={"Cookie": sent}, timeout=5)
    heard = answer.json()["heard"]["Cookie"]
    assert heard is None or CANARY_COOKIE not in heard, heard


def test_no_removal_pattern_backtracks_over_spaces_before_a_separator() -> None:
    """A ``\\s*`` before a ``;`` after a lazy ``.*?`` makes the match quadratic on a long run of
    spaces (14 kB: 30 ms a request, one client could burn HAProxy's CPU): none in our lines."""
    lines = [*backend_lines("api_backend"), *backend_lines("api_backend", slots=True)]
    patterns = [line for line in lines if "replace-header Cookie" in line]
    assert patterns
    assert all("?)\\s*;" not in line for line in patterns), patterns
