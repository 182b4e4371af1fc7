"""The shipped check suite (checks/) against the real Docker stack behind a real host HAProxy.

blue v1.0.0 and green v1.1.0 run (Compose, with the tags recorded where ``--deploy`` keeps them);
green passes every check but the perf ones, ``-m quick`` gives the same outcomes serially and
with ``-n 2``; then one fault at a time -- the broken build, Redis stopped, the model missing,
a container unhealthy -- fails exactly the checks about it, each with a message naming what is
wrong, and the stack is put back after each.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from python_on_whales import DockerClient

import docker as docker_sdk
from pytest_bluegreen.engines.serving import health_of, run_health_check
from tests.support.docker_stack import (
    ComposeProject,
    JarvisStack,
    fresh_colors,
    preview_key,
    up_serving,
    wait_serving,
)
from tests.support.gate import output
from tests.support.stack import ROOT, Backend, StackFactory, wait_for

CHECKS = str(ROOT / "checks")
TAGS = {"BLUE_TAG": "v1.0.0", "GREEN_TAG": "v1.1.0"}
GREEN_SERVICES = ["green-backend", "green-frontend", "green-agents"]
# every check that must run (and pass) for a healthy green, perf checks aside
GREEN_CHECKS = {
    "test_agents.py::test_agents_run_a_task[green]",
    "test_availability.py::test_containers_are_healthy[green]",
    "test_availability.py::test_processes_and_ports[green-backend]",
    "test_availability.py::test_processes_and_ports[green-frontend]",
    "test_availability.py::test_processes_and_ports[green-agents]",
    "test_availability.py::test_shared_containers_are_healthy",
    "test_availability.py::test_shared_processes_and_ports[postgres]",
    "test_availability.py::test_shared_processes_and_ports[redis]",
    "test_availability.py::test_shared_processes_and_ports[neo4j]",
    "test_availability.py::test_shared_processes_and_ports[ollama]",
    "test_availability.py::test_haproxy_answers",
    "test_databases.py::test_postgres",
    "test_databases.py::test_redis",
    "test_databases.py::test_neo4j",
    "test_databases.py::test_color_reaches_its_databases[green]",
    "test_databases.py::test_color_writes_to_the_shared_postgres[green]",
    "test_http.py::test_health[green]",
    "test_http.py::test_version_is_deployed_tag[green]",
    "test_http.py::test_api_round_trip[green]",
    "test_http.py::test_events_stream[green]",
    "test_http.py::test_frontend_page_and_assets[green]",
    "test_http.py::test_frontend_uses_its_own_api[green]",
    "test_http.py::test_direct_ports_answer_for_their_color_only[green]",
    "test_http.py::test_http_redirects_to_https",
    "test_http.py::test_https_terminates_tls",
    "test_http.py::test_tls_certificate_is_valid",
    "test_preview.py::test_the_public_path_reaches_this_color[green]",
    "test_preview.py::test_the_api_round_trip_through_the_public_path[green]",
    "test_models.py::test_model_is_listed",
    "test_models.py::test_model_generates",
    "test_models.py::test_color_answers_with_its_model[green]",
}
# docker exec per probe: these must not be in the quick gate
NOT_QUICK = {
    "test_databases.py::test_postgres",
    "test_databases.py::test_redis",
    "test_availability.py::test_processes_and_ports[green-backend]",
    "test_availability.py::test_processes_and_ports[green-frontend]",
    "test_availability.py::test_processes_and_ports[green-agents]",
    "test_availability.py::test_shared_processes_and_ports[postgres]",
    "test_availability.py::test_shared_processes_and_ports[redis]",
    "test_availability.py::test_shared_processes_and_ports[neo4j]",
    "test_availability.py::test_shared_processes_and_ports[ollama]",
    "test_databases.py::test_color_writes_to_the_shared_postgres[green]",
    "test_models.py::test_model_generates",
}


@pytest.fixture(scope="module")
def jarvis(
    compose_project: ComposeProject,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
    color_backends: tuple[Backend, Backend],
) -> Iterator[JarvisStack]:
    """The whole stack, blue v1.0.0 and green v1.1.0 healthy, HAProxy in front of it (the
    session's Compose project, from no color running)."""
    workdir = tmp_path_factory.mktemp("checks-stack")
    fresh_colors(compose_project)
    factory = StackFactory(workdir, tls_cert, *color_backends)
    try:
        with compose_project.environment():
            haproxy = factory(
                "haproxy",
                addresses=compose_project.haproxy_addresses,
                wait_up=False,
                env={"BG_PREVIEW_KEY": preview_key()},  # as scripts/local_stack.py gives it
            )
            stack = JarvisStack(haproxy, workdir, compose_project)
            # record the tags as --deploy does (the Compose env file next to the state file)
            # and bring everything up from it, so the version check has a deployed tag to
            # compare with
            restore_tags(stack)
            up_serving(compose_project, dc=stack_compose(stack))
            haproxy.wait_up("blue", "green", timeout=30)
            yield stack
    finally:
        factory.close()


def tags_file(stack: JarvisStack) -> Path:
    return stack.haproxy.state_file.with_name("compose-tags.env")


def restore_tags(stack: JarvisStack) -> None:
    tags_file(stack).write_text("".join(f"{k}={v}\n" for k, v in TAGS.items()))


def stack_compose(stack: JarvisStack, *extra_env: Path) -> DockerClient:
    return stack.compose(compose_env_files=[tags_file(stack), *extra_env])


def run_checks(
    pytester: pytest.Pytester, jarvis: JarvisStack, *args: str, **settings: object
) -> tuple[pytest.RunResult, dict[str, str], float]:
    """Run the checks in a subprocess: the result, each check's outcome, the wall time."""
    config = jarvis.write_settings(pytester.path, **settings)
    report = pytester.path / f"junit-{time.monotonic_ns()}.xml"
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        CHECKS,
        "--bluegreen-config",
        str(config),
        "-p",
        "no:cacheprovider",
        "-v",
        "-rA",
        f"--junitxml={report}",
        *args,
        timeout=300,
    )
    return result, outcomes(report), time.monotonic() - started


def outcomes(junit: Path) -> dict[str, str]:
    """``test_http.py::test_health[green]`` -> passed, failed, error or skipped."""
    found: dict[str, str] = {}
    if not junit.exists():
        return found
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own report
        module = case.get("classname", "").rpartition(".")[2]
        name = f"{module}.py::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[name] = {"failure": "failed", "error": "error", "skipped": "skipped"}.get(
            kinds[0] if kinds else "", "passed"
        )
    return found


def not_passed(found: dict[str, str]) -> dict[str, str]:
    return {name: outcome for name, outcome in found.items() if outcome != "passed"}


def line_of(result: pytest.RunResult, *parts: str) -> str:
    """The first output line that contains every part (for a readable failure)."""
    for line in result.outlines + result.errlines:
        if all(part in line for part in parts):
            return line
    raise AssertionError(f"no line with {parts!r} in:\n{output(result)}")


def green_servers_down(jarvis: JarvisStack) -> bool:
    rows = [r for r in jarvis.haproxy.api().show_stat() if r.server.startswith("green-api")]
    return len(rows) == 2 and all(r.status.startswith("DOWN") for r in rows)


def healthy_again(jarvis: JarvisStack) -> None:
    """Wait until every container is healthy (as a deploy judges it) and HAProxy has both
    colors UP again."""
    services = sorted(stack_compose(jarvis).compose.config().services or {})
    wait_serving(jarvis.project, services, 60)
    jarvis.haproxy.wait_up("blue", "green", timeout=30)


# --- a healthy color ---------------------------------------------------------------------------


# the Prometheus checks need the stack's Prometheus, which this fixture does not start (its
# settings have no prometheus_url: they skip); tests/judge/test_prometheus.py runs them against a
# real one
NO_PROMETHEUS = ("--ignore", str(ROOT / "checks" / "test_prometheus.py"))


def test_a_healthy_color_passes_every_check(pytester: pytest.Pytester, jarvis: JarvisStack) -> None:
    result, found, _ = run_checks(
        pytester, jarvis, "--env", "green", "-m", "not perf", *NO_PROMETHEUS
    )
    assert result.ret == 0, output(result)
    assert set(found) >= GREEN_CHECKS, sorted(GREEN_CHECKS - set(found))
    assert not_passed(found) == {}, output(result)


def test_quick_gives_the_same_outcomes_serially_and_with_xdist(
    pytester: pytest.Pytester, jarvis: JarvisStack, capsys: pytest.CaptureFixture[str]
) -> None:
    serial, serial_found, serial_wall = run_checks(
        pytester, jarvis, "--env", "green", "-m", "quick"
    )
    parallel, parallel_found, parallel_wall = run_checks(
        pytester, jarvis, "--env", "green", "-m", "quick", "-n", "2"
    )
    assert serial.ret == 0, output(serial)
    assert parallel.ret == 0, output(parallel)
    assert serial_found == parallel_found
    assert set(serial_found) == GREEN_CHECKS - NOT_QUICK
    with capsys.disabled():
        print(f"\nquick suite for green: serial {serial_wall:.2f}s, -n 2 {parallel_wall:.2f}s")


# --- one fault at a time -----------------------------------------------------------------------


def test_broken_build_fails_the_api_smoke_check_not_health(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    try:
        broken, found, _ = run_checks(
            pytester,
            jarvis,
            "--env",
            "green",
            "--deploy",
            "v1.2.0-broken",
            "--skip-backup",
            "-m",
            "quick",
        )
        assert broken.ret == 1, output(broken)
        assert not_passed(found) == {
            "test_http.py::test_api_round_trip[green]": "failed",
            "test_preview.py::test_the_api_round_trip_through_the_public_path[green]": "failed",
            "test_http.py::test_frontend_uses_its_own_api[green]": "failed",
            "test_agents.py::test_agents_run_a_task[green]": "failed",
            "test_models.py::test_color_answers_with_its_model[green]": "failed",
        }, output(broken)
        assert found["test_http.py::test_health[green]"] == "passed"
        assert found["test_http.py::test_version_is_deployed_tag[green]"] == "passed"
        line_of(
            broken,
            "AssertionError: green cannot create an item through its API: POST /api/items "
            'HTTP 500: column "title" does not exist',
        )
        line_of(broken, "green's frontend cannot reach its API: GET /api/items HTTP 500")
        line_of(broken, "green does not queue a task: POST /api/tasks HTTP 500")
        # the same outcomes with -n 2, failures included
        parallel, parallel_found, _ = run_checks(
            pytester, jarvis, "--env", "green", "-m", "quick", "-n", "2"
        )
        assert parallel.ret == 1, output(parallel)
        assert parallel_found == found
    finally:  # green back at v1.1.0, as on_failed_gate = "restore" would put it
        restore_tags(jarvis)
        up_serving(jarvis.project, GREEN_SERVICES, dc=stack_compose(jarvis))
        healthy_again(jarvis)


def test_redis_stopped_is_an_infrastructure_error(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    dc = stack_compose(jarvis)
    dc.compose.stop(["redis"])
    try:
        # settled: green's /health has failed long enough for HAProxy to take it out, on the
        # routed and on the direct backend alike (each is health-checked on its own; green's
        # Redis client first waits out a connect timeout, so this takes a few seconds)
        wait_for(lambda: green_servers_down(jarvis), 30, "HAProxy to take green out", interval=0.1)
        result, found, _ = run_checks(
            pytester,
            jarvis,
            "--env",
            "green",
            "-m",
            "quick or shared",
            "-k",
            "not processes_and_ports",
            verify_timeout=1,
        )
        assert result.ret == 1, output(result)
        # the direct check cannot reach Redis: INFRA-ERROR, not a wrong answer
        assert found["test_databases.py::test_redis"] == "failed"
        line_of(result, "test_redis", "INFRA-ERROR (shared unreachable)")
        redis = jarvis.project.address("REDIS_HOST_PORT")
        line_of(result, f"redis.exceptions.ConnectionError: Error 111 connecting to {redis}")
        # the container is there but stopped
        assert found["test_availability.py::test_shared_containers_are_healthy"] == "failed"
        line_of(result, f"redis ({jarvis.project.container('redis')}) is not running: exited")
        # green's /health fails without Redis, so HAProxy takes it out: green is unreachable
        # through its direct port, and the checks that need it say so (INFRA-ERROR, with
        # HAProxy's view), rather than judging an answer that never came
        assert found["test_http.py::test_health[green]"] == "error"
        line_of(result, "green does not answer at", "api_backend/green-api DOWN")
        assert "INFRA-ERROR" in line_of(result, "test_http.py::test_health[green]")
        # what does not need Redis still passes
        for check in (
            "test_databases.py::test_postgres",
            "test_databases.py::test_neo4j",
            "test_models.py::test_model_is_listed",
            "test_http.py::test_https_terminates_tls",
        ):
            assert found[check] == "passed", output(result)
    finally:
        dc.compose.start(["redis"])
        healthy_again(jarvis)


def test_model_missing_fails_the_model_checks(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    fault = pytester.path / "no-tinyllama.env"
    fault.write_text("OLLAMA_MODELS=llama3\n")
    up_serving(jarvis.project, ["ollama"], dc=stack_compose(jarvis, fault))
    try:
        result, found, _ = run_checks(
            pytester, jarvis, "--env", "green", "-m", "not perf", "-k", "not processes_and_ports",
            *NO_PROMETHEUS,
        )  # fmt: skip
        assert result.ret == 1, output(result)
        assert not_passed(found) == {
            "test_models.py::test_model_is_listed": "failed",
            "test_models.py::test_model_generates": "failed",
            "test_models.py::test_color_answers_with_its_model[green]": "failed",
        }, output(result)
        line_of(result, "AssertionError: ollama does not list tinyllama; it lists: llama3:latest")
        line_of(result, "ollama cannot generate with tinyllama: HTTP 404: model 'tinyllama' not")
        line_of(result, "green cannot get an answer from its model: POST /api/ask HTTP 502")
    finally:
        up_serving(jarvis.project, ["ollama"], dc=stack_compose(jarvis))


def test_unhealthy_container_fails_the_availability_check(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    # a fresh green-agents: Docker's first health check is an interval (an hour in the tests)
    # away, so Docker says "starting" throughout; the availability check runs the check itself
    up_serving(
        jarvis.project,
        ["green-agents"],
        dc=stack_compose(jarvis),
        force_recreate=True,
        dependencies=False,
    )
    docker = DockerClient()
    sdk = docker_sdk.from_env()
    name = jarvis.project.container("green-agents")
    agents = sdk.containers.get(name)
    # a hung worker: stopped, its heartbeat ages, its health check fails (about 5 s)
    docker.container.kill(name, signal="SIGSTOP")
    try:
        wait_for(lambda: not run_health_check(agents).passed, 30, "the heartbeat to age")
        result, found, _ = run_checks(pytester, jarvis, "--env", "green", "-m", "quick")
        agents.reload()
        assert health_of(agents) == "starting"  # Docker had no verdict: the check judged
        assert result.ret == 1, output(result)
        assert not_passed(found) == {
            "test_availability.py::test_containers_are_healthy[green]": "failed",
            "test_agents.py::test_agents_run_a_task[green]": "failed",
        }, output(result)
        line_of(
            result,
            f"AssertionError: green-agents ({name}) is starting and its health "
            "check, run now, fails: exit 1: unhealthy: heartbeat",
        )
        line_of(result, "is still 'queued': green's agents worker did not run it")
    finally:
        docker.container.kill(name, signal="SIGCONT")
        sdk.close()
        healthy_again(jarvis)
