"""Secrets never reach an output, in any encoding: a table of nasty secrets x every output a
gated run writes (the terminal with -rA and live logging, JUnit XML, Allure results and
attachments, verdict.json, the history, export-state), every file grepped."""

from __future__ import annotations

import base64
import html
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from pytest_bluegreen.redaction import MIN_SECRET_LENGTH, REDACTED, Secrets, forms_of
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


@pytest.mark.infra
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
        [sys.executable, "-c", "from pytest_bluegreen.cli import main; raise SystemExit(main())",
         "--checks", ".", "export-state"],
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
