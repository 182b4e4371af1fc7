"""Secrets never reach an output, in any encoding: a table of nasty secrets x every output a
gated run writes (the terminal with -rA and live logging, JUnit XML, Allure results and
attachments, verdict.json, the history, export-state), every file grepped."""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from pytest_bluegreen.redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    ReportScrubber,
    Secrets,
    forms_of,
)
from tests.support.bake import POST
from tests.support.cli import BLUEGREEN
from tests.support.gate import CHECKS, output, prepare
from tests.support.stack import Stack

SECRETS = [
    pytest.param('Sup3r"Secret\\&1', id="quote-backslash-amp"),
    pytest.param("pa'ss<w>rd&%20x", id="apostrophe-angles-percent"),
    pytest.param("ünïcødé-Pässwörd€", id="unicode"),
    pytest.param("p@ss/w#rd: +?=", id="url-reserved"),
]


def dotenv_quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plain_forms(secret: str) -> dict[str, str]:
    """How each output would have written the secret, were it not redacted."""
    return {
        "literal": secret,
        "repr": repr(secret)[1:-1],
        "ascii": ascii(secret)[1:-1],
        "json": json.dumps(secret)[1:-1],
        "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
        "xml": html.escape(secret, quote=True),
        "url": quote(secret, safe=""),
        "url-plus": quote_plus(secret),
        "basic-auth": base64.b64encode(f"svc:{secret}".encode()).decode(),
    }


# --- the redactor alone -------------------------------------------------------------------------


@pytest.mark.parametrize("secret", SECRETS)
def test_every_form_is_redacted(secret: str) -> None:
    secrets = Secrets({"TOKEN": secret})
    for name, form in plain_forms(secret).items():
        text = f"before {form} after" if name != "basic-auth" else f"Authorization: Basic {form}"
        cleaned = secrets.redact(text)
        assert form not in cleaned, name
        assert REDACTED in cleaned, name


@pytest.mark.parametrize("secret", SECRETS)
def test_escapes_of_escapes(secret: str) -> None:
    """A repr inside JSON (Allure's trace), JSON inside XML."""
    secrets = Secrets({"TOKEN": secret})
    for nested in (json.dumps(repr({"pw": secret})), html.escape(json.dumps(secret))):
        assert REDACTED in secrets.redact(nested)
        for form in forms_of(secret):
            if len(form) >= MIN_SECRET_LENGTH:
                assert form not in secrets.redact(nested)


def test_short_values_are_left_alone() -> None:
    secrets = Secrets({"SHORT": "word", "LONG": "correct-horse"})
    assert secrets.redact("password: correct-horse") == f"password: {REDACTED}"
    assert "word" in secrets.redact("a password")
    assert repr(secrets) == "Secrets(LONG=***, SHORT=***)"
    assert "correct-horse" not in str(secrets)


def test_a_secret_is_found_as_whitespace_normalising_code_leaves_it() -> None:
    """Where text is put on one line or cut at its first line before the secrets are at hand
    (a container's health check output, an error's first line), the redactor still finds it."""
    secret = "a  b\tc-s3cret\n  d  e-s3cret "  # noqa: S105 - planted
    secrets = Secrets({"X": secret})
    assert secrets.redact("reason: " + " ".join(secret.split())) == f"reason: {REDACTED}"
    first_line = f"boom: {secret}".splitlines()[0]
    assert secrets.redact(first_line) == f"boom: {REDACTED}"
    assert secrets.redact(json.dumps({"r": " ".join(secret.split())})) == f'{{"r": "{REDACTED}"}}'


def test_an_excerpt_is_one_line_cut_between_words() -> None:
    from pytest_bluegreen.redaction import excerpt  # noqa: PLC0415

    text = "curl: (22)\n  failed  with password=hunter2-s3cret-value\tand more words"
    words = text.split()
    for limit in range(1, len(text) + 2):
        shown = excerpt(text, limit)
        assert len(shown) <= limit
        assert "\n" not in shown
        assert "  " not in shown
        kept = shown.removesuffix("…").split()
        assert kept == words[: len(kept)], shown  # whole words only: a secret whole or gone
    assert excerpt(text, 1000) == " ".join(words)


# --- every output of a gated run ----------------------------------------------------------------

LEAKS = """
import json, logging, pytest, requests
from urllib.parse import quote


def test_repr_in_a_failure(bluegreen_secrets, color):
    assert dict(bluegreen_secrets) == {}, "the secrets differ"


def test_json_in_captured_output(bluegreen_secrets, color):
    print(json.dumps({"token": bluegreen_secrets["TOKEN"]}))
    logging.getLogger("leaky").warning("token=%s", bluegreen_secrets["TOKEN"])


def test_dsn_in_an_error(bluegreen_secrets, color):
    dsn = "postgresql://app:" + quote(bluegreen_secrets["TOKEN"], safe="") + "@db/app"
    raise ConnectionRefusedError(f"cannot reach {dsn}")


def test_basic_auth_in_output(bluegreen_secrets, color):
    header = requests.auth._basic_auth_str("svc", bluegreen_secrets["TOKEN"])
    print("Authorization:", header)


def test_skip_reason(bluegreen_secrets, color):
    pytest.skip("skipped with " + bluegreen_secrets["TOKEN"])


def test_xfail_reason(bluegreen_secrets, color):
    pytest.xfail("xfail with " + bluegreen_secrets["TOKEN"])
"""

VETO = """
from pytest_bluegreen.keys import secrets_of


def pytest_bluegreen_before_switch(config, plan, decision):
    return "frozen by " + secrets_of(config)["TOKEN"]
"""


def everything_written(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


@pytest.mark.parametrize("secret", SECRETS)
def test_no_output_holds_the_secret(pytester: pytest.Pytester, stack: Stack, secret: str) -> None:
    prepare(pytester, stack, CHECKS + LEAKS, env_dir="env", verdict_file="reports/verdict.json")
    (pytester.path / "env").mkdir()
    (pytester.path / "env" / "secrets.env").write_text(f"TOKEN={dotenv_quoted(secret)}\n")
    (pytester.path / "conftest.py").write_text(VETO)
    reports = ["--junitxml=reports/junit.xml", "--alluredir=reports/allure", "-rA"]
    logs = ["-o", "log_cli=true", "--log-file=reports/pytest.log"]
    failing = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--env", "green", *reports, *logs, timeout=180
    )  # fmt: skip
    assert failing.ret == 1, output(failing)
    # the summary still names each real error, not a redacted blob
    failing.stdout.fnmatch_lines(
        [
            "E       ConnectionRefusedError: cannot reach postgresql://app:***@db/app",
            "FAILED test_checks.py::test_repr_in_a_failure?green? - AssertionError*",
        ],
        consecutive=False,
    )
    vetoed = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--env", "green", "--switch", "-m", "quick", *reports,
        timeout=180,
    )  # fmt: skip
    assert vetoed.ret == 7, output(vetoed)
    assert "vetoed: frozen by ***" in output(vetoed)
    exported = subprocess.run(
        [*BLUEGREEN, "--checks", ".", "export-state"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    history = stack.state_file.read_text()
    assert "frozen by ***" in history
    outputs = {
        "terminal": output(failing) + output(vetoed),
        "files": everything_written(pytester.path / "reports"),
        "history": history,
        "export-state": exported.stdout,
    }
    for where, text in outputs.items():
        for name, form in plain_forms(secret).items():
            assert form not in text, f"the secret's {name} form is in the {where}"
    assert REDACTED in outputs["files"]


# --- credentials inside URL settings ------------------------------------------------------------

ROUTED_PW = "R0uted-pw!x"
COLOR_PW = "C0lor p@ss/w#rd"
PROM_PW = "Pr0m-&pw<x>"
PUSH_PW = "Pu$h-pw:9091"
PUSH_TOKEN = "push-t0ken-4242"  # noqa: S105 - a query token
SERVICE_PW = "Serv1ce-pw%x"


def with_userinfo(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{quote(password, safe='')}@{rest}"


def url_forms(password: str, user: str) -> dict[str, str]:
    """The password as a URL holds it too, and as the Basic header requests makes of it."""
    forms = plain_forms(password)
    forms["basic-auth"] = base64.b64encode(f"{user}:{password}".encode()).decode()
    return forms


URL_SETTINGS_TOML = """
routed_frontend_url = "{routed}"
prometheus_url = "{prom}"
metrics_push_url = "{push}"
postgres_url = "{service_pg}"
redis_url = "{service_redis}"
neo4j_url = "{service_http}"
ollama_url = "{service_http}"
https_url = "{service_http}"
http_url = "{service_http}"
[colors.blue]
api_url = "{color}"
frontend_url = "{color}"
servers = ["api_backend/blue-api"]
[colors.green]
api_url = "http://127.0.0.1:8"
servers = ["api_backend/green-api"]
[instances.edge]
runtime_api = "127.0.0.1:10"
routed_api_url = "{routed}"
[instances.core]
runtime_api = "127.0.0.1:11"
routed_api_url = "{routed}"
"""


def url_settings(tmp_path: Path) -> Any:
    from pytest_bluegreen.contrib.services import ServiceSettings  # noqa: PLC0415
    from pytest_bluegreen.settings import resolve  # noqa: PLC0415

    (tmp_path / "bluegreen.toml").write_text(
        URL_SETTINGS_TOML.format(
            routed=with_userinfo("http://127.0.0.1:1", "route", ROUTED_PW),
            color=with_userinfo("http://127.0.0.1:2", "color", COLOR_PW),
            prom=with_userinfo("http://127.0.0.1:3", "prom", PROM_PW),
            push=with_userinfo("http://127.0.0.1:4", "gw", PUSH_PW) + f"/?token={PUSH_TOKEN}",
            service_pg=with_userinfo("postgresql://127.0.0.1:5/db", "app", SERVICE_PW),
            service_redis=with_userinfo("redis://127.0.0.1:6/0", "", SERVICE_PW),
            service_http=with_userinfo("http://127.0.0.1:7", "svc", SERVICE_PW),
        )
    )
    return resolve({}, {}, {}, tmp_path, extra_groups=[ServiceSettings])


def test_every_url_setting_is_a_secret_and_keeps_it_out_of_repr(tmp_path: Path) -> None:
    from pytest_bluegreen.contrib.services import ServiceSettings  # noqa: PLC0415
    from pytest_bluegreen.redaction import secrets_of_urls  # noqa: PLC0415
    from pytest_bluegreen.settings import all_options  # noqa: PLC0415

    settings = url_settings(tmp_path)
    secrets = settings.load_secrets()
    shown = repr(settings)
    for password in (ROUTED_PW, COLOR_PW, PROM_PW, PUSH_PW, PUSH_TOKEN, SERVICE_PW):
        assert password in secrets.values(), password
        for name, form in plain_forms(password).items():
            assert form not in shown, f"repr(settings) holds the {name} form of {password!r}"
    assert "http://***@127.0.0.1:1" in shown  # which URL it is stays readable
    assert "token=***" in shown
    # found by what a setting is, not by a list: every *_url setting is parsed into a Url
    urls = [o.key for o in all_options([ServiceSettings]) if o.key.endswith("_url")]
    assert len(urls) >= 10, urls
    for option in all_options([ServiceSettings]):
        if option.key in urls:
            parsed = option.parse(with_userinfo("http://127.0.0.1:9", "u", "hunter2-pw"))
            assert "hunter2-pw" in secrets_of_urls({"x": parsed}).values(), option.key
            assert "hunter2-pw" not in repr(parsed), option.key


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("routed_api_url", f"ftp://u:{ROUTED_PW}@host", id="scheme"),
        pytest.param("prometheus_url", f"http://u:{ROUTED_PW}@host:99999", id="port"),
        pytest.param("metrics_push_url", f"u:{ROUTED_PW}@host:9091", id="no-scheme"),
        pytest.param("prometheus_url", f"http://host:x/?token={ROUTED_PW}", id="query"),
    ],
)
def test_a_bad_url_setting_is_one_line_without_its_password(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(f"BLUEGREEN_{key.upper()}", value)
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 4
    [line] = [line for line in result.errlines if line]
    assert line.startswith(f"ERROR: bluegreen: {key} "), line
    assert ROUTED_PW not in line


def test_the_redactor_hides_any_url_s_password() -> None:
    text = (
        "cannot reach postgresql://app:pw-in-text@db/app, http://ghp_t0ken@example.com/x, "
        "'http://u:p@ss@h:1/' and http://h:80/a@b (no user info) or mail a@b.c"
    )
    assert Secrets().redact(text) == (
        "cannot reach postgresql://app:***@db/app, http://***@example.com/x, "
        "'http://u:***@h:1/' and http://h:80/a@b (no user info) or mail a@b.c"
    )


URL_LOCALS = """

def test_settings_in_the_locals(bluegreen_settings, prometheus, http, color):
    url = bluegreen_settings.prometheus.prometheus_url
    assert url is None, "-l shows the locals: the settings, the clients, the URL"


def test_prometheus_does_not_answer(prometheus, color):
    prometheus.query("up")
"""


def test_no_output_holds_a_url_setting_s_password(
    pytester: pytest.Pytester, stack: Stack, tmp_path: Path
) -> None:
    from tests.support.receiver import Receiver  # noqa: PLC0415
    from tests.support.stack import free_ports  # noqa: PLC0415

    hook = Receiver()
    closed_prometheus, closed_pushgateway = free_ports(2)
    planted = {  # password -> the user beside it
        ROUTED_PW: "route",
        COLOR_PW: "color",
        PROM_PW: "prom",
        PUSH_PW: "gw",
    }
    toml = stack.settings_toml(
        routed_api_url=with_userinfo(stack.routed_url, "route", ROUTED_PW),
        routed_frontend_url=with_userinfo(
            f"http://127.0.0.1:{stack.ports['frontend']}", "route", ROUTED_PW
        ),
        prometheus_url=with_userinfo(f"http://127.0.0.1:{closed_prometheus}", "prom", PROM_PW),
        metrics_push_url=with_userinfo(f"http://127.0.0.1:{closed_pushgateway}", "gw", PUSH_PW),
        notify=[hook.url()],
        notify_timeout=2,
        verdict_file="reports/verdict.json",
        bake_interval=0.5,
        scale_down_delay=0,
    )
    for color in ("blue", "green"):
        direct = stack.direct_url(color)
        toml = toml.replace(f'"{direct}"', f'"{with_userinfo(direct, "color", COLOR_PW)}"')
    toml += "[bake_thresholds]\nhaproxy = []\n[bake_prometheus.up]\nquery = 'up'\n"
    toml += 'thresholds = ["value>0"]\n'
    pytester.makefile(".toml", bluegreen=toml)
    pytester.makepyfile(test_checks=CHECKS + URL_LOCALS + "\n\n" + POST)
    reports = ["--junitxml=reports/junit.xml", "--alluredir=reports/allure", "-rA", "-l"]
    logs = ["-o", "log_cli=true", "--log-file=reports/pytest.log", "--log-file-level=DEBUG"]
    try:
        checked = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--env", "green", *reports, *logs, timeout=180
        )  # fmt: skip
        assert checked.ret == 1, output(checked)
        # the locals are shown, the URL readable, its password not
        checked.stdout.fnmatch_lines(["url *= 'http://***@127.0.0.1:*'"], consecutive=False)
        baked = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--env", "green", "--switch", "--bake", "1",
            "-m", "quick or post", *reports, *logs, timeout=180,
        )  # fmt: skip
        assert baked.ret == 11, output(baked)  # Prometheus cannot judge the bake: switched back
        assert stack.served_color() == "blue"
        events = hook.wait_for(2)
        received = "\n".join(r.body.decode() for r in hook.received)
    finally:
        hook.close()
    assert [e["event"] for e in events] == ["switched", "bake-failed"]
    assert "Prometheus at http://***@127.0.0.1" in events[1]["reason"]
    commands = {}
    for command in (["export-state"], ["status", "--json"], ["status"]):
        done = subprocess.run(
            [*BLUEGREEN, "--checks", ".", *command],
            cwd=pytester.path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        commands[" ".join(command)] = done.stdout + done.stderr
    written = [
        p
        for p in [*pytester.path.rglob("*"), *stack.workdir.rglob("*")]
        if p.is_file() and p.name != "bluegreen.toml" and p.suffix not in (".py", ".pyc")
    ]
    assert {p.name for p in written} >= {"verdict.json", "junit.xml", "pytest.log"}
    assert any(p.name.endswith("-result.json") for p in written)  # Allure's
    outputs = {
        "terminal with -l": output(checked) + output(baked),
        "webhook": received,
        **commands,
        **{str(p): p.read_text(errors="replace") for p in written},
    }
    assert "gate metrics not pushed to http://***@127.0.0.1" in outputs["terminal with -l"]
    for password, user in planted.items():
        for where, text in outputs.items():
            for name, form in url_forms(password, user).items():
                assert form not in text, f"the {name} form of {password!r} is in {where}"


def test_the_journal_of_a_failed_switch_holds_no_url_password(tmp_path: Path, stack: Stack) -> None:
    """A forced switch whose routed URL (with a password) does not answer is reverted; the
    journal records why ('at verify: http://route:...@... did not answer'): without the
    password, as the history and the terminal (the journal slots are files like the others)."""
    from tests.support.stack import free_ports  # noqa: PLC0415

    [closed] = free_ports(1)
    (tmp_path / "bluegreen.toml").write_text(
        stack.settings_toml(
            routed_api_url=with_userinfo(f"http://127.0.0.1:{closed}", "route", ROUTED_PW),
            verify_timeout=1,
        )
    )
    done = subprocess.run(
        [*BLUEGREEN, "switch-to", "green", "--force"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 8, done.stdout + done.stderr
    assert stack.served_color() == "blue"
    slots = [stack.journal_file, stack.journal_file.with_name("journal.json.alt")]
    journal = "\n".join(slot.read_text(errors="replace") for slot in slots)
    assert "did not answer" in journal  # the reason is kept, readable
    assert f"{REDACTED}@127.0.0.1:{closed}/health did not answer" in journal
    outputs = {
        "terminal": done.stdout + done.stderr,
        "journal": journal,
        **{str(p): p.read_text(errors="replace") for p in stack.workdir.rglob("*.json*")},
    }
    for where, text in outputs.items():
        for name, form in url_forms(ROUTED_PW, "route").items():
            assert form not in text, f"the {name} form of {ROUTED_PW!r} is in {where}"


# --- the last pass over the report files ---------------------------------------------------------

PLANTED = "Pl4nted-S3cret-value"


def test_the_scrub_never_writes_through_a_link(tmp_path: Path) -> None:
    """A report folder holding a symbolic link and a hard link to a file of someone else's
    that holds the secret (their .env): the reports are scrubbed, their file is not touched,
    through neither link; a linked folder is not walked into."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    env = theirs / "secrets.env"
    env.write_text(f"DB_PASSWORD={PLANTED}\n")
    reports = tmp_path / "reports"
    (reports / "allure").mkdir(parents=True)
    report = reports / "allure" / "result.json"
    report.write_text(json.dumps({"message": f"cannot log in with {PLANTED}"}))
    report.chmod(0o640)
    (reports / "allure" / "linked.txt").symlink_to(env)
    os.link(env, reports / "hard.txt")
    (reports / "folder").symlink_to(theirs, target_is_directory=True)
    ReportScrubber(Secrets({"DB_PASSWORD": PLANTED}), [reports]).scrub()
    assert PLANTED not in report.read_text()
    assert REDACTED in report.read_text()
    assert oct(report.stat().st_mode & 0o777) == oct(0o640)  # the report keeps its mode
    assert env.read_text() == f"DB_PASSWORD={PLANTED}\n"  # theirs, untouched
    assert (reports / "allure" / "linked.txt").is_symlink()
    assert PLANTED not in (reports / "hard.txt").read_text()  # the report name: scrubbed
    assert sorted(p.name for p in reports.rglob("*.scrubbed")) == []  # nothing left over
