"""The suite does not touch what it did not make.

With the machine's own stack up at the seed's defaults -- the demo stack as ``scripts/demo``
leaves it (blue live, a row of data in its PostgreSQL), a Swarm stack named ``bluegreen`` with a
container ``bluegreen-swarm-haproxy``, a dangling image of someone else's (``tests/support/
demo.py``: each part the one found there, else one it starts and removes afterwards) -- the
Docker tests run in a subprocess pytest; afterwards all of it is as it was: the same containers
and processes, the same HAProxy on the same color, the same data, the same Swarm services, the
image there. The defaults held by something else (not a demo stack that serves): skipped, since
there is nothing this test may start or compare there (under --strict-infra a failure: on CI's
clean machine only a test before can hold them).

Which Docker tests: one per way the suite sets up and tears down a stack, the cheapest of each,
since each fixture's own set-up and teardown is what could reach the defaults, and the workflow
test's body runs the whole local stack and the cleanup job: the session's Compose project
through each Compose module's fixture (the colors removed at its start, deployed by the test),
a deploy by the plugin's engine, the workflow's jobs, and the Swarm stack. That is about four
minutes instead of the Docker modules' ten or more; a test run that reaches the defaults does so
in any of these paths, and the rest of the suite uses the same fixtures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.demo import Busy, Demo, defaults_env
from tests.support.infra import require_infra
from tests.support.stack import ROOT

SELECTION = (
    "tests/stack/test_docker_stack.py::test_missing_image_tag_is_a_clear_error",
    "tests/stack/test_checks_stack.py::test_a_healthy_color_passes_every_check",
    "tests/stack/test_serving_stack.py::test_a_deploy_is_healthy_before_dockers_first_check",
    "tests/stack/test_workflow.py::test_the_jobs_run_in_order_on_the_local_stack",
    # the swarm stack's set-up and teardown (tests/engines/test_swarm.py's adds an HAProxy
    # container named after the stack, bgtest-<random>-haproxy; its cycle under load takes a
    # minute more)
    "tests/engines/test_swarm_failures.py::test_a_missing_stack_file_is_found_before_the_backup",
    # these two skip here, and so touch nothing: scripts/demo where a demo stack is up (it
    # would redeploy it), the swarm-leave test where a swarm is (it would not make one)
    "tests/stack/test_demo.py",
    "tests/suite/test_swarm_leave.py",
)


@pytest.mark.usefixtures("docker_swarm")  # marks it docker and swarm: its selection uses both
def test_the_docker_tests_leave_the_machines_own_stack_as_it_was(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    demo = Demo(tmp_path)
    try:
        try:
            demo.up()
        except Busy as busy:  # not missing: taken, by something this test must not touch
            # a skip on a user's machine; under --strict-infra (CI, a clean machine) a failure:
            # there the defaults are the suite's own, and a test before left them held
            require_infra(pytestconfig, False, str(busy))
        before = demo.snapshot()
        if demo.made_stack:
            assert before["served"] == ("blue", "v1.0.0"), before
            assert before["row"] == demo.token, before
        looked = ("containers", "haproxy", "served", "swarm", "image", "row", "processes")
        assert not any("unreadable" in str(before.get(k)) for k in looked), before
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "--strict-infra", "-p", "no:cacheprovider",
             "-q", "-rfE", *SELECTION],
            cwd=ROOT, env=defaults_env(), capture_output=True, text=True, timeout=1800,
            check=False,
        )  # fmt: skip
        after = demo.snapshot()
        changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
        assert changed == {}, changed
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    finally:
        demo.down()
