"""The plugin in a pytest session (pytester, no HAProxy): options, selection, markers, header."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHECKS = """
import pytest


def test_health(color):
    assert color in ("blue", "green")


def test_api(http, color):
    assert http.color == color
    assert http.base_url == {"blue": "http://127.0.0.1:21010/", "green": "http://127.0.0.1:21011/"}[color]


@pytest.mark.shared
def test_database():
    pass


def test_untagged():
    pass


@pytest.mark.parametrize("color", ["blue"])
def test_blue_only(color):
    assert color == "blue"
"""

ALL_IDS = {
    "test_checks.py::test_health[blue]",
    "test_checks.py::test_health[green]",
    "test_checks.py::test_api[blue]",
    "test_checks.py::test_api[green]",
    "test_checks.py::test_database",
    "test_checks.py::test_untagged",
    "test_checks.py::test_blue_only[blue]",
}


@pytest.fixture
def checks(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_checks=CHECKS)
    return pytester


def passed_ids(result: pytest.RunResult) -> set[str]:
    """Node ids from the ``-rA`` short summary (the same with and without xdist)."""
    return {m[1] for line in result.outlines if (m := re.match(r"PASSED (\S+)", line))}


def flat(result: pytest.RunResult) -> str:
    """The output as one line (help text wraps at the terminal width)."""
    return " ".join(" ".join(result.outlines).split())


def header(result: pytest.RunResult) -> tuple[str, str]:
    [settings] = [line for line in result.outlines if line.startswith("bluegreen: env=")]
    [colors] = [line for line in result.outlines if line.startswith("bluegreen colors: ")]
    return settings, colors


def usage_error(result: pytest.RunResult) -> str:
    """The one ``ERROR:`` line of a usage error (exit 4), without a traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines + result.errlines
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert not any("Traceback" in line for line in result.errlines + result.outlines)
    assert errors[0].startswith("ERROR: bluegreen: ")
    return errors[0]


# --- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--env", "purple"],
            "--env must be one of blue|green|all|shared, got 'purple' (from cli --env)",
            id="env-purple",
        ),
        pytest.param(
            ["--drain-timeout", "abc"],
            "drain_timeout expected a number of seconds, got 'abc' (from cli --drain-timeout)",
            id="drain-timeout-abc",
        ),
        pytest.param(
            ["--switch", "--env", "all"],
            "--switch needs one target color (--env blue or --env green), got --env all",
            id="switch-env-all",
        ),
        pytest.param(
            ["--switch", "--rollback", "--env", "green"],
            "--switch and --rollback cannot be combined",
            id="switch-rollback",
        ),
        pytest.param(
            ["--dry-run"],
            "--dry-run only makes sense with --switch or --rollback",
            id="dry-run-alone",
        ),
        pytest.param(
            ["--switch=manual", "--rollback", "--env", "green"],
            "--switch=manual cannot be combined with --rollback",
            id="manual-rollback",
        ),
        pytest.param(
            ["--switch=manual", "--env", "all"],
            "--switch needs one target color (--env blue or --env green), got --env all",
            id="manual-env-all",
        ),
        pytest.param(
            ["--runtime-api", "nowhere"],
            "runtime_api: Runtime API address 'nowhere' is neither a socket path nor host:port "
            "(from cli --runtime-api)",
            id="runtime-api",
        ),
        pytest.param(
            ["--routed-url", "localhost:8080"],
            "routed_api_url expected an http(s) URL, got 'localhost:8080' (from cli --routed-url)",
            id="routed-url",
        ),
        pytest.param(
            ["--bluegreen-config", "missing.toml"],
            "settings file missing.toml does not exist",
            id="missing-config",
        ),
    ],
)
def test_bad_option_is_a_one_line_usage_error(
    checks: pytest.Pytester, args: list[str], message: str
) -> None:
    result = checks.runpytest(*args)
    assert usage_error(result).startswith(f"ERROR: bluegreen: {message}")
    assert not passed_ids(result)


def test_bad_env_var_is_a_usage_error(
    checks: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_HTTP_TIMEOUT", "-1")
    line = usage_error(checks.runpytest())
    assert line == (
        "ERROR: bluegreen: http_timeout expected seconds in (0, 86400], got '-1' "
        "(from env BLUEGREEN_HTTP_TIMEOUT)"
    )


def test_typo_in_settings_file_is_a_usage_error(checks: pytest.Pytester) -> None:
    checks.makefile(".toml", bluegreen="drian_timeout = 3\n")
    line = usage_error(checks.runpytest())
    assert line.startswith("ERROR: bluegreen: unknown setting 'drian_timeout' in ")
    assert "bluegreen.toml" in line


def test_help_lists_options_with_env_and_ini_names(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    text = flat(result)
    assert "blue/green deployment gate (pytest-bluegreen)" in text
    assert "--drain-timeout=DRAIN_TIMEOUT" in text
    assert "[env: BLUEGREEN_DRAIN_TIMEOUT]" in text
    assert "bluegreen_drain_timeout" in text


def test_help_works_with_a_bad_setting(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_ENV", "purple")
    result = pytester.runpytest("--help")
    assert result.ret == 0, result.errlines
    assert "[env: BLUEGREEN_ENV]" in flat(result)


MISSING_EXTRAS = {
    "stats": ("scipy", '[compare]\n"/api/echo" = ["p(95) <= live * 1.1"]\n'),
    "allure": ("allure", 'allure_dir = "allure-results"\n'),
    "metrics": ("prometheus_client", 'metrics_textfile = "bluegreen.prom"\n'),
}


@pytest.mark.parametrize("extra", MISSING_EXTRAS)
def test_help_and_version_work_when_an_extra_the_settings_use_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    module, settings = MISSING_EXTRAS[extra]
    monkeypatch.setitem(sys.modules, module, None)  # import fails, find_spec finds nothing
    pytester.makefile(".toml", bluegreen=settings)
    pytester.makepyfile(test_checks="def test_x():\n    pass\n")
    for args in (["--help"], ["--version"], ["--markers"]):
        shown = pytester.runpytest(*args)
        assert shown.ret == 0, (args, shown.outlines + shown.errlines)
    # the error belongs to a run that uses the feature
    line = usage_error(pytester.runpytest())
    assert f"needs the '{extra}' extra: pip install 'pytest-bluegreen[{extra}]'" in line


# --- the settings file: from where pytest runs, never from a rootdir an option value moved ------


@pytest.fixture
def deployment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """deploy/ (bluegreen.toml, checks/) where pytest runs, and a socket file outside it."""
    deploy = pytester.mkdir("deploy")
    (deploy / "bluegreen.toml").write_text('routed_api_url = "http://127.0.0.1:1"\n')
    (deploy / "checks").mkdir()
    (deploy / "checks" / "test_checks.py").write_text("def test_x():\n    pass\n")
    (pytester.mkdir("run") / "admin.sock").write_text("")
    monkeypatch.chdir(deploy)
    return deploy


FROM_THE_FILE = "routed_api_url=http://127.0.0.1:1 (file bluegreen.toml routed_api_url)"


def test_a_socket_path_as_a_separate_value_is_refused(
    pytester: pytest.Pytester, deployment: Path
) -> None:
    """``--runtime-api /run/admin.sock``: pytest counts the value as a test path when it picks
    its rootdir (before it knows the option): a one-line refusal that says what to type, never
    a run on another folder's ini and defaults."""
    sock = str(pytester.path / "run" / "admin.sock")
    line = usage_error(pytester.runpytest("--runtime-api", sock, "checks", "--collect-only"))
    assert line.startswith(f"ERROR: bluegreen: write --runtime-api={sock} "), line
    written = pytester.runpytest(f"--runtime-api={sock}", "checks", "--collect-only")
    assert written.ret == 0, written.outlines + written.errlines
    settings, _ = header(written)
    assert FROM_THE_FILE in settings
    assert f"rootdir: {deployment}" in written.outlines


def test_the_settings_file_is_found_from_a_subfolder(
    pytester: pytest.Pytester, deployment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(deployment / "checks")
    result = pytester.runpytest("--collect-only")
    assert result.ret == 0, result.outlines + result.errlines
    assert FROM_THE_FILE in header(result)[0]


def test_every_key_of_the_file_has_its_ini_twin(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        bluegreen_skip_backup = true
        bluegreen_dry_run = true
        """
    )
    pytester.makepyfile(
        test_ini="""
        def test_ini(bluegreen_settings):
            run, sources = bluegreen_settings.run, bluegreen_settings.sources
            assert run.skip_backup and run.dry_run
            assert sources["skip_backup"] == "ini bluegreen_skip_backup"
            assert sources["dry_run"] == "ini bluegreen_dry_run"
        """
    )
    result = pytester.runpytest("--strict-config")
    result.assert_outcomes(passed=1)


# --- parametrization and selection ------------------------------------------------------------


def test_color_tests_get_one_id_per_color(checks: pytest.Pytester) -> None:
    result = checks.runpytest("--collect-only", "-q", "--env", "all")
    assert result.ret == 0
    collected = {line for line in result.outlines if "::" in line}
    assert collected == ALL_IDS


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            "green",
            {"test_health[green]", "test_api[green]", "test_database", "test_untagged"},
            id="green",
        ),
        pytest.param(
            "blue",
            {
                "test_health[blue]",
                "test_api[blue]",
                "test_blue_only[blue]",
                "test_database",
                "test_untagged",
            },
            id="blue",
        ),
        pytest.param("shared", {"test_database"}, id="shared"),
        pytest.param("all", {i.split("::")[1] for i in ALL_IDS}, id="all"),
    ],
)
def test_selection_per_env(checks: pytest.Pytester, env: str, expected: set[str]) -> None:
    result = checks.runpytest("--env", env, "-rA")
    assert passed_ids(result) == {f"test_checks.py::{name}" for name in expected}
    deselected = len(ALL_IDS) - len(expected)
    result.assert_outcomes(passed=len(expected), deselected=deselected)
    if deselected:
        result.stdout.fnmatch_lines(
            [f"collected 7 items / {deselected} deselected / {len(expected)} selected"]
        )
    else:
        assert not any("deselected" in line for line in result.outlines)


def test_env_var_selects(checks: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_ENV", "shared")
    result = checks.runpytest("-rA")
    assert passed_ids(result) == {"test_checks.py::test_database"}
    result.assert_outcomes(passed=1, deselected=6)
    assert "env=shared (env BLUEGREEN_ENV)" in header(result)[0]


def test_cli_beats_env_var(checks: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_ENV", "shared")
    result = checks.runpytest("--env", "green", "-rA")
    result.assert_outcomes(passed=4, deselected=3)
    assert "env=green (cli --env)" in header(result)[0]


def test_own_color_parametrization_is_kept(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_own="""
        import pytest

        @pytest.mark.parametrize(("color", "n"), [("green", 1), ("green", 2)])
        def test_pair(color, n):
            assert color == "green"

        @pytest.mark.parametrize("n, color", [(1, "blue")])
        def test_string_names(n, color):
            assert color == "blue"
        """
    )
    result = pytester.runpytest("--env", "all", "-rA")
    assert passed_ids(result) == {
        "test_own.py::test_pair[green-1]",
        "test_own.py::test_pair[green-2]",
        "test_own.py::test_string_names[1-blue]",
    }
    green = pytester.runpytest("--env", "green", "-rA")
    green.assert_outcomes(passed=2, deselected=1)


def test_xdist_keeps_the_same_selection(checks: pytest.Pytester) -> None:
    serial = checks.runpytest("--env", "green", "-rA")
    distributed = checks.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--env", "green", "-rA", "-p", "no:cacheprovider"
    )
    assert distributed.ret == 0, distributed.outlines
    distributed.stdout.fnmatch_lines(["*2 workers*"])
    distributed.assert_outcomes(passed=4)
    assert passed_ids(distributed) == passed_ids(serial)
    assert len(passed_ids(serial)) == 4


# --- markers --------------------------------------------------------------------------------


def test_markers_are_registered_with_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.shared: a check of the shared services*runs with every --env",
            "@pytest.mark.quick: a fast check, part of the pre-switch gate*",
            "@pytest.mark.perf: a performance check*",
        ],
        consecutive=False,
    )


def test_strict_markers_accepts_ours(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.shared
        def test_a():
            pass

        @pytest.mark.quick
        def test_b(color):
            pass

        @pytest.mark.perf
        def test_c():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-m", "quick or perf or shared")
    result.assert_outcomes(passed=4)


def test_strict_markers_rejects_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.sharde
        def test_a():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'sharde' not found in `markers` configuration option*"])


# --- where each value came from: the report header ------------------------------------------


@dataclass(frozen=True)
class Given:
    files: dict[str, str] = field(default_factory=dict)
    env_var: str | None = None  # BLUEGREEN_ENV
    args: tuple[str, ...] = ()


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        pytest.param(Given(args=("--env", "green")), "env=green (cli --env)", id="cli"),
        pytest.param(Given(env_var="blue"), "env=blue (env BLUEGREEN_ENV)", id="env-var"),
        pytest.param(
            Given(files={"tox.ini": "[pytest]\nbluegreen_env = shared\n"}),
            "env=shared (ini bluegreen_env)",
            id="ini",
        ),
        pytest.param(
            Given(files={"bluegreen.toml": 'env = "green"\n'}),
            "env=green (file bluegreen.toml env)",
            id="bluegreen-toml",
        ),
        pytest.param(
            Given(files={"pyproject.toml": '[tool.bluegreen]\nenv = "blue"\n'}),
            "env=blue (file pyproject.toml env)",
            id="pyproject",
        ),
        pytest.param(Given(), "env=all (default)", id="default"),
    ],
)
def test_header_shows_the_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, given: Given, shown: str
) -> None:
    for name, text in given.files.items():
        (pytester.path / name).write_text(text)
    if given.env_var is not None:
        monkeypatch.setenv("BLUEGREEN_ENV", given.env_var)
    result = pytester.runpytest("--collect-only", *given.args)
    settings, _ = header(result)
    assert settings.startswith(f"bluegreen: {shown}, "), settings


def test_header_with_every_layer(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(
        """
        [pytest]
        bluegreen_env = shared
        bluegreen_drain_timeout = 4
        bluegreen_runtime_api = 127.0.0.1:9999
        """
    )
    pytester.makefile(
        ".toml",
        bluegreen="""
        env = "blue"
        drain_timeout = 3
        http_timeout = 2
        deployment_tag = "v9"

        [colors.blue]
        api_url = "http://blue.internal:8000"
        servers = ["api/blue"]

        [colors.green]
        api_url = "http://green.internal:8000"
        servers = ["api/green"]
        """,
    )
    monkeypatch.setenv("BLUEGREEN_ENV", "green")
    monkeypatch.setenv("BLUEGREEN_DRAIN_TIMEOUT", "5")
    monkeypatch.setenv("BLUEGREEN_GREEN_API_URL", "http://green.env:8000")
    result = pytester.runpytest("--collect-only", "--env", "blue", "--strict-config")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    settings, colors = header(result)
    for shown in (
        "env=blue (cli --env)",
        "drain_timeout=5.0 (env BLUEGREEN_DRAIN_TIMEOUT)",
        "runtime_api=127.0.0.1:9999 (ini bluegreen_runtime_api)",
        "http_timeout=2.0 (file bluegreen.toml http_timeout)",
        "deployment_tag=v9 (file bluegreen.toml deployment_tag)",
        "verify_timeout=10.0 (default)",
    ):
        assert shown in settings, settings
    assert "blue api=http://blue.internal:8000 servers=api/blue " in colors
    assert "(file bluegreen.toml colors.blue.api_url)" in colors
    assert "green api=http://green.env:8000 servers=api/green (env BLUEGREEN_GREEN_API_URL)" in (
        colors
    )


# --- fixtures -------------------------------------------------------------------------------


def test_conftest_fixture_replaces_ours(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def http(color):
            return f"my-client-for-{color}"

        @pytest.fixture
        def environment():
            return "stub"
        """
    )
    pytester.makepyfile(
        test_checks="""
        def test_api(http, color):
            assert http == f"my-client-for-{color}"

        def test_env(environment):
            assert environment == "stub"
        """
    )
    result = pytester.runpytest("--env", "green", "-rA")
    # test_env no longer needs a color: it is untagged and runs with --env green
    assert passed_ids(result) == {"test_checks.py::test_api[green]", "test_checks.py::test_env"}
    result.assert_outcomes(passed=2, deselected=1)


def test_environment_reads_env_files_and_hides_secrets(pytester: pytest.Pytester) -> None:
    deploy = pytester.mkdir("config") / "deploy"
    deploy.mkdir()
    (deploy / "shared.env").write_text("LEVEL=info\nREGION=eu\n")
    (deploy / "blue.env").write_text("LEVEL=debug\n")
    (deploy / "secrets.env").write_text("TOKEN=t0p-s3cret\n")
    pytester.makepyfile(
        test_env="""
        def test_environment(environment, bluegreen_settings):
            expected = "debug" if environment.name == "blue" else "info"
            assert environment.variables == {"LEVEL": expected, "REGION": "eu"}
            assert environment.secrets == {"TOKEN": "t0p-s3cret"}
            assert "t0p-s3cret" not in repr(environment)
            topology = bluegreen_settings.topology
            assert environment.api_url == topology.color[environment.name].api_url
        """
    )
    result = pytester.runpytest("-rA")
    assert passed_ids(result) == {
        "test_env.py::test_environment[blue]",
        "test_env.py::test_environment[green]",
    }


# --- failure labels: INFRA-ERROR in the terminal, the label in JUnit, with and without xdist --

LABELLED = """
import pytest


def test_unreachable(color):
    raise ConnectionRefusedError("no answer")


def test_wrong(color):
    assert color == "purple"


def test_fine(color):
    pass


@pytest.mark.shared
def test_shared_unreachable():
    raise ConnectionResetError("reset")
"""


# what the reports carry where they are counted (the controller, under xdist)
LABELS_SEEN = """
import json, os


def pytest_runtest_logreport(report):
    if report.when == "call" and not os.environ.get("PYTEST_XDIST_WORKER"):
        with open("labels.jsonl", "a") as out:
            out.write(json.dumps([report.nodeid, report.user_properties]) + "\\n")
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_failures_are_labelled_infrastructure_or_wrong_answer(
    pytester: pytest.Pytester, xdist: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that could not reach something is INFRA-ERROR (naming what), a wrong answer
    FAILED; JUnit carries the label; a passing run has no label."""
    # this suite may itself run under xdist: the inner run's controller is no worker
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_labelled=LABELLED)
    pytester.makeconftest(LABELS_SEEN)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider", *xdist)
    result.assert_outcomes(failed=5, passed=2)
    summary = [
        "INFRA-ERROR (blue unreachable) test_labelled.py::test_unreachable[[]blue[]]*",
        "INFRA-ERROR (green unreachable) test_labelled.py::test_unreachable[[]green[]]*",
        "INFRA-ERROR (shared unreachable) test_labelled.py::test_shared_unreachable*",
        "FAILED test_labelled.py::test_wrong[[]blue[]]*",
        "FAILED test_labelled.py::test_wrong[[]green[]]*",
    ]
    for line in summary:
        result.stdout.fnmatch_lines([line])
    seen = [json.loads(line) for line in (pytester.path / "labels.jsonl").read_text().splitlines()]
    labels = {nodeid: dict(properties).get("bluegreen_failure") for nodeid, properties in seen}
    assert labels == {
        "test_labelled.py::test_unreachable[blue]": "infrastructure",
        "test_labelled.py::test_unreachable[green]": "infrastructure",
        "test_labelled.py::test_wrong[blue]": "check",
        "test_labelled.py::test_wrong[green]": "check",
        "test_labelled.py::test_fine[blue]": None,
        "test_labelled.py::test_fine[green]": None,
        "test_labelled.py::test_shared_unreachable": "infrastructure",
    }


# --- what an idle session loads ---------------------------------------------------------------

IDLE_CHECK = """
import sys


def test_loaded(color):
    print("LOADED", *sorted(m for m in sys.modules if m.startswith("pytest_bluegreen.")))
"""

# only a gate, a bake, a switch or a check that reaches a color needs these; each costs every
# session its import (benchmarks/plugin_overhead.py: the plugin's cost is mostly imports)
GATE_ONLY = (
    "judge.bake",
    "judge.bakecounters",  # bake.py's counters (issue 23)
    "gate.builds",
    "gateplugin",
    "gate.run",
    "httpclient",
    "switch.journal",
    "judge.promql",
    "process.signals",
    "record.history",
    "switch.transaction",
    # the switch's parts (issue 23)
    "switch.outcome",
    "switch.reading",
    "switch.restoring",
    "switch.serverstate",
    "switch.steps",
    "switch.verification",
    # what left state.py and journal.py for lower rooms (issue 23) is a gate's all the same
    "haproxy.lock",
    "haproxy.lockfile",
    "haproxy.identity",
    "record.durable",
)


def test_a_session_without_a_gate_loads_none_of_the_gates_modules(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_idle=IDLE_CHECK)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--env", "green")
    result.assert_outcomes(passed=1)
    [line] = [line for line in result.outlines if "LOADED " in line]  # after the file's name
    loaded = {name.removeprefix("pytest_bluegreen.") for name in line.split("LOADED ")[1].split()}
    assert "plugin" in loaded  # the probe sees the plugin's modules
    assert sorted(loaded.intersection(GATE_ONLY)) == []
