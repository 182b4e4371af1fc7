"""Environmental or the build: a failed check of the target is run again on the other color
before the gate decides, against a real HAProxy in front of two real backends."""

from __future__ import annotations

import json

import pytest

from tests.support.gate import history, outcomes, output, run_gate, verdict
from tests.support.stack import Stack


def test_failing_on_both_colors_is_environmental_and_moves_nothing(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    stack.blue.control(api_status=500)  # what a shared service down does to both colors
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 6, output(result)
    result.stdout.fnmatch_lines(
        [
            "*blame: running 1 failed check(s) of green on blue*",
            "*bluegreen: INCONCLUSIVE: inconclusive: environmental: 1 failed check(s) of green "
            "fail on blue too (test_checks.py::test_api[[]green[]]): a shared service, the "
            "network or the check itself, not the build*",
            "*blame: test_checks.py::test_api[[]green[]] fails on blue too: environmental*",
            "*traffic stays on blue; nothing rolled back*",
        ],
        consecutive=False,
    )
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["inconclusive"]
    assert history(stack)[-1]["reason"].startswith("inconclusive: environmental: ")
    blame = verdict(pytester)["blame"]
    assert blame["environmental"] is True
    assert blame["checks"] == [
        {
            "nodeid": "test_checks.py::test_api[green]",
            "twin": "test_checks.py::test_api[blue]",
            "culprit": "environmental",
            "detail": "fails on blue too",
        }
    ]
    # the twin's run is not a test of the session: the counts are green's own
    assert verdict(pytester)["counts"]["green"]["failed"] == 1
    assert "blue" not in verdict(pytester)["counts"]
    assert not [line for line in result.outlines if "::test_api[blue]" in line]


def test_failing_on_the_new_color_only_is_the_build(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "green", "--switch")
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(
        [
            "*bluegreen: FAILED: checks failed (green: 1 passed, 1 failed)*",
            "*blame: test_checks.py::test_api[[]green[]] passes on blue: the build of green*",
            "*the build: 1 failed check(s) of green pass on blue*",
            "*traffic stays on blue*",
        ],
        consecutive=False,
    )
    assert stack.served_color() == "blue"
    assert verdict(pytester)["blame"]["environmental"] is False


def test_a_live_color_failing_like_the_other_is_not_rolled_back(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    # blue is live and its own checks fail; green (the rollback target) fails the same way
    stack.blue.control(api_status=500)
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "blue", "--switch")
    assert result.ret == 6, output(result)
    assert "fail on green too" in output(result)
    assert stack.served_color() == "blue"
    assert outcomes(stack) == ["inconclusive"]


def test_a_live_color_failing_alone_is_still_rolled_back(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    stack.blue.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "blue", "--switch")
    assert result.ret == 1, output(result)
    result.stdout.fnmatch_lines(
        ["*passes on green: the build of blue*", "*rolled back blue -> green*"],
        consecutive=False,
    )
    assert stack.served_color() == "green"


def test_blame_off_keeps_the_plain_failure(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.blue.control(api_status=500)
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "green", "--switch", blame="off")
    assert result.ret == 1, output(result)
    assert "blame:" not in output(result)
    assert verdict(pytester)["blame"] is None


def test_blame_under_xdist(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.blue.control(api_status=500)
    stack.green.control(api_status=500)
    result = run_gate(pytester, stack, "--env", "green", "--switch", "-n", "2")
    assert result.ret == 6, output(result)
    assert verdict(pytester)["blame"]["checks"][0]["twin"] == "test_checks.py::test_api[blue]"
    assert stack.served_color() == "blue"


def test_the_environmental_category_reaches_allure(pytester: pytest.Pytester, stack: Stack) -> None:
    stack.blue.control(api_status=500)
    stack.green.control(api_status=500)
    result = run_gate(
        pytester, stack, "--env", "green", "--switch", "--alluredir", "allure-results"
    )
    assert result.ret == 6, output(result)
    results = pytester.path / "allure-results"
    categories = json.loads((results / "categories.json").read_text())
    assert categories[0]["name"].startswith("Environmental failures")
    gate = [
        json.loads(p.read_text())
        for p in results.glob("*-result.json")
        if "bluegreen gate" in p.read_text()
    ]
    assert len(gate) == 1, [p.name for p in results.iterdir()]
    assert "environmental" in gate[0]["statusDetails"]["message"]
    assert [s["name"] for s in gate[0]["steps"]] == [
        "blame: test_checks.py::test_api[green] fails on blue too: environmental"
    ]
    # the twin's run left no Allure result of its own
    names = [json.loads(p.read_text()).get("name", "") for p in results.glob("*-result.json")]
    assert not [n for n in names if "blue" in n and "test_api" in n], names
