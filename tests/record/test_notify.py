"""Notifications: every recorded outcome POSTed to the ``notify`` webhooks, against a real HTTP
receiver on 127.0.0.1 (payload, retries, timeouts, secrets) and through real gate runs in front
of a real HAProxy (exactly once per outcome, also under xdist)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen.errors import ExitCode
from pytest_bluegreen.record.history import HistoryEntry, Outcome
from pytest_bluegreen.record.notify import EVENTS, Event, notify
from pytest_bluegreen.redaction import Secrets
from pytest_bluegreen.settings import NotifySettings, SettingsError, resolve
from pytest_bluegreen.settings.webhooks import Webhook, parse_webhooks
from tests.support.bake import bake_run
from tests.support.cli import BLUEGREEN, cut_off_switch
from tests.support.gate import CHECKS, history, outcomes, output, run_gate, verdict
from tests.support.receiver import HANG, Receiver
from tests.support.stack import Stack

SLACK_URL = "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"
TOKEN = "T0KEN-s3cr3t-7f3a9c"  # noqa: S105 - planted in a receiver URL's path
PASSWORD = "hunter2-pass"  # noqa: S105 - planted in a receiver URL's user info


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    """Receivers made in a test (``receivers.append(Receiver(...))``), closed after it."""
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def receiver(receivers: list[Receiver], *answers: int | str) -> Receiver:
    made = Receiver(answers)
    receivers.append(made)
    return made


def entry(outcome: Outcome = Outcome.SWITCHED, **fields: object) -> HistoryEntry:
    values: dict[str, object] = {
        "from_color": "blue",
        "to_color": "green",
        "tag": "v1.1.0",
        "outcome": outcome,
        "reason": "9 check(s) for green passed and its servers are UP",
    }
    return HistoryEntry.now(**{**values, **fields})


def settings(*urls: str, timeout: float = 2.0, retries: int = 2) -> NotifySettings:
    return NotifySettings(
        notify=tuple(Webhook(u) for u in urls), notify_timeout=timeout, notify_retries=retries
    )


# --- the URLs -----------------------------------------------------------------------------------


def test_a_webhook_shows_its_host_only_and_names_its_secrets() -> None:
    slack, basic = parse_webhooks(
        [SLACK_URL, f"https://bot:{PASSWORD}@alerts.example.com:8443/hook?token=qwerty123"]
    )
    assert (str(slack), repr(basic)) == (
        "https://hooks.slack.com/…",
        "Webhook(https://alerts.example.com:8443/…)",
    )
    assert slack.secrets == ("T0123ABCD", "B0456EFGH", "abcdefghijklmnopqrstuvwx")
    assert basic.secrets == (f"bot:{PASSWORD}", PASSWORD, "qwerty123")
    assert str(Webhook("http://127.0.0.1:9000")) == "http://127.0.0.1:9000"


@dataclass(frozen=True)
class Given:
    value: object
    error: str = ""  # the ValueError's text, when refused
    count: int = 0  # the webhooks parsed, when accepted


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(Given(f"{SLACK_URL}, http://127.0.0.1:9/x", count=2), id="comma"),
        pytest.param(Given(f"{SLACK_URL}  http://127.0.0.1:9/x\n", count=2), id="spaces"),
        pytest.param(Given([SLACK_URL], count=1), id="toml-list"),
        pytest.param(Given([], count=0), id="empty-list"),
        pytest.param(
            Given(f"{SLACK_URL},ftp://u:{PASSWORD}@h/x", "item 2 is not an http(s) URL (scheme"),
            id="ftp",
        ),
        pytest.param(
            Given(f"hooks.slack.com/services/{TOKEN}", "item 1 is not an http(s) URL (no scheme)"),
            id="no-scheme",
        ),
        pytest.param(Given(f"https:///{TOKEN}", "item 1 (https://…) has no host"), id="no-host"),
        pytest.param(
            Given(f"http://h:99999/{TOKEN}", "item 1 (http://h…) has a bad port"), id="port"
        ),
        pytest.param(Given([SLACK_URL, SLACK_URL], "item 2 repeats item 1"), id="repeated"),
        pytest.param(Given([SLACK_URL, 3], "expected a list of http(s) URLs (text)"), id="int"),
        pytest.param(Given({"url": SLACK_URL}, "expected a list of http(s) URLs"), id="table"),
    ],
)
def test_the_notify_list_is_parsed_strictly(given: Given) -> None:
    if not given.error:
        assert len(parse_webhooks(given.value)) == given.count
        return
    with pytest.raises(ValueError, match="^" + re.escape(given.error)) as caught:
        parse_webhooks(given.value)
    message = str(caught.value)
    for secret in (TOKEN, PASSWORD, "abcdefghijklmnopqrstuvwx"):
        assert secret not in message


def test_notify_settings_come_from_env_ini_or_file_and_keep_their_secrets(
    tmp_path: Path,
) -> None:
    (tmp_path / "bluegreen.toml").write_text(
        f'notify = ["{SLACK_URL}"]\nnotify_timeout = 1.5\nnotify_retries = 0\n'
    )
    from_file = resolve({}, {}, {}, tmp_path)
    assert from_file.notify.notify == (Webhook(SLACK_URL),)
    assert (from_file.notify.notify_timeout, from_file.notify.notify_retries) == (1.5, 0)
    assert SLACK_URL.rsplit("/", 1)[1] not in repr(from_file)
    secrets = from_file.load_secrets()
    assert secrets.redact(f"posting to {SLACK_URL}") == (
        "posting to https://hooks.slack.com/services/***/***/***"
    )
    env = resolve(
        {}, {"BLUEGREEN_NOTIFY": "http://127.0.0.1:9/a http://127.0.0.1:9/b"}, {}, tmp_path
    )
    assert [str(h) for h in env.notify.notify] == ["http://127.0.0.1:9/…"] * 2
    assert env.sources["notify"] == "env BLUEGREEN_NOTIFY"
    ini = resolve({}, {}, {"bluegreen_notify": "http://127.0.0.1:9/c"}, tmp_path)
    assert ini.notify.notify == (Webhook("http://127.0.0.1:9/c"),)
    with pytest.raises(SettingsError, match=r"notify_retries expected 0\.\.5, got 9"):
        resolve({}, {"BLUEGREEN_NOTIFY_RETRIES": "9"}, {}, tmp_path)


def test_a_bad_notify_url_stops_pytest_with_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_NOTIFY", f"{SLACK_URL} ftp://bot:{PASSWORD}@host/x")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [
        "ERROR: bluegreen: notify item 2 is not an http(s) URL (scheme 'ftp') "
        "(from env BLUEGREEN_NOTIFY)"
    ]


# --- the event ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "code", "fields", "text"),
    [
        (
            Outcome.SWITCHED,
            0,
            {},
            ":white_check_mark: switched blue → green (v1.1.0): 9 check(s) for green passed "
            "and its servers are UP",
        ),
        (
            Outcome.ROLLED_BACK,
            ExitCode.BAKE_FAILED,
            {"from_color": "green", "to_color": "blue", "reason": "bake failed: 5xx > 1%"},
            ":rotating_light: bake failed: switched back green → blue (v1.1.0): bake failed: "
            "5xx &gt; 1%",
        ),
        (
            Outcome.ROLLED_BACK,
            0,
            {"from_color": "green", "to_color": "blue", "forced": True, "reason": "by hand"},
            ":leftwards_arrow_with_hook: rolled back green → blue (v1.1.0) [forced]: by hand",
        ),
        (
            Outcome.REFUSED,
            7,
            {"from_color": None, "tag": None, "reason": "refused: <lock> & more\nsecond line"},
            ":no_entry: gate refused for green: refused: &lt;lock&gt; &amp; more second line",
        ),
        (
            Outcome.RECOVERED,
            None,
            {"from_color": None, "tag": None, "reason": ""},
            ":wrench: recovered: green live",
        ),
    ],
    ids=["switched", "bake-failed", "forced-rollback", "refused", "recovered"],
)
def test_the_slack_text_says_what_happened_on_one_line(
    outcome: Outcome, code: int | None, fields: dict[str, object], text: str
) -> None:
    event = Event.of(entry(outcome, **fields), exit_code=code, run_id=None, secrets=Secrets())
    assert event.text == text


def test_every_outcome_has_its_words() -> None:
    assert {o.value for o in Outcome} | {"bake-failed"} == set(EVENTS)


# --- delivery, against a real receiver --------------------------------------------------------


def test_the_payload_has_the_text_and_the_outcome_s_fields(
    receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    hook = receiver(receivers)
    recorded = entry(Outcome.SWITCHED, forced=True)
    warnings = notify(settings(hook.url()), recorded, secrets=Secrets(), exit_code=0)
    assert warnings == []
    [request] = hook.received
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("pytest-bluegreen/")
    payload = request.json()
    assert len(payload.pop("id")) == 32
    assert payload == {
        "text": ":white_check_mark: switched blue → green (v1.1.0) [forced]: 9 check(s) for "
        "green passed and its servers are UP",
        "schema": 1,
        "event": "switched",
        "outcome": "switched",
        "from": "blue",
        "to": "green",
        "tag": "v1.1.0",
        "reason": "9 check(s) for green passed and its servers are UP",
        "exit_code": 0,
        "time": recorded.time,
        "host": recorded.host,
        "forced": True,
        "run_id": "4242",
    }


@pytest.mark.parametrize(
    ("answers", "received", "warning"),
    [
        pytest.param([500, 200], 2, None, id="500-then-ok"),
        pytest.param([429, 503, 200], 3, None, id="429-503-then-ok"),
        pytest.param([500, 500, 502], 3, "HTTP 502 (3 attempts)", id="5xx-exhausted"),
        pytest.param([404], 1, "HTTP 404 (1 attempt)", id="404-not-retried"),
        pytest.param([400, 200], 1, "HTTP 400 (1 attempt)", id="400-not-retried"),
    ],
)
def test_retries_are_for_5xx_and_429_only_and_bounded(
    receivers: list[Receiver], answers: list[int], received: int, warning: str | None
) -> None:
    hook = receiver(receivers, *answers)
    warnings = notify(settings(hook.url(), retries=2), entry(), secrets=Secrets())
    assert len(hook.received) == received
    assert len({event["id"] for event in hook.events()}) == 1  # one event, sent again
    shown = f"warning: notification to http://127.0.0.1:{hook.port}/… not delivered: "
    assert warnings == ([shown + warning] if warning else [])


def test_a_receiver_that_never_answers_is_not_waited_for_nor_posted_twice(
    receivers: list[Receiver],
) -> None:
    silent, fine = receiver(receivers, HANG), receiver(receivers)
    warnings = notify(
        settings(silent.url(), fine.url(), timeout=0.3, retries=2), entry(), secrets=Secrets()
    )
    assert warnings == [
        f"warning: notification to http://127.0.0.1:{silent.port}/… not delivered: no answer "
        "within 0.3s (1 attempt)"
    ]
    assert len(silent.received) == 1  # it may have arrived: a retry could post it twice
    assert [e["event"] for e in fine.events()] == ["switched"]


def test_a_closed_port_is_retried_then_given_up(receivers: list[Receiver]) -> None:
    closed = receiver(receivers)
    url = closed.url()
    closed.close()  # nothing listens there now
    warnings = notify(settings(url, retries=1), entry(), secrets=Secrets())
    assert warnings == [
        f"warning: notification to http://127.0.0.1:{closed.port}/… not delivered: cannot "
        "connect: Connection refused (2 attempts)"
    ]


def test_no_webhooks_no_requests(
    receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver is every request's proxy here: whatever notify sends, anywhere, it sees."""
    proxy = receiver(receivers)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url(""))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    # with a webhook (its host is never resolved: the proxy is asked), the receiver sees it
    hook = "http://hooks.invalid/services/T0"
    assert notify(settings(hook, retries=0), entry(), secrets=Secrets()) == []
    assert [r.path for r in proxy.received] == [hook]
    # with none, nothing at all
    assert notify(settings(), entry(), secrets=Secrets()) == []
    assert len(proxy.received) == 1


# --- through real gate runs --------------------------------------------------------------------


def notify_settings(*hooks: Receiver, **extra: Any) -> dict[str, Any]:
    return {"notify": [h.url() for h in hooks], "notify_timeout": 2, **extra}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_each_gate_outcome_is_notified_exactly_once(
    pytester: pytest.Pytester, stack: Stack, receivers: list[Receiver], workers: list[str]
) -> None:
    hook = receiver(receivers)
    checks = CHECKS + "".join(
        f"\n\ndef test_more_{i}(http):\n    assert http.get('/health').ok\n" for i in range(4)
    )
    stack.green.control(api_status=500)
    failed = run_gate(
        pytester,
        stack,
        "--env",
        "green",
        "--switch",
        *workers,
        checks=checks,
        **notify_settings(hook),
    )
    assert failed.ret == ExitCode.CHECKS_FAILED, output(failed)
    stack.green.reset()
    switched = run_gate(
        pytester,
        stack,
        "--env",
        "green",
        "--switch",
        *workers,
        checks=checks,
        **notify_settings(hook),
    )
    assert switched.ret == 0, output(switched)
    first, second = hook.events()  # the gates are done: nothing more is coming
    assert (first["event"], first["from"], first["to"], first["exit_code"]) == (
        "failed",
        "blue",
        "green",
        1,
    )
    assert first["text"].startswith(":x: gate failed for green: checks failed (green: ")
    assert (second["event"], second["from"], second["to"], second["tag"]) == (
        "switched",
        "blue",
        "green",
        "v1.1.0",
    )
    assert second["exit_code"] == 0
    assert [e["reason"] for e in (first, second)] == [e["reason"] for e in history(stack)]


def test_a_failed_bake_notifies_the_switch_then_the_switch_back(
    pytester: pytest.Pytester,
    stack: Stack,
    receivers: list[Receiver],
) -> None:
    hook = receiver(receivers)
    result = bake_run(pytester, stack, 3, degrade=True, **notify_settings(hook))
    assert result.ret == ExitCode.BAKE_FAILED, output(result)
    assert outcomes(stack) == ["switched", "rolled-back"]
    events = hook.events()
    assert [(e["event"], e["from"], e["to"], e["exit_code"]) for e in events] == [
        ("switched", "blue", "green", 0),
        ("bake-failed", "green", "blue", 11),
    ]
    assert events[1]["text"].startswith(":rotating_light: bake failed: switched back green → blue")


def test_a_refusal_before_the_gate_starts_is_notified_not_recorded(
    pytester: pytest.Pytester, stack: Stack, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    stack.haproxy.stop()
    result = run_gate(pytester, stack, "--env", "green", "--switch", **notify_settings(hook))
    assert result.ret == ExitCode.REFUSED, output(result)
    [event] = hook.events()
    assert (event["event"], event["to"], event["exit_code"]) == ("refused", "green", 7)
    assert "is unreachable" in event["reason"]
    assert outcomes(stack) == []  # another gate may hold the history: not written


def test_a_dry_run_notifies_nothing(
    pytester: pytest.Pytester, stack: Stack, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    dry = run_gate(
        pytester, stack, "--env", "green", "--switch", "--dry-run", **notify_settings(hook)
    )
    assert dry.ret == 0, output(dry)
    assert hook.received == []


def test_failed_notifications_change_no_exit_status_and_show_no_secret(
    pytester: pytest.Pytester, stack: Stack, receivers: list[Receiver]
) -> None:
    failing, silent = receiver(receivers, 500, 500, 500), receiver(receivers, HANG)
    urls = [
        failing.url(f"/hook/{TOKEN}", userinfo=f"bot:{PASSWORD}"),
        silent.url(f"/services/{TOKEN}"),
    ]
    result = run_gate(
        pytester,
        stack,
        "--env",
        "green",
        "--switch",
        "-rA",
        f"--junitxml={pytester.path / 'reports' / 'junit.xml'}",
        f"--log-file={pytester.path / 'reports' / 'gate.log'}",
        "--log-file-level=DEBUG",
        notify=urls,
        notify_timeout=0.5,
        notify_retries=2,
    )
    assert result.ret == 0, output(result)
    assert stack.served_color() == "green"
    result.stdout.fnmatch_lines(
        [
            "*SWITCH: switched blue -> green*",
            f"bluegreen: warning: notification to http://127.0.0.1:{failing.port}/… not "
            "delivered: HTTP 500 (3 attempts)",
            f"bluegreen: warning: notification to http://127.0.0.1:{silent.port}/… not "
            "delivered: no answer within 0.5s (1 attempt)",
            "bluegreen: exit status 0",
        ],
        consecutive=False,
    )
    # the real URLs were used: the token in the path, the password as basic auth
    assert failing.received[0].path == f"/hook/{TOKEN}"
    basic = base64.b64encode(f"bot:{PASSWORD}".encode()).decode()
    assert failing.received[0].headers["Authorization"] == f"Basic {basic}"
    # ... and shown nowhere: the terminal, the verdict, JUnit, the log file, the history
    log = (pytester.path / "reports" / "gate.log").read_text()
    assert f"POST /hook/{TOKEN}" not in log
    assert "POST /hook/*** HTTP/1.1" in log  # urllib3's line, redacted as it was logged
    written = [
        p for p in pytester.path.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert {p.name for p in written} >= {"verdict.json", "junit.xml", "gate.log", "bluegreen.toml"}
    for text in [output(result), stack.state_file.read_text()] + [
        p.read_text() for p in written if p.name != "bluegreen.toml"
    ]:
        assert TOKEN not in text
        assert PASSWORD not in text
    assert any("not delivered: HTTP 500" in line for line in verdict(pytester)["lines"])


def test_bluegreen_recover_notifies_its_recovery(
    tmp_path: Path, stack: Stack, receivers: list[Receiver]
) -> None:
    hook = receiver(receivers)
    (tmp_path / "bluegreen.toml").write_text(stack.settings_toml(**notify_settings(hook)))
    cut_off_switch(stack)
    result = subprocess.run(
        [*BLUEGREEN, "recover"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [event] = hook.events()
    assert (event["event"], event["from"], event["to"]) == ("recovered", "green", "blue")
    assert event["text"].startswith(":wrench: recovered: blue live: recovered the switch blue")


# --- secrets with whitespace in them ------------------------------------------------------------

# secrets.env as an operator writes it (envfile.py reads \t and \n in double quotes)
WHITESPACE_SECRETS = (
    'TAB_SECRET="tab\\tinside-s3cret"\n'
    "SPACES_SECRET='two  spaces-s3cret'\n"
    'NEWLINE_SECRET="first-line-s3cret\\nsecond-line-s3cret"\n'
    'EVERYTHING="a  b\\tc-s3cret\\n  d  e-s3cret "\n'
)


def whitespace_secrets(folder: Path) -> Secrets:
    path = folder / "secrets.env"
    path.write_text(WHITESPACE_SECRETS)
    secrets = Secrets.load(path)
    assert "\t" in secrets["TAB_SECRET"]
    assert "\n" in secrets["NEWLINE_SECRET"]
    return secrets


def leaked(text: str, secrets: Secrets) -> list[str]:
    """Each secret as any whitespace-normalising code could have left it, found in ``text``."""
    found = []
    for name, value in secrets.items():
        forms = {value, " ".join(value.split()), *(line.strip() for line in value.splitlines())}
        forms |= {json.dumps(f)[1:-1] for f in forms}
        found += [f"{name}: {form!r}" for form in forms if len(form) >= 6 and form in text]
    return found


def reason_with(secrets: Secrets) -> str:
    return "hook said: " + " | ".join(secrets.values()) + "\nand a second line"


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_a_secret_with_whitespace_never_reaches_a_webhook(
    receivers: list[Receiver], tmp_path: Path, event: str
) -> None:
    """``notify`` itself, which the CLI's, recover's and reconcile's events rely on."""
    secrets = whitespace_secrets(tmp_path)
    hook = receiver(receivers)
    bake_failed = event == "bake-failed"
    outcome = Outcome.ROLLED_BACK if bake_failed else Outcome(event)
    code = ExitCode.BAKE_FAILED if bake_failed else None
    recorded = entry(outcome, reason=reason_with(secrets))
    assert notify(settings(hook.url()), recorded, secrets=secrets, exit_code=code) == []
    [payload] = hook.events()
    assert payload["event"] == event
    assert leaked(hook.received[0].body.decode(), secrets) == []
    assert payload["reason"] == "hook said: *** | *** | *** | *** and a second line"
    assert "\n" not in payload["text"]


@pytest.mark.parametrize(
    "outcome", [Outcome.RECOVERED, Outcome.ABORTED, Outcome.EXPIRED, Outcome.REFUSED]
)
def test_a_recorded_outcome_keeps_a_whitespace_secret_out_of_the_history_and_webhooks(
    receivers: list[Receiver], tmp_path: Path, outcome: Outcome
) -> None:
    """``recording.record``, the one place every outcome goes through (the gate, bluegreen
    recover, abort and expiry, reconcile): redacted before anything is written or sent."""
    from pytest_bluegreen.record.recording import record  # noqa: PLC0415

    hook = receiver(receivers)
    (tmp_path / "bluegreen.toml").write_text(
        f'state_file = "history.json"\nnotify = ["{hook.url()}"]\nnotify_timeout = 2\n'
    )
    secrets = whitespace_secrets(tmp_path)
    config = resolve({}, {}, {}, tmp_path)
    warnings = record(config, entry(outcome, reason=reason_with(secrets)), secrets=secrets)
    assert warnings == []
    history_text = (tmp_path / "history.json").read_text()
    assert leaked(history_text, secrets) == []
    assert leaked(hook.received[0].body.decode(), secrets) == []
    [written] = json.loads(history_text)["history"]
    assert written["reason"] == "hook said: *** | *** | *** | ***\nand a second line"


def test_a_gate_s_and_bluegreen_s_events_keep_whitespace_secrets_out(
    pytester: pytest.Pytester, stack: Stack, receivers: list[Receiver]
) -> None:
    """Through real runs: a gate vetoed by a hook that quotes every secret, and bluegreen
    recover after a cut-off switch (its reason and the webhook it sends)."""
    hook = receiver(receivers)
    env = pytester.path / "env"
    env.mkdir()
    secrets = whitespace_secrets(env)
    pytester.makeconftest(
        "from pytest_bluegreen.keys import secrets_of\n\n\n"
        "def pytest_bluegreen_before_switch(config, plan, decision):\n"
        "    return 'frozen: ' + ' | '.join(secrets_of(config).values())\n"
    )
    vetoed = run_gate(
        pytester, stack, "--env", "green", "--switch", env_dir="env", **notify_settings(hook)
    )
    assert vetoed.ret == ExitCode.REFUSED, output(vetoed)
    cut_off_switch(stack)
    recovered = subprocess.run(
        [*BLUEGREEN, "--checks", ".", "recover"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    events = hook.events()
    assert [e["event"] for e in events] == ["refused", "recovered"]
    assert events[0]["reason"] == "vetoed: frozen: *** | *** | *** | ***"
    received = "\n".join(r.body.decode() for r in hook.received)
    for where, text in {
        "webhook": received,
        "history": stack.state_file.read_text(),
        "terminal": output(vetoed) + recovered.stdout + recovered.stderr,
    }.items():
        assert leaked(text, secrets) == [], where
