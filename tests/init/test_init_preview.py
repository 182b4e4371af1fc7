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
from pytest_bluegreen.init.preview import PREVIEW_FILE, raw_words
from pytest_bluegreen.init.scaffold import Plan, plan
from tests.init.test_init import DATA, haproxy_check, haproxy_says, run_init, said
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
    assert "    use_backend app_preview_blue if { var(txn.preview) -m str blue }\n" in text
    assert "    use_backend app_preview_green if { var(txn.preview) -m str green }\n" in text
    assert (
        "backend app_preview_green\n"
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
    assert '-m str "${BG_PREVIEW_KEY}"' in text
    assert '.if defined(BG_PREVIEW_KEY) && !streq("${BG_PREVIEW_KEY}","")' in text
    assert 'acl bg_preview_from src "${BG_PREVIEW_SOURCES[*]}"' in text
    assert "http-request del-header X-Bluegreen-Preview-Key" in text
    assert "openssl rand -hex 24" in text
    assert "BG_PREVIEW_SOURCES in HAProxy's environment" in text


def test_server_templates_are_copied_as_templates(haproxy_available: str, tmp_path: Path) -> None:
    """Each color's server-template lines, every .if branch of them, without the weight; the
    defaults they take (resolvers, init-addr) are the same for the copy. Valid for HAProxy."""
    made = plan_of(DATA / "templates.cfg")
    text = proposed(made)
    assert (
        "backend api_preview_blue\n"
        "    option httpchk GET /health\n"
        ".if defined(MORE_SLOTS)\n"
        "    server-template blue-api 6 tasks.app_blue-api:8000 check\n"
        ".else\n"
        "    server-template blue-api 3 tasks.app_blue-api:8000 check\n"
        ".endif\n"
        "\n"
        "backend api_preview_green\n"
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
    """A frontend routing to two switched backends by path, and first to a shared one: the
    preview rules take the same decisions in the same order (each `||` term of an `if` with
    the color's guard; an `unless` kept, with the guard's negation as one more term)."""
    text = proposed(plan_of(DATA / "tls-paths.cfg"))
    rules = [line.strip() for line in text.splitlines() if line.strip().startswith("use_backend")]
    blue, green = "{ var(txn.preview) -m str blue }", "{ var(txn.preview) -m str green }"
    api = "{ path_beg /api/ } || {g} { path /health } || {g} { path /version }"
    assert rules == [
        "use_backend static unless !{ var(txn.preview) -m found } || { path_beg /api/ } || "
        "!{ path_beg /static/ }",
        f"use_backend api_preview_blue if {blue} " + api.replace("{g}", blue),
        f"use_backend api_preview_green if {green} " + api.replace("{g}", green),
        f"use_backend web_preview_blue if {blue}",
        f"use_backend web_preview_green if {green}",
    ]


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
