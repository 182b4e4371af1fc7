"""monitoring/: the shipped Prometheus configuration and alert rules, checked by promtool, and
the rules' unit tests (monitoring/tests/, promtool's own test runner: input series, the alerts
expected at each time). One rule is evaluated by a real Prometheus against a real HAProxy in
tests/judge/test_prometheus.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.infra import require_infra
from tests.support.stack import ROOT

MONITORING = ROOT / "monitoring"
RULES = sorted((MONITORING / "rules").glob("*.yml"))
RULE_TESTS = sorted((MONITORING / "tests").glob("*_test.yml"))


@pytest.fixture(scope="module")
def promtool(pytestconfig: pytest.Config) -> str:
    found = shutil.which("promtool")
    require_infra(
        pytestconfig, found is not None, "promtool is not installed (apt-get install prometheus)"
    )
    assert found is not None
    return found


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=MONITORING,
    )


def test_there_are_rules_and_tests_of_them() -> None:
    assert [p.name for p in RULES] == ["bluegreen.yml"]
    assert [p.name for p in RULE_TESTS] == ["bluegreen_test.yml"]


def test_the_configuration_is_valid(promtool: str) -> None:
    checked = run(promtool, "check", "config", MONITORING / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_the_rules_are_valid(promtool: str) -> None:
    checked = run(promtool, "check", "rules", *RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    tested = run(promtool, "test", "rules", *RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_a_broken_expectation_fails_the_unit_tests(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: the same tests against a rule whose threshold moved from 1%
    to 5% (the live color's 2% of 5xx then raises nothing)."""
    (tmp_path / "rules").mkdir()
    [rules] = RULES
    moved = rules.read_text().replace("> 0.01,", "> 0.05,")
    assert moved != rules.read_text()
    (tmp_path / "rules" / rules.name).write_text(moved)
    (tmp_path / "tests").mkdir()
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / "tests" / test.name)
    tested = run(promtool, "test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr
    assert "BluegreenLiveColorHigh5xxRate" in tested.stdout + tested.stderr
