"""tests/conftest.py's tiers and xdist groups, on a small suite run as scripts/test runs the real
one (``-n 3 --dist loadgroup``): a test that uses Docker is marked ``docker`` and runs in the
``docker`` group, one that uses a swarm or the machine's defaults in the ``machine`` group beside
it, a ``timing`` test in the ``quiet`` group, each group on one worker, one test after the other;
``-m "not docker and not slow"`` (scripts/test --fast) leaves them out."""

from __future__ import annotations

import os
import re
from collections import defaultdict

import pytest

from tests.support.stack import ROOT

CONFTEST = """
import pytest

from tests.conftest import pytest_collection_finish, pytest_collection_modifyitems  # noqa: F401


@pytest.fixture(scope="session")
def docker_engine():
    pass


@pytest.fixture(scope="session")
def docker_swarm(docker_engine):
    pass
"""

TESTS = """
import pytest

pytestmark = pytest.mark.parametrize("n", range(6))


def test_compose(docker_engine, n):
    pass


def test_swarm(docker_swarm, n):
    pass


@pytest.mark.machine
def test_default_ports(docker_engine, n):
    pass


@pytest.mark.timing
def test_latencies(n):
    pass


def test_anything(n):
    pass


@pytest.mark.timeout(3600)
def test_minutes(n):
    pass
"""
RAN = re.compile(r"^\[(gw\d)\] \[\s*\d+%\] PASSED \S+::(test_\w+)\[\d\](@\w+)?\s*$")


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=TESTS)
    pytester.makeini(
        "[pytest]\nmarkers =\n    docker\n    swarm\n    machine\n    faults\n    slow\n"
        "    timing\ntimeout = 300\n"
    )
    return pytester


def test_each_group_runs_on_one_worker_and_the_rest_spreads(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "3", "--dist", "loadgroup", "-v"
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    workers: dict[str, set[str]] = defaultdict(set)
    suffixes: dict[str, set[str]] = defaultdict(set)
    for line in result.stdout.lines:
        found = RAN.match(line)
        if found:
            workers[found[2]].add(found[1])
            suffixes[found[2]].add(found[3] or "")
    assert sum(1 for line in result.stdout.lines if RAN.match(line)) == 36, result.stdout.str()
    assert suffixes == {
        "test_compose": {"@docker"},
        "test_swarm": {"@machine"},
        "test_default_ports": {"@machine"},
        "test_latencies": {"@quiet"},
        "test_anything": {""},
        "test_minutes": {""},
    }
    assert len(workers["test_compose"]) == 1, workers  # one after the other
    assert len(workers["test_latencies"]) == 1, workers
    assert len(workers["test_swarm"] | workers["test_default_ports"]) == 1, workers
    # the Compose tests and the machine's side by side, each group on a worker of its own
    assert workers["test_compose"] != workers["test_swarm"], workers


def test_the_fast_tier_leaves_out_docker_and_slow(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "-m", "not docker and not slow", "-q"
    )
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=12, deselected=24)  # the Docker ones and test_minutes left out
