"""The plugin's own tests: shared fixtures, and the tiers and xdist groups derived from them.

Markers are never written by hand on a test that uses Docker: a test (or a fixture it uses)
that needs the engine takes ``docker_engine`` (``docker_swarm`` for a swarm), and
:func:`pytest_collection_modifyitems` marks it ``docker`` (``swarm``), puts it in the ``docker``
xdist group and gives it the Docker timeout. ``scripts/test --fast`` runs ``-m "not docker and
not slow"``: ``slow`` is a timeout above the default, a sweep's cell off the diagonal the fast
tier samples (tests/support/tiers.py), or a test that took seconds in a full run (listed in
tests/slow.txt by benchmarks/durations.py). See CONTRIBUTING.md (the test tiers).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.infra import require_infra
from tests.support.stack import Backend, Stack, StackFactory, backends, haproxy_binary, make_cert

if TYPE_CHECKING:
    from tests.support.cluster import Cluster
    from tests.support.docker_stack import ComposeProject

pytest_plugins = ["pytester"]

# a fixture (anywhere among a test's fixtures, or a parameter's name) -> the markers it brings
MARKS_BY_FIXTURE: dict[str, tuple[str, ...]] = {
    "docker_engine": ("docker",),
    "docker_swarm": ("docker", "swarm"),
    "docker_cluster": ("docker", "cluster"),
    "fault": ("faults",),  # parametrized by the fault it injects: a cell of the fault matrix
}
# by hand, on a Docker test that holds or reads the machine's shared state without a swarm
# fixture (``scripts/demo`` on the seed's default ports; the Swarm engine asked of an engine in
# no swarm): ``pytest.mark.machine``, so it runs in the ``machine`` group

# the first marker a test has -> its xdist group (``--dist loadgroup``); the rest spread. The
# Compose tests in one group (the session's Compose project lives in one worker); what holds
# the machine's shared Docker state -- the swarm, the seed's default ports -- in another,
# beside it: a swarm is made and left only while no Compose test runs (``names_lock``: leaving
# one makes Docker forget the names of running containers, moby/moby#45144, and the harness
# restarts them; tests/support/swarm.py).
GROUP_BY_MARK = (
    ("swarm", "machine"),
    ("cluster", "machine"),  # three Docker-in-Docker nodes: the machine's CPU, beside no swarm
    ("machine", "machine"),
    ("docker", "docker"),
    ("timing", "quiet"),
)

# the machine group's modules that need no swarm at first, before those that make the
# session's: else each of these leaves it, and a leave waits for the Compose test running
# then and restarts the Compose project's containers (any order passes; this one is quicker)
NO_SWARM_FIRST = ("tests/suite/test_swarm_leave.py", "tests/engines/test_swarm_failures.py")

# the tests that took seconds in a full run (benchmarks/durations.py --slow): ``slow``
SLOW_LIST = Path(__file__).with_name("slow.txt")


def slow_ids(text: str) -> set[str]:
    """The test ids of ``tests/slow.txt``'s text: one per line, ``#`` comments."""
    return {line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"}


# seconds a Docker test may take (builds, ``compose up``, drills) unless it says otherwise
DOCKER_TIMEOUT = 900


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    default_timeout = float(config.getini("timeout") or 0)
    slow = slow_ids(SLOW_LIST.read_text())
    for item in items:
        if item.nodeid in slow:  # before pytest_collection_finish adds an ``@GROUP``
            item.add_marker("slow")
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marks in MARKS_BY_FIXTURE.items():
            if fixture in names:
                for mark in marks:
                    item.add_marker(mark)
        if item.get_closest_marker("docker") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(DOCKER_TIMEOUT))
        timeout = item.get_closest_marker("timeout")
        if timeout is not None and timeout.args and float(timeout.args[0]) > default_timeout:
            item.add_marker("slow")
        for mark, group in GROUP_BY_MARK:
            if item.get_closest_marker(mark):
                item.add_marker(pytest.mark.xdist_group(group))
                break

    def first(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return NO_SWARM_FIRST.index(module) if module in NO_SWARM_FIRST else len(NO_SWARM_FIRST)

    items.sort(key=first)


@pytest.hookimpl(tryfirst=True)  # before an xdist worker sends the ids to the controller
def pytest_collection_finish(session: pytest.Session) -> None:
    """Each grouped test's id ends with ``@GROUP``, the controller's only sign of its group.

    pytest-xdist (3.8) writes that suffix into ``item._nodeid``; since pytest 9.2 a node's id is
    ``item._id`` (a ``NodeId``) and that write is lost: every group was silently spread over both
    workers (two Compose tests at once on one project, the timing tests beside anything). Done
    here as xdist means it, where it did not take."""
    if not getattr(session.config.option, "loadgroup", False):  # set in an xdist worker
        return
    try:
        from _pytest.nodeid import NodeId  # noqa: PLC0415 - pytest 9.2 and later
    except ImportError:  # an older pytest: xdist's own write took
        return
    for item in session.items:
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


# where pip and npm would find their index while the suite runs: nothing listens there
NO_INDEX = "http://127.0.0.1:9/"


@pytest.fixture(scope="session", autouse=True)
def _no_package_index() -> Iterator[None]:
    """The suite fetches nothing: pip and npm, wherever a test runs them, find no index. What
    they need (the bare install's wheels, the Allure command line) scripts/setup put in
    .bluegreen/ once."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PIP_NO_INDEX", "1")
        env.setenv("PIP_INDEX_URL", NO_INDEX)
        env.setenv("npm_config_registry", NO_INDEX)
        env.setenv("npm_config_offline", "true")
        yield


@pytest.fixture(scope="session", autouse=True)
def _inner_runs_in_file_order() -> Iterator[None]:
    """The suite runs in a random order (pytest-randomly); the pytest runs it starts (pytester,
    the gate, ``bluegreen``'s child) run their check files in file order, as they are written
    (a failure, then ``pytest.exit``): randomly would shuffle them too."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTEST_ADDOPTS", f"{os.environ.get('PYTEST_ADDOPTS', '')} -p no:randomly")
        yield


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, whose runs are in file order too: it removes PYTEST_ADDOPTS when it starts."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")
    return pytester


@pytest.fixture(autouse=True)
def _clean_bluegreen_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BLUEGREEN_* variable of the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("BLUEGREEN_", "BG_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def haproxy_available(pytestconfig: pytest.Config) -> str:
    binary = haproxy_binary()
    require_infra(
        pytestconfig, binary is not None, "haproxy is not installed (apt-get install haproxy)"
    )
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def docker_engine(pytestconfig: pytest.Config) -> None:
    """The Docker engine, Compose v2 and the stack's images are here (else a skip, a failure
    under --strict-infra). Every fixture or test that uses Docker, itself or through a command
    it runs, takes this: it marks the test ``docker``."""
    from tests.support.docker_stack import docker_problem  # noqa: PLC0415 - Docker's libraries

    problem = docker_problem()
    require_infra(pytestconfig, problem is None, problem or "")


@pytest.fixture(scope="session")
def docker_swarm(docker_engine: None) -> Iterator[None]:
    """A test that makes (and leaves) a Docker swarm, or deploys on one, takes this: it marks
    the test ``swarm`` (and ``docker``). The swarm a test makes is the session's: left when it
    ends, not at each module's (tests/support/swarm.py: ``LEASE``)."""
    from tests.support.swarm import LEASE  # noqa: PLC0415 - Docker's libraries

    with LEASE.hold():
        yield


@pytest.fixture(scope="session")
def docker_cluster(
    docker_engine: None, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A multi-node swarm of Docker-in-Docker nodes (tests/support/cluster.py) with the
    stack's images on every node, taken down at the end: a test that takes this is marked
    ``cluster`` (and ``docker``)."""
    from tests.support.cluster import Cluster, host_docker, reclaim  # noqa: PLC0415
    from tests.support.swarm import HAPROXY_IMAGE  # noqa: PLC0415

    images = [
        "bluegreen/jarvis:v1.0.0", "bluegreen/jarvis:v1.1.0", "bluegreen/postgres:15",
        "bluegreen/redis:7", HAPROXY_IMAGE,
    ]  # fmt: skip
    missing = [i for i in images if not host_docker("image", "ls", "-q", i).strip()]
    require_infra(pytestconfig, not missing, f"the stack's images are missing: {missing}")
    removed, others = reclaim()  # a killed run's cluster removed; a live one's reported
    for name in removed:
        print(f"cluster {name}: removed (left by a killed test run)")
    for name, owner in others.items():
        warnings.warn(f"another cluster on this machine: {name} (owner {owner})", stacklevel=1)
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    cluster.up()
    try:
        cluster.load(images)
        yield cluster
    finally:
        cluster.down()


# the shared hold on names_lock of a test of the ``docker`` group, from set-up to teardown
NAMES_HOLD = pytest.StashKey[ExitStack]()


@pytest.hookimpl(wrapper=True, tryfirst=True)  # before the fixtures: the session's Compose project
def pytest_runtest_setup(item: pytest.Item) -> object:
    """A test of the ``docker`` group holds ``names_lock`` shared from its set-up to its
    teardown (the session's Compose project's included): no swarm is made or left meanwhile.
    Waited for inside the test's timeout (pytest-timeout: an error of this test, not a hung
    worker). Such a test never waits on a pytest run of tests/ that holds it too (a leave
    waiting at the turnstile between them would wait for ever): tests/stack/test_untouched.py is a
    ``machine`` test."""
    groups = {m.args[0] if m.args else "" for m in item.iter_markers("xdist_group")}
    if "docker" in groups:
        from tests.support.swarm import names_lock  # noqa: PLC0415

        hold = item.stash[NAMES_HOLD] = ExitStack()
        hold.enter_context(names_lock(exclusive=False))
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    try:
        return (yield)
    finally:
        hold = item.stash.get(NAMES_HOLD, None)
        if hold is not None:
            hold.close()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cert(tmp_path_factory.mktemp("tls") / "bluegreen.pem")


@pytest.fixture(scope="session")
def color_backends(haproxy_available: str) -> Iterator[tuple[Backend, Backend]]:
    yield from backends()


@pytest.fixture
def stack_factory(
    tmp_path: Path, tls_cert: Path, color_backends: tuple[Backend, Backend]
) -> Iterator[StackFactory]:
    blue, green = color_backends
    blue.reset()
    green.reset()
    factory = StackFactory(tmp_path, tls_cert, blue, green)
    yield factory
    factory.close()
    blue.reset()
    green.reset()


@pytest.fixture
def stack(stack_factory: StackFactory) -> Stack:
    """A fresh HAProxy (blue live, green idle) in front of the two backends."""
    return stack_factory()


@pytest.fixture(scope="session")
def compose_project(docker_engine: None) -> Iterator[ComposeProject]:
    """The Docker stack (docker/docker-compose.blue-green.yml) of this test session: a Compose
    project of its own (bgtest-<random>: its containers, networks, volume and host ports), the
    shared services up once for every module that uses it; each module starts from
    ``fresh_colors`` (no color running, the shared services as the compose file says). Removed
    at the end of the session; nothing of another project is touched."""
    from tests.support.docker_stack import own_project  # noqa: PLC0415
    from tests.support.swarm import names_lock  # noqa: PLC0415

    # up and down under names_lock (shared): also when the worker's last test, whose teardown
    # takes the project down, is not a Compose test holding it
    with ExitStack() as stack:
        with names_lock(exclusive=False):
            project = stack.enter_context(own_project())
        try:
            yield project
        finally:
            with names_lock(exclusive=False):
                stack.close()
