"""Allure results, JUnit XML and verdict.json from real runs (gated or not); the report, with the
history of the runs before it, looked at."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_bluegreen import __version__
from pytest_bluegreen.engines.compose import TagsFile
from pytest_bluegreen.haproxy.runtime import supported_version
from pytest_bluegreen.settings import StateSettings
from tests.support.gate import CHECKS, output, prepare
from tests.support.infra import require_infra
from tests.support.stack import ROOT, Stack, free_ports

SECRET = "tok-Very-Secret-42"  # noqa: S105 - a planted secret that must never show
LEAKY = (
    CHECKS
    + "\n\ndef test_leaky(http, color):\n"
    + f"    r = http.get('/health', headers={{'Authorization': 'Bearer {SECRET}'}})\n"
    + "    # fails on green only: blame finds it passing on blue (the build, not the environment)\n"
    + f"    assert color == 'blue' or r.status_code == 500, 'token {SECRET} refused'\n"
)


def run_with_reports(
    pytester: pytest.Pytester, stack: Stack, *args: str, checks: str = CHECKS
) -> tuple[pytest.RunResult, Path]:
    prepare(
        pytester,
        stack,
        checks,
        env_dir="env",
        probe_requests=300,
        verdict_file="reports/verdict.json",
    )
    (pytester.path / "env").mkdir(exist_ok=True)
    (pytester.path / "env" / "secrets.env").write_text(f"API_TOKEN={SECRET}\n")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--alluredir",
        "reports/allure-results",
        "--clean-alluredir",
        "--junitxml",
        "reports/junit.xml",
        *args,
        timeout=180,
    )
    return result, pytester.path / "reports"


def environment(reports: Path) -> dict[str, str]:
    text = (reports / "allure-results" / "environment.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


CATEGORY_NAMES = [
    "Environmental failures (fail on the other color too: not the build)",
    "Gate refusals (no switch)",
    "Perf thresholds missed",
    "Infrastructure errors (unreachable, not running)",
    "Check failures (wrong answers)",
]


def category_names(reports: Path) -> list[str]:
    categories = json.loads((reports / "allure-results" / "categories.json").read_text())
    return [c["name"] for c in categories]


def results(reports: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (reports / "allure-results").glob("*-result.json")]


def by_name(reports: Path) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in results(reports)}


def no_secret_anywhere(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            assert SECRET not in file.read_text(errors="replace"), f"secret in {file}"


def test_a_passing_gate_tells_its_story(pytester: pytest.Pytester, stack: Stack) -> None:
    result, reports = run_with_reports(pytester, stack, "--env", "green", "--switch", "-n", "2")
    assert result.ret == 0, output(result)
    named = by_name(reports)
    assert {"test_health [green]", "test_api [green]", "test_shared_service"} <= set(named)
    health = named["test_health [green]"]
    assert {"name": "color", "value": "'green'"} in [
        {"name": p["name"], "value": p["value"]} for p in health["parameters"]
    ]
    assert {"name": "tag", "value": "color:green"} in health["labels"]

    gate = named["bluegreen gate: SWITCHED green"]
    assert gate["status"] == "passed"
    assert gate["statusDetails"]["message"].startswith("bluegreen gate: SWITCHED: switched blue")
    attachments = {a["name"]: a["source"] for a in gate["attachments"]}
    assert {
        "gate decision",
        "HAProxy show stat before the switch",
        "HAProxy show stat after the switch",
        "zero-downtime probe",
        "verdict.json",
    } <= set(attachments)
    stat_after = reports / "allure-results" / attachments["HAProxy show stat after the switch"]
    assert re.search(r"^api_backend,green-api,.*", stat_after.read_text(), re.M)
    probe = json.loads(
        (reports / "allure-results" / attachments["zero-downtime probe"]).read_text()
    )
    assert probe["failed"] == 0
    assert probe["requests"] > 0

    env = environment(reports)
    assert env["target.color"] == "green"
    assert env["live.before"] == "blue"
    assert env["live.after"] == "green"
    assert supported_version(env["haproxy.version"]), env
    assert env["gate.decision"] == "switched"
    assert env["bluegreen.version"] == __version__
    assert set(env) >= {"deployment.tag", "git.revision", "tag.blue", "tag.green"}
    assert category_names(reports) == CATEGORY_NAMES
    verdict = json.loads((reports / "verdict.json").read_text())
    assert (verdict["decision"], verdict["target"], verdict["live_after"]) == (
        "switched",
        "green",
        "green",
    )
    assert verdict["counts"]["green"]["passed"] == 2
    assert verdict["probe"]["failed"] == 0
    assert "<testsuite" in (reports / "junit.xml").read_text()
    no_secret_anywhere(reports)


def test_colors_do_not_share_history_ids(pytester: pytest.Pytester, stack: Stack) -> None:
    result, reports = run_with_reports(pytester, stack, "--env", "all")
    assert result.ret == 0, output(result)
    named = by_name(reports)
    assert named["test_health [blue]"]["historyId"] != named["test_health [green]"]["historyId"]


def test_a_failing_gate_attaches_the_exchange_and_hides_secrets(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    result, reports = run_with_reports(pytester, stack, "--env", "green", "--switch", checks=LEAKY)
    assert result.ret == 1, output(result)
    assert SECRET not in output(result)
    named = by_name(reports)
    leaky = named["test_leaky [green]"]
    assert leaky["status"] == "failed"
    [exchange] = [a for a in leaky["attachments"] if a["name"] == "HTTP exchange (green)"]
    text = (reports / "allure-results" / exchange["source"]).read_text()
    assert text.startswith("GET http://127.0.0.1:")
    assert "Authorization: ***" in text
    assert "--- response: HTTP 200" in text
    assert {"name": "failure", "value": "check"} in leaky["labels"]
    gate = named["bluegreen gate: FAILED green"]
    assert gate["status"] == "failed"
    assert "checks failed (green: 2 passed, 1 failed)" in gate["statusDetails"]["message"]
    assert json.loads((reports / "verdict.json").read_text())["decision"] == "failed"
    junit = (reports / "junit.xml").read_text()
    assert "test_leaky" in junit
    assert "***" in junit
    no_secret_anywhere(reports)


def test_an_inconclusive_gate_is_a_result_too(pytester: pytest.Pytester, stack: Stack) -> None:
    result, reports = run_with_reports(
        pytester, stack, "--env", "green", "--switch", "-m", "shared"
    )
    assert result.ret == 6, output(result)
    gate = by_name(reports)["bluegreen gate: INCONCLUSIVE green"]
    assert gate["status"] == "failed"
    assert "no check for green ran and passed" in gate["statusDetails"]["message"]
    verdict = json.loads((reports / "verdict.json").read_text())
    assert verdict["decision"] == "inconclusive"
    assert verdict["exit_code"] == 6


def deployed(stack: Stack, **tags: str) -> None:
    """The tags file as a deploy leaves it (the stack's colors run without an engine)."""
    TagsFile(StateSettings(state_file=stack.state_file).tags_file).write(tags)


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_plain_run_writes_the_environment_and_categories(
    pytester: pytest.Pytester, stack: Stack, workers: tuple[str, ...]
) -> None:
    deployed(stack, BLUE_TAG="v1.0.0", GREEN_TAG="v1.1.0")
    result, reports = run_with_reports(pytester, stack, "--env", "green", "-m", "quick", *workers)
    assert result.ret == 0, output(result)
    assert result.parseoutcomes()["passed"] == 2  # green's two quick checks
    env = environment(reports)
    assert supported_version(env["haproxy.version"]), env
    assert {k: v for k, v in env.items() if k not in {"haproxy.version", "git.revision"}} == {
        "target.color": "green",
        "live.color": "blue",
        "tag.blue": "v1.0.0",
        "tag.green": "v1.1.0",
        "bluegreen.version": __version__,
    }
    assert list(env)[:2] == ["target.color", "live.color"]
    assert category_names(reports) == CATEGORY_NAMES
    # no gate ran: no gate result, no verdict
    assert not [name for name in by_name(reports) if name.startswith("bluegreen gate")]
    assert not (reports / "verdict.json").exists()


def test_a_runtime_api_that_does_not_answer_is_unknown_not_an_error(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    [nobody] = free_ports(1)
    prepare(pytester, stack, runtime_api=f"127.0.0.1:{nobody}")  # HAProxy still routes
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--alluredir", "allure-results", "--env", "blue", "-m", "quick",
        timeout=60,
    )  # fmt: skip
    assert result.ret == 0, output(result)
    env = environment(pytester.path)
    assert (env["target.color"], env["live.color"], env["haproxy.version"]) == (
        "blue",
        "unknown",
        "unknown",
    )
    assert (env["tag.blue"], env["tag.green"]) == ("-", "-")  # nothing deployed
    assert category_names(pytester.path) == CATEGORY_NAMES


def _chromium(config: pytest.Config) -> str:
    binary = shutil.which("chromium")
    require_infra(
        config, binary is not None, "chromium is not installed (apt-get install chromium)"
    )
    assert binary is not None
    return binary


def _allure_cli(config: pytest.Config) -> None:
    """The Allure command line scripts/report renders with: scripts/setup installed it (the
    suite fetches nothing)."""
    cli = ROOT / ".bluegreen" / "allure-cli" / "node_modules" / ".bin" / "allure"
    require_infra(config, cli.exists(), f"no {cli} (scripts/setup installs it)")


def _render_dom(chromium: str, url: str, profile: Path, drawn: str) -> str:
    """The page's DOM once the browser has drawn ``drawn`` (a string in it). A loaded
    machine can dump the DOM before the report's scripts have drawn it (the virtual time
    budget does not cover every load), so it is rendered again, with a fresh profile, until
    ``drawn`` is in it or a deadline passes; then the last DOM is returned for the asserts."""
    deadline = time.monotonic() + 90
    attempt = 0
    while True:
        attempt += 1
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}-{attempt}",
                "--window-size=1400,1400",
                "--virtual-time-budget=8000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        if drawn in done.stdout or time.monotonic() > deadline:
            return done.stdout


def render(results: Path, out: Path, *options: str) -> str:
    """scripts/report, as a user runs it; its output."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "report"), *options, str(results), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _embedded(page: str, name: str) -> Any:
    """A data file Allure embedded in its single-file report (``d("widgets/x.json", base64)``)."""
    found = re.search(rf'd\("{re.escape(name)}","([A-Za-z0-9+/=]+)"\)', page)
    assert found, f"{name} is not embedded in the report"
    return json.loads(base64.b64decode(found[1]))


def test_the_rendered_report_shows_color_decision_and_attachment(
    pytestconfig: pytest.Config, pytester: pytest.Pytester, stack: Stack, tmp_path: Path
) -> None:
    chromium = _chromium(pytestconfig)
    _allure_cli(pytestconfig)
    result, reports = run_with_reports(pytester, stack, "--env", "green", "--switch", checks=LEAKY)
    assert result.ret == 1, output(result)
    out = tmp_path / "html"
    render(reports / "allure-results", out)
    page = (out / "index.html").read_text()
    assert "googletagmanager" not in page
    assert not re.search(r"""<script[^>]+src=["']?(https?:)?//""", page)
    no_secret_anywhere(out)

    # the overview, as a browser renders it: rendered text sits between tags (the embedded
    # data is JSON, where names follow '"name":')
    overview = _render_dom(
        chromium, (out / "index.html").as_uri(), tmp_path / "profile1", ">test_leaky [green]<"
    )
    assert ">test_leaky [green]<" in overview
    assert ">bluegreen gate: FAILED green<" in overview
    assert re.search(r">\s*green\s*<", overview)  # target.color in the metadata

    test_results = json.loads((out / "test-results.json").read_text())["byId"]
    [leaky_id] = [k for k, v in test_results.items() if v["name"] == "test_leaky [green]"]
    detail = _render_dom(
        chromium,
        f"{(out / 'index.html').as_uri()}#{leaky_id}",
        tmp_path / "profile2",
        ">HTTP exchange (green)<",
    )
    assert ">HTTP exchange (green)<" in detail
    assert "Category: Check failures (wrong answers)" in re.sub(r"<[^>]+>", "", detail)


def test_successive_reports_carry_the_history_and_show_the_trend(
    pytestconfig: pytest.Config, pytester: pytest.Pytester, stack: Stack, tmp_path: Path
) -> None:
    chromium = _chromium(pytestconfig)
    _allure_cli(pytestconfig)
    history = tmp_path / "history.jsonl"
    # three runs in a row; in the second, green's API answers 500 (its health stays 200)
    for run, api_status in enumerate((200, 500, 200), start=1):
        stack.green.control(api_status=api_status)
        result, reports = run_with_reports(pytester, stack, "--env", "green", "-m", "quick")
        assert result.ret == (1 if api_status == 500 else 0), output(result)
        said = render(
            reports / "allure-results", tmp_path / f"html{run}", "--history", str(history)
        )
        assert f"{run - 1} earlier run(s)" in said
        assert f"history: {history} ({run} run(s))" in said
    assert len(history.read_text().splitlines()) == 3
    out = tmp_path / "html3"
    page = (out / "index.html").read_text()

    # the trend: every run, oldest first, the current one last
    [dynamics] = [
        chart
        for chart in _embedded(page, "widgets/charts.json")["general"].values()
        if chart["type"] == "statusDynamics"
    ]
    assert [point["statistic"].get("failed", 0) for point in dynamics["data"]] == [0, 1, 0]
    assert dynamics["data"][-1]["id"] == "current"

    # a check's History tab: its earlier results, newest first
    test_results = json.loads((out / "test-results.json").read_text())["byId"]
    [api_id] = [k for k, v in test_results.items() if v["name"] == "test_api [green]"]
    earlier = _embedded(page, f"data/test-results/{api_id}.json")["history"]
    assert [h["status"] for h in earlier] == ["failed", "passed"]

    # the trend chart, as rendered: a point per run on its axis (a first run says "No history
    # information available" instead)
    charts = _render_dom(
        chromium,
        f"{(out / 'index.html').as_uri()}#charts",
        tmp_path / "profile",
        ">Status dynamics<",
    )
    widget = charts.split(">Status dynamics<", 1)[1].split('data-drop-shadow="true"', 1)[0]
    ticks = re.findall(r'rotate\(45\)"[^>]*>([^<]*)<', widget)
    assert len(ticks) == 3, widget[:2000]
    assert ticks[-1] == "Latest"


def test_a_history_allure_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    results, out, history = tmp_path / "results", tmp_path / "html", tmp_path / "history.jsonl"
    results.mkdir()
    out.mkdir()
    (out / "index.html").write_text("the last report")
    history.write_text('{"uuid": "a", "testResults": {}}\nnot json\n')
    done = subprocess.run(
        [str(ROOT / "scripts" / "report"), "--history", str(history), str(results), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"[report] ERROR: {history} line 2 is not an Allure 3 history entry "
        "(move the file away to start a new history)"
    ]
    assert history.read_text() == '{"uuid": "a", "testResults": {}}\nnot json\n'
    assert (out / "index.html").read_text() == "the last report"
