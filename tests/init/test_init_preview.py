"""``bluegreen init`` proposes the preview route for the user's HAProxy configuration (issue 24):
``haproxy-preview.cfg`` next to ``bluegreen.toml``, each block saying where it goes. Added where
it says, the configuration passes ``haproxy -c`` with the route on and off, and a real HAProxy
in front of the stand-in colors sends a request with the header and the key to the idle color
through the user's own frontend (TLS, path rules, a Host map), and one without the key to the
live color. A configuration with a route already (ours) gets none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.haproxy.config import parse_config
from pytest_bluegreen.haproxy.preview import ROUTE_ON, global_lines, route_lines
from pytest_bluegreen.init.preview import PREVIEW_FILE, raw_words
from pytest_bluegreen.init.scaffold import Plan, plan
from tests.init.test_init import DATA, haproxy_check, haproxy_says, run_init, said
from tests.support.preview import raw_get as preview_request
from tests.support.stack import HAPROXY_CFG, Backend, free_ports, wait_for

KEY = "k3y-of-the-preview-route-0123456789"
PREVIEW = {"X-Bluegreen-Preview": "green", "X-Bluegreen-Preview-Key": KEY}
COLOR = "X-Bluegreen-Color"


def plan_of(path: Path, environ: Mapping[str, str] | None = None) -> Plan:
    text = path.read_text()
    map_file = path.parent / "hosts.map"
    maps = {"hosts.map": map_file.read_text() if map_file.exists() else None}
    return plan(parse_config(text, environ or {}), text=text, source=str(path), maps=maps)


def proposed(made: Plan) -> str:
    assert made.preview.text is not None, made.not_found
    return made.preview.text


def apply(config: str, proposal: str) -> str:
    """The configuration with each block of ``proposal`` inserted where its title says
    ("insert after line N"), read from the file as a user reads it: from the last block up."""
    blocks: list[tuple[int, list[str]]] = []
    for line in proposal.splitlines():
        if line.startswith("# --- "):
            found = re.search(r"insert after line (\d+)|after .*\(its last line: (\d+)\)", line)
            assert found, line
            blocks.append((int(found.group(1) or found.group(2)), []))
        elif blocks:
            blocks[-1][1].append(line)
    assert blocks, proposal
    lines = config.split("\n")
    for after, block in reversed(blocks):
        lines[after:after] = block
    return "\n".join(lines)


# --- what is proposed ------------------------------------------------------------------------


def test_a_configuration_with_a_preview_route_gets_none(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Ours has the route (its header names in its lines, inside an .if block init does not
    take with BG_PREVIEW_KEY unset): init says so and writes no proposal."""
    made = plan_of(HAPROXY_CFG)
    assert made.preview.text is None
    first = next(
        n
        for n, line in enumerate(HAPROXY_CFG.read_text().splitlines(), start=1)
        if "X-Bluegreen-Preview" in " ".join(raw_words(line))
    )
    assert first > 100  # not one of the comments at the top
    code, lines, err = run_init(capfd, HAPROXY_CFG, tmp_path, "--no-dry-run")
    assert code == 0, err
    assert not (tmp_path / PREVIEW_FILE).exists()
    [line] = [ln for ln in said(lines, "guessed: ") if "preview route" in ln]
    assert (
        f"the configuration has one (X-Bluegreen-Preview or bluegreen_preview at line {first})"
        in line
    )
    assert not any("preview route" in ln for ln in said(lines, "not found: "))


def test_a_plain_two_server_configuration(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two servers told apart by weight: the proposal's frontend rules send each color to a
    copy of the backend with that color's server, as it is but for its weight."""
    code, lines, err = run_init(capfd, DATA / "single-backend.cfg", tmp_path, "--no-dry-run")
    assert code == 0, err
    assert f"wrote bluegreen.toml, {PREVIEW_FILE}, checks/" in lines[0]
    [note] = [ln for ln in said(lines, "not found: ") if "preview route" in ln]
    assert f"proposed in {PREVIEW_FILE}, next to bluegreen.toml, for frontend app_in" in note
    assert "set BG_PREVIEW_KEY in HAProxy's environment" in note
    assert "as PREVIEW_KEY in secrets.env" in note
    text = (tmp_path / PREVIEW_FILE).read_text()
    assert "# --- 1. global (line 3): insert after line 3\n" in text
    assert (
        "# --- 2. frontend app_in (line 20): insert after line 21, before its first "
        "default_backend (line 22)\n"
    ) in text
    assert "    use_backend app_preview_blue if { var(txn.bg_preview) -m str blue }\n" in text
    assert "    use_backend app_preview_green if { var(txn.bg_preview) -m str green }\n" in text
    assert (
        "backend app_preview_green\n"
        "    http-request set-header X-Bluegreen-Route preview\n"
        "    option httpchk\n"
        "    http-check send meth GET uri /status ver HTTP/1.1 hdr Host app.internal\n"
        "    http-check expect status 200\n"
        "    load-server-state-from-file global\n"
        "    server app2 127.0.0.1:8002 check\n"
    ) in text
    assert "server app1 127.0.0.1:8001 check\n" in text
    servers = [line for line in text.splitlines() if line.startswith("    server ")]
    assert servers == [
        "    server app1 127.0.0.1:8001 check",
        "    server app2 127.0.0.1:8002 check",
    ]
    # the key from HAProxy's environment, in double quotes; off unless set and not empty
    assert '-m str -- "${BG_PREVIEW_KEY}"' in text
    assert '.if defined(BG_PREVIEW_KEY) && !streq("${BG_PREVIEW_KEY}","")' in text
    assert 'acl bg_preview_from src "${BG_PREVIEW_SOURCES[*]}"' in text
    assert "http-request del-header X-Bluegreen-Preview-Key" in text
    assert "openssl rand -hex 24" in text
    assert "BG_PREVIEW_SOURCES in HAProxy's environment" in text


def test_the_proposal_has_the_shipped_routes_lines() -> None:
    """One source for the route's lines (haproxy/preview.py): each routed frontend of the
    shipped haproxy.cfg carries route_lines as they are, inside the block that turns the
    route on, and its global carries global_lines; the proposal for a user's frontend
    carries them too. A hardening of one is a hardening of both (the proposal lacked the
    "--", the last-value color, the duplicate key cookie and the empty-sources refusal)."""
    shipped = HAPROXY_CFG.read_text().splitlines()
    route = route_lines(("blue", "green"))

    def holds(lines: list[str], part: list[str]) -> list[int]:
        return [i for i in range(len(lines)) if lines[i : i + len(part)] == part]

    starts = holds(shipped, route)
    assert len(starts) == 3  # :443, the routed API, the routed frontend
    for start in starts:
        opened = max(i for i, ln in enumerate(shipped[:start]) if ln.startswith(".if"))
        assert shipped[opened] == ROUTE_ON
        assert ".endif" not in shipped[opened:start]
    assert len(holds(shipped, global_lines())) == 1
    text = proposed(plan_of(DATA / "single-backend.cfg")).splitlines()
    assert len(holds(text, route)) == 1
    assert len(holds(text, global_lines())) == 1


def test_server_templates_are_copied_as_templates(haproxy_available: str, tmp_path: Path) -> None:
    """Each color's server-template lines, every .if branch of them, without the weight; the
    defaults they take (resolvers, init-addr) are the same for the copy. Valid for HAProxy."""
    made = plan_of(DATA / "templates.cfg")
    text = proposed(made)
    assert (
        "backend api_preview_blue\n"
        "    http-request set-header X-Bluegreen-Route preview\n"
        "    option httpchk GET /health\n"
        ".if defined(MORE_SLOTS)\n"
        "    server-template blue-api 6 tasks.app_blue-api:8000 check\n"
        ".else\n"
        "    server-template blue-api 3 tasks.app_blue-api:8000 check\n"
        ".endif\n"
        "\n"
        "backend api_preview_green\n"
        "    http-request set-header X-Bluegreen-Route preview\n"
        "    option httpchk GET /health\n"
        "    server-template green-api 3 tasks.app_green-api:8000 check\n"
    ) in text
    config = tmp_path / "haproxy.cfg"
    source = (DATA / "templates.cfg").read_text()
    source = source.replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock"))
    source = source.replace("/var/lib/haproxy/server-state", str(tmp_path / "state"))
    config.write_text(apply(source, text))
    for env in ({}, {"BG_PREVIEW_KEY": KEY}, {"BG_PREVIEW_KEY": KEY, "MORE_SLOTS": "1"}):
        haproxy_check(haproxy_available, config, env)
    assert "BG_PREVIEW_KEY is set but empty" in haproxy_says(
        haproxy_available, config, {"BG_PREVIEW_KEY": ""}
    )


def test_path_rules_are_mirrored_in_order() -> None:
    """A frontend routing to two switched backends by path, and first to a shared one: each
    rule to a switched backend gets the same rule for each color's copy just before it (each
    `||` term of an `if` with the color's guard; an `unless` kept, with the guard's negation
    as one more term), so a preview request meets the rules in the same order; the default
    backend's copies come after every rule."""
    text = proposed(plan_of(DATA / "tls-paths.cfg"))
    blocks = [
        (title, [ln.strip() for ln in body.splitlines() if ln.strip().startswith("use_backend")])
        for title, body in re.findall(r"# --- \d+\. ([^\n]*)\n(.*?)(?=\n# --- |\Z)", text, re.S)
    ]
    blue, green = "{ var(txn.bg_preview) -m str blue }", "{ var(txn.bg_preview) -m str green }"
    api = "{ path_beg /api/ } || {g} { path /health } || {g} { path /version }"
    assert blocks[1:4] == [
        (
            "frontend https_in (line 15): insert after line 17, before its first use_backend "
            "(line 18)",
            [],
        ),
        (
            "frontend https_in (line 15): insert after line 18, just before its use_backend "
            "(line 19)",
            [
                f"use_backend api_preview_blue if {blue} " + api.replace("{g}", blue),
                f"use_backend api_preview_green if {green} " + api.replace("{g}", green),
            ],
        ),
        (
            "frontend https_in (line 15): insert after line 20, after its use_backend rules: "
            "for its default, web",
            [
                f"use_backend web_preview_blue if {blue}",
                f"use_backend web_preview_green if {green}",
            ],
        ),
    ]
    unless = proposed(plan_of(DATA / "awkward.cfg"))
    assert (
        "use_backend api_preview_green unless !{ var(txn.bg_preview) -m str green } || "
        "!{ path_beg /v2/ } || { req.hdr(x-skip) -m found }\n"
    ) in unless


# --- on a real HAProxy -----------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """A request to the site and who must answer it (a color, or a body)."""

    path: str
    headers: Mapping[str, str]
    answer: str
    host: str | None = None
    served_by: str | None = None


@pytest.fixture
def http(tls_cert: Path) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: straight to 127.0.0.1
        session.verify = str(tls_cert)
        yield session


def run_site(
    http: requests.Session, binary: str, config: Path, env: dict[str, str], url: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(config)],
        cwd=config.parent,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def answers() -> bool:
        http.get(url, timeout=1)
        return True

    wait_for(answers, 10, f"HAProxy on {url}", retry=(requests.ConnectionError,), watch=[proc])
    return proc


def ask(http: requests.Session, base: str, request: Ask) -> tuple[str, str | None]:
    headers = dict(request.headers)
    if request.host:
        headers["Host"] = request.host
    response = http.get(base + request.path, headers=headers, timeout=5)
    said = response.headers.get(COLOR) or response.text.strip()
    return said, response.headers.get("X-Served-By")


OFF = {"X-Bluegreen-Preview": "green"}
WRONG = {"X-Bluegreen-Preview": "green", "X-Bluegreen-Preview-Key": KEY[:-1]}
SITES = {
    "single-backend.cfg": (
        "http",
        {
            "127.0.0.1:8080": "127.0.0.1:{port}",
            "127.0.0.1:8001": "{blue}",
            "127.0.0.1:8002": "{green}",
            "uri /status": "uri /health",
            "    user haproxy\n    group haproxy\n": "",
            "log /dev/log local0": "log stdout format raw local0",
            "/run/haproxy/admin.sock": "{tmp}/admin.sock",
            "/var/lib/haproxy": "{tmp}",
        },
        [
            Ask("/api/echo", PREVIEW, "green"),
            Ask("/", PREVIEW, "green"),
            Ask("/api/echo", {}, "blue"),
            Ask("/api/echo", OFF, "blue"),
            Ask("/api/echo", WRONG, "blue"),
            Ask(
                "/api/echo", {"X-Bluegreen-Preview": "blue", "X-Bluegreen-Preview-Key": KEY}, "blue"
            ),
            Ask(
                "/api/echo",
                {"Cookie": f"bluegreen_preview=green; bluegreen_preview_key={KEY}"},
                "green",
            ),
        ],
    ),
    "tls-paths.cfg": (
        "https",
        {
            "bind :443 ssl crt /etc/haproxy/certs/site.pem": "bind 127.0.0.1:{port} ssl crt {cert}",
            "10.0.1.10:8000": "{blue}",
            "10.0.2.10:8000": "{green}",
            "10.0.1.10:3000": "{blue}",
            "10.0.2.10:3000": "{green}",
            "/run/haproxy/admin.sock": "{tmp}/admin.sock",
        },
        [
            Ask("/api/echo", PREVIEW, "green", served_by="api_preview_green/green-api"),
            Ask("/health", PREVIEW, "green", served_by="api_preview_green/green-api"),
            Ask("/", PREVIEW, "green", served_by="web_preview_green/green-web"),
            Ask("/static/app.js", PREVIEW, "static", served_by="static"),
            Ask("/api/echo", {}, "blue", served_by="api/blue-api"),
            Ask("/", {}, "blue", served_by="web/blue-web"),
            Ask("/", OFF, "blue", served_by="web/blue-web"),
            Ask("/api/echo", WRONG, "blue", served_by="api/blue-api"),
        ],
    ),
    "hosts-map.cfg": (
        "http",
        {
            "bind *:80": "bind 127.0.0.1:{port}",
            "GET /healthz": "GET /health",
            "10.0.1.11:8080": "{blue}",
            "10.0.1.12:8080": "{blue}",
            "10.0.2.11:8080": "{green}",
            "10.0.2.12:8080": "{green}",
            "ipv4@127.0.0.1:9999": "{tmp}/admin.sock",
            "/var/lib/haproxy/server-state": "{tmp}/server-state",
            "10.0.3.11:2368": "{blog}",
        },
        [
            Ask("/", PREVIEW, "green", host="shop.example.com"),
            Ask("/", PREVIEW, "green", host="www.shop.example.com"),
            Ask("/", {}, "blue", host="shop.example.com"),
            Ask("/", WRONG, "blue", host="shop.example.com"),
            Ask("/", PREVIEW, "blog", host="blog.example.com"),  # not previewed: as before
            Ask("/", PREVIEW, "unknown site", host="nowhere.example.com"),
        ],
    ),
}


@dataclass
class Running:
    """A user's configuration on this machine's ports, with what ``bluegreen init`` proposed
    for it added where the proposal says."""

    config: Path
    base: str


@pytest.fixture
def site(
    haproxy_available: str,
    color_backends: tuple[Backend, Backend],
    tls_cert: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> Callable[[str, Backend | None], Running]:
    blue, green = color_backends
    blue.reset()
    green.reset()

    def make(name: str, blog: Backend | None = None) -> Running:
        """``blog``: hosts-map.cfg's site that is not deployed blue/green."""
        scheme, replacements, _ = SITES[name]
        source = (DATA / name).read_text()
        [port] = free_ports(1)
        values = {
            "port": str(port),
            "blue": f"127.0.0.1:{blue.port}",
            "green": f"127.0.0.1:{green.port}",
            "tmp": str(tmp_path),
            "cert": str(tls_cert),
            "blog": f"127.0.0.1:{blog.port}" if blog else "",
        }
        for old, new in replacements.items():
            assert old in source, old
            source = source.replace(old, new.format(**values))
        config = tmp_path / "haproxy.cfg"
        config.write_text(source)
        (tmp_path / "hosts.map").write_text((DATA / "hosts.map").read_text())
        code, _, err = run_init(capfd, config, tmp_path / "project", "--no-dry-run")
        assert code == 0, err
        config.write_text(apply(source, (tmp_path / "project" / PREVIEW_FILE).read_text()))
        haproxy_check(haproxy_available, config)
        haproxy_check(haproxy_available, config, {"BG_PREVIEW_KEY": KEY})
        return Running(config, f"{scheme}://127.0.0.1:{port}")

    return make


@pytest.fixture
def blog() -> Iterator[Backend]:
    """The one site of hosts-map.cfg that is not deployed blue/green."""
    backend = Backend.start("blog", "v1")
    yield backend
    backend.stop()


@pytest.mark.parametrize("name", list(SITES))
def test_the_proposal_on_a_real_haproxy(
    name: str,
    haproxy_available: str,
    site: Callable[[str, Backend | None], Running],
    blog: Backend,
    http: requests.Session,
) -> None:
    """The user's configuration plus the proposal, as the file says: valid for ``haproxy -c``
    with the route off and on; running, the header (or cookie) and the key reach the idle
    color through the user's frontend, and anything else is the user's routing as before."""
    running = site(name, blog)
    proc = run_site(http, haproxy_available, running.config, {"BG_PREVIEW_KEY": KEY}, running.base)
    try:
        answers = [ask(http, running.base, r) for r in SITES[name][2]]
        heard = http.get(f"{running.base}/api/echo", headers=PREVIEW, timeout=5)
    finally:
        proc.terminate()
        proc.wait(10)
    for request, (who, served_by) in zip(SITES[name][2], answers, strict=True):
        assert who == request.answer, request
        if request.served_by:
            assert served_by == request.served_by, request
    if name != "hosts-map.cfg":
        assert heard.json()["heard"]["X-Bluegreen-Preview-Key"] is None  # taken out
        assert heard.json()["heard"]["X-Bluegreen-Route"] == "preview"


def test_the_route_is_off_without_the_key(
    haproxy_available: str, site: Callable[[str, Backend | None], Running], http: requests.Session
) -> None:
    """BG_PREVIEW_KEY unset in HAProxy's environment: the header and an empty key are
    ordinary requests; BG_PREVIEW_SOURCES without the client's address: the same."""
    running = site("single-backend.cfg", None)
    empty = {"X-Bluegreen-Preview": "green", "X-Bluegreen-Preview-Key": ""}
    for env, headers in [
        ({}, PREVIEW),
        ({}, empty),
        ({"BG_PREVIEW_KEY": KEY, "BG_PREVIEW_SOURCES": "10.0.0.0/8 192.0.2.7"}, PREVIEW),
        ({"BG_PREVIEW_KEY": KEY, "BG_PREVIEW_SOURCES": "10.0.0.0/8 127.0.0.0/8"}, PREVIEW),
    ]:
        proc = run_site(http, haproxy_available, running.config, env, running.base)
        try:
            who, _ = ask(http, running.base, Ask("/api/echo", headers, ""))
        finally:
            proc.terminate()
            proc.wait(10)
        assert who == ("green" if "127.0.0.0/8" in env.get("BG_PREVIEW_SOURCES", "") else "blue"), (
            env
        )


def test_the_starter_preview_check_goes_through_the_route(
    haproxy_available: str,
    site: Callable[[str, Backend | None], Running],
    http: requests.Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The starter check ``checks/test_preview.py`` init wrote: it skips saying why until
    PREVIEW_KEY is in secrets.env; with HAProxy's key it passes through the user's frontend
    with the proposal added; with another key the live color answers in the idle one's place,
    which is an infrastructure error, never a pass."""
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    running = site("single-backend.cfg", None)
    project = tmp_path / "project"
    secrets = project / "config" / "deploy" / "secrets.env"

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "checks/test_preview.py", "--env", "green", "-rs"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    proc = run_site(http, haproxy_available, running.config, {"BG_PREVIEW_KEY": KEY}, running.base)
    try:
        without = check()
        secrets.parent.mkdir(parents=True)
        secrets.write_text(f"PREVIEW_KEY={KEY}\n")
        right = check()
        secrets.write_text(f"PREVIEW_KEY={KEY}-another\n")
        wrong = check()
    finally:
        proc.terminate()
        proc.wait(10)
    assert without.returncode == 0, without.stdout + without.stderr
    assert "1 skipped" in without.stdout
    assert "no preview route in this deployment: set PREVIEW_KEY in secrets.env" in without.stdout
    assert right.returncode == 0, right.stdout + right.stderr
    assert "1 passed" in right.stdout, right.stdout
    assert wrong.returncode != 0, wrong.stdout
    assert "answered as blue, not green" in wrong.stdout, wrong.stdout
    assert KEY not in without.stdout + right.stdout + wrong.stdout


# --- the proposal changes nothing but a preview request ---------------------------------------

DASH_KEY = "-k3y-beginning-with-a-dash-0123456789"  # HAProxy reads "-k..." as an option unless "--"


def raw_get(port: int, path: str, headers: list[tuple[str, str]]) -> tuple[str, str | None, str]:
    """One request with headers as given, for the site these configurations serve."""
    return preview_request(port, path, headers, host="site")


KEYED = [
    [("X-Bluegreen-Preview", "green"), ("X-Bluegreen-Preview-Key", DASH_KEY)],
    [("Cookie", f"sid=1; bluegreen_preview=green; bluegreen_preview_key={DASH_KEY}")],
    [
        (
            "Cookie",
            f"bluegreen_preview=green; bluegreen_preview_key={DASH_KEY}; "
            f"bluegreen_preview_key={DASH_KEY}",
        )
    ],
]
ORDINARY = [
    [],
    [("X-Bluegreen-Preview", "green")],
    [("X-Bluegreen-Preview", "green"), ("X-Bluegreen-Preview-Key", DASH_KEY[:-1])],
    # the key, but the color's last value names none: no preview
    [
        ("X-Bluegreen-Preview", "green"),
        ("X-Bluegreen-Preview", "purple"),
        ("X-Bluegreen-Preview-Key", DASH_KEY),
    ],
    [
        (
            "Cookie",
            "bluegreen_preview=green; bluegreen_preview=purple; bluegreen_preview_key=" + DASH_KEY,
        )
    ],
]
SPOOFED = [("X-Bluegreen-Route", "preview")]  # a client claiming the route
PATHS = [
    "/api/echo",
    "/api/echo?legacy",
    "/static/a",
    "/robots.txt",
    "/v2/x",
    "/admin",
    "/old",
    "/",
]


def test_the_proposal_changes_only_preview_requests(
    haproxy_available: str,
    color_backends: tuple[Backend, Backend],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """awkward.cfg plus the proposal, inserted as the file says: valid for ``haproxy -c`` with a
    key beginning with "-", no warning HAProxy did not give before, an empty
    BG_PREVIEW_SOURCES refused like an empty key. Running, with and without MAINTENANCE (a
    use_backend only in an .if branch): with the route off every request is answered as
    before; with it on, every request without the key too, and a preview request goes where
    an ordinary one goes (the deny, the redirect, the maintenance page, the shared backend),
    to green where that is blue, without the key. Before: the ACL declared after the first
    use_backend, the use-server naming the other color's server and the "-" key made
    HAProxy refuse it; a key-holder naming "green" then "purple" reached blue marked
    "preview", a key cookie sent twice reached green, a client's "preview" claim passed."""
    blue, green = color_backends
    blue.reset()
    green.reset()
    [port] = free_ports(1)
    source = (DATA / "awkward.cfg").read_text()
    for old, new in {
        "127.0.0.1:8080": f"127.0.0.1:{port}",
        "10.0.1.10:8000": f"127.0.0.1:{blue.port}",
        "10.0.1.10:3000": f"127.0.0.1:{blue.port}",
        "10.0.2.10:8000": f"127.0.0.1:{green.port}",
        "10.0.2.11:8000": f"127.0.0.1:{green.port}",
        "10.0.2.10:3000": f"127.0.0.1:{green.port}",
        "/run/haproxy/admin.sock": f"{tmp_path}/admin.sock",
    }.items():
        assert old in source, old
        source = source.replace(old, new)
    original = tmp_path / "original.cfg"
    original.write_text(source)
    code, _, err = run_init(capfd, original, tmp_path / "project", "--no-dry-run")
    assert code == 0, err
    config = tmp_path / "haproxy.cfg"
    config.write_text(apply(source, (tmp_path / "project" / PREVIEW_FILE).read_text()))
    on = {"BG_PREVIEW_KEY": DASH_KEY}

    def warnings(path: Path, env: dict[str, str]) -> list[str]:
        said = haproxy_says(haproxy_available, path, env)
        assert said.endswith("exit 0"), said
        return [re.sub(r"\[.*?:\d+\]", "", ln) for ln in said.splitlines() if "WARNING" in ln]

    for env in ({}, {"MAINTENANCE": "1"}, {"EXTRA": "1"}):
        assert warnings(config, env) == warnings(original, env)
        assert warnings(config, {**env, **on}) == warnings(original, env)
    refused = haproxy_says(haproxy_available, config, {**on, "BG_PREVIEW_SOURCES": ""})
    assert "BG_PREVIEW_SOURCES is set but empty" in refused
    assert not refused.endswith("exit 0")

    def answers(
        path: Path, env: dict[str, str], requests_: list[list[tuple[str, str]]]
    ) -> list[tuple[str, str | None, str]]:
        proc = subprocess.Popen(
            [haproxy_available, "-db", "-f", str(path)],
            cwd=tmp_path,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(
                lambda: raw_get(port, "/static/a", []) is not None,
                10,
                "HAProxy",
                retry=(OSError,),
                watch=[proc],
            )
            return [
                raw_get(
                    port,
                    p.replace("?legacy", ""),
                    [*h, *([("X-Legacy", "1")] if "?legacy" in p else [])],
                )
                for h in requests_
                for p in PATHS
            ]
        finally:
            proc.terminate()
            proc.wait(10)

    everything = [*ORDINARY, *KEYED, SPOOFED]
    for env in ({}, {"MAINTENANCE": "1"}):
        before = answers(original, env, everything)
        assert answers(config, env, everything) == before, env  # the route off: as before
        after = dict(
            zip(
                ((i, p) for i in range(len(everything)) for p in PATHS),
                answers(config, {**env, **on}, everything),
                strict=True,
            )
        )
        before_by = dict(
            zip(((i, p) for i in range(len(everything)) for p in PATHS), before, strict=True)
        )
        for (i, path), (status, color, body) in after.items():
            old_status, old_color, old_body = before_by[i, path]
            request = everything[i]
            if request in KEYED:
                assert (status, color) == (
                    old_status,
                    "green" if old_color == "blue" else old_color,
                ), (env, request, path)
                assert DASH_KEY not in body, (env, request, path)
                if color == "green" and path.startswith("/api/echo"):
                    assert '"X-Bluegreen-Route": "preview"' in body
            elif request is SPOOFED:
                assert (status, color) == (old_status, old_color)
                assert "preview" not in body, (env, path)  # the claim is taken out
            elif any("-Key" in name or "_key=" in value for name, value in request):
                # a wrong key, or no color by the last value: as before, the key taken out
                assert (status, color) == (old_status, old_color), (env, request, path)
                assert DASH_KEY[:-1] not in body, (env, request, path)
            else:
                assert (status, color, body) == (old_status, old_color, old_body), (
                    env,
                    request,
                    path,
                )
    made = proposed(plan_of(DATA / "awkward.cfg"))
    assert "    server green-spare 10.0.2.11:8000 check backup\n" in made  # a backup stays one
