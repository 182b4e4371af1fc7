"""The whole cycle on the real Docker stack, behind a real HAProxy, with a probe load.

blue v1.0.0 live -> deploy v1.1.0 to green and switch -> deploy the broken build to blue with
--switch (checks fail, traffic stays on green, blue restored) -> --rollback to blue; no request
through HAProxy fails meanwhile. Then the deploy faults, each with a clear error and nothing
changed; last, a container of the old tag still answering for the color behind HAProxy: the gate
never judges it as the deployed build.

The stack is the session's Compose project (``compose_project``: its own name, containers and
ports); this module starts it with no color running. Each test first arranges what it starts
from (``JarvisStack.arrange``): in the file's order the test before left exactly that, so
nothing is done; alone (``-k``), a test deploys what it needs first.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from python_on_whales import DockerClient

from pytest_bluegreen.haproxy.preview import preview_headers
from pytest_bluegreen.judge.comparerules import parse_compare_table
from pytest_bluegreen.judge.sidebyside import measure
from tests.support.cli import BLUEGREEN
from tests.support.docker_stack import (
    COMPOSE_FILE,
    ComposeProject,
    JarvisStack,
    Probe,
    preview_key,
    shared_services_behind_haproxy,
)
from tests.support.gate import history, output
from tests.support.stack import ROOT, Backend, free_ports, wait_for

CHECKS = str(ROOT / "checks")


@pytest.fixture(scope="module")
def jarvis(
    compose_project: ComposeProject,
    tmp_path_factory: pytest.TempPathFactory,
    tls_cert: Path,
    color_backends: tuple[Backend, Backend],
) -> Iterator[JarvisStack]:
    with shared_services_behind_haproxy(
        compose_project, tmp_path_factory.mktemp("jarvis"), tls_cert, color_backends
    ) as stack:
        yield stack


def gate(
    pytester: pytest.Pytester, jarvis: JarvisStack, *args: str, **settings: object
) -> pytest.RunResult:
    config = jarvis.write_settings(pytester.path, **settings)
    return pytester.runpytest_subprocess(
        CHECKS,
        "--bluegreen-config",
        str(config),
        "-p",
        "no:cacheprovider",
        "-v",
        *args,
        timeout=300,
    )


def routed(jarvis: JarvisStack) -> tuple[str, str]:
    """(color, version) answering the routed API URL now."""
    response = requests.get(f"{jarvis.haproxy.routed_url}/health", timeout=5)
    return response.headers["X-Bluegreen-Color"], response.headers["X-Bluegreen-Version"]


def test_full_cycle_without_a_failed_request(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue", blue=None, green=None)
    stack = jarvis.haproxy
    entries = len(history(stack))
    backups_before = set(backups_of(jarvis))

    # blue v1.0.0 first: live by HAProxy's config but not running, so deploying it is allowed
    first = gate(pytester, jarvis, "--env", "blue", "--deploy", "v1.0.0", "-m", "quick", "--switch")
    assert first.ret == 0, output(first)
    assert "bluegreen: deploying blue v1.0.0" in output(first)
    stack.wait_up("blue")
    assert routed(jarvis) == ("blue", "v1.0.0")

    probe = Probe(f"{stack.routed_url}/health")
    probe.start()
    try:
        # green v1.1.0: deployed, checked, switched
        result = gate(
            pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "-m", "quick", "--switch"
        )
        assert result.ret == 0, output(result)
        result.stdout.fnmatch_lines(["*SWITCH: switched blue -> green*"])
        assert routed(jarvis) == ("green", "v1.1.0")
        assert jarvis.image_of("green-backend") == "bluegreen/jarvis:v1.1.0"
        # the API's own /metrics counts what it answered (Prometheus scrapes it)
        metrics = requests.get(f"http://{jarvis.project.api_address('green')}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert any(
            line.startswith("jarvis_http_requests_total{")
            and 'endpoint="/api/items"' in line
            and 'method="POST"' in line
            and 'color="green"' in line
            and 'version="v1.1.0"' in line
            for line in lines
        ), metrics.text[:2000]
        assert any(line.startswith("jarvis_http_request_duration_seconds_count{") for line in lines)

        # the broken build on blue: /health passes, the API smoke check fails, no switch
        broken = gate(
            pytester,
            jarvis,
            "--env",
            "blue",
            "--deploy",
            "v1.2.0-broken",
            "-m",
            "quick",
            "--switch",
            on_failed_gate="restore",
        )
        assert broken.ret == 1, output(broken)
        broken.stdout.fnmatch_lines(
            ["*test_health?blue? PASSED*", "*test_api_round_trip?blue? FAILED*"], consecutive=False
        )
        broken.stdout.fnmatch_lines(["*traffic stays on green*", "*blue restored to v1.0.0*"])
        assert routed(jarvis) == ("green", "v1.1.0")
        assert jarvis.image_of("blue-backend") == "bluegreen/jarvis:v1.0.0"

        # rollback: blue's checks pass again, traffic returns to it
        back = gate(pytester, jarvis, "--rollback", "-m", "quick")
        assert back.ret == 0, output(back)
        back.stdout.fnmatch_lines(["*rolled back green -> blue*"])
        assert routed(jarvis) == ("blue", "v1.0.0")
    finally:
        load = probe.finish()
    assert load.count > 200
    assert load.failed == [], load.failed[:3]
    assert {"blue", "green"} <= set(load.colors())
    outcomes = [(e["to_color"], e["outcome"], e["tag"]) for e in history(stack)[entries:]]
    assert outcomes == [
        ("blue", "noop", "v1.0.0"),
        ("green", "switched", "v1.1.0"),
        ("blue", "failed", "v1.2.0-broken"),
        ("blue", "rolled-back", "v1.0.0"),  # the version the verification saw
    ]
    backups = sorted(set(backups_of(jarvis)) - backups_before)
    assert len(backups) == 3, backups  # one pg_dump before each deploy
    for backup in backups:
        assert backup.stat().st_mode & 0o777 == 0o600, backup  # a dump holds the data
        assert "PostgreSQL database dump complete" in backup.read_text(), backup  # whole


def backups_of(jarvis: JarvisStack) -> list[Path]:
    folder = jarvis.workdir / "backups"
    return list(folder.iterdir()) if folder.is_dir() else []


def _unchanged(jarvis: JarvisStack) -> tuple[object, ...]:
    return (jarvis.haproxy.live_weights(), jarvis.image_of("green-backend"))


def test_engine_not_running_is_a_clear_error(
    pytester: pytest.Pytester, jarvis: JarvisStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    jarvis.arrange(live="blue")  # green idle, whatever ran before (random order)
    before = _unchanged(jarvis)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-engine.sock")
    result = gate(pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "--switch")
    monkeypatch.undo()
    assert result.ret == 9, output(result)
    assert "bluegreen: deploy failed: Docker engine not reachable" in output(result)
    assert _unchanged(jarvis) == before


def test_compose_missing_is_a_clear_error(
    pytester: pytest.Pytester, jarvis: JarvisStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    jarvis.arrange(live="blue")  # green idle, whatever ran before (random order)
    # a docker CLI without the compose plugin: the real one, with its plugin folders hidden
    fake_home = pytester.path / "docker-config"
    fake_home.mkdir()
    wrapper = pytester.path / "bin" / "docker"
    wrapper.parent.mkdir()
    real = "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else "/usr/bin/docker"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then\n'
        "  echo \"docker: 'compose' is not a docker command.\" >&2; exit 1\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    before = _unchanged(jarvis)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    result = gate(pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "--switch")
    monkeypatch.undo()
    assert result.ret == 9, output(result)
    assert "bluegreen: deploy failed: Docker Compose v2 is missing" in output(result)
    assert _unchanged(jarvis) == before


def test_missing_image_tag_is_a_clear_error(pytester: pytest.Pytester, jarvis: JarvisStack) -> None:
    jarvis.arrange(live="blue")  # green idle, whatever ran before (random order)
    before = _unchanged(jarvis)
    result = gate(pytester, jarvis, "--env", "green", "--deploy", "v9.9.9", "--switch")
    assert result.ret == 9, output(result)
    assert "bluegreen: deploy failed: image bluegreen/jarvis:v9.9.9 is not present" in output(
        result
    )
    assert _unchanged(jarvis) == before
    assert history(jarvis.haproxy)[-1]["outcome"] == "deploy-failed"


def test_never_healthy_hits_the_deadline(pytester: pytest.Pytester, jarvis: JarvisStack) -> None:
    jarvis.arrange(live="blue")
    # the same stack, but green's backend healthcheck can never pass
    broken = pytester.path / "compose-unhealthy.yml"
    text = COMPOSE_FILE.read_text()
    marker = 'test: ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/health"]'
    head, sep, tail = text.rpartition(marker)  # the last one is green-backend's
    assert sep
    text = head + 'test: ["CMD", "false"]' + tail
    broken.write_text(text.replace("../config/deploy/", f"{ROOT}/config/deploy/"))
    live_before = jarvis.haproxy.live_weights()
    result = gate(
        pytester,
        jarvis,
        "--env",
        "green",
        "--deploy",
        "v1.1.0",
        "--switch",
        compose_file=str(broken),
        deploy_timeout=4,
    )
    assert result.ret == 9, output(result)
    text_out = output(result)
    assert "bluegreen: deploy failed: deploy of green v1.1.0 failed" in text_out
    container = jarvis.project.container("green-backend")
    assert f"{container} (unhealthy" in text_out or f"{container} (starting" in text_out
    assert jarvis.haproxy.live_weights() == live_before
    # put green back as it was
    fixed = gate(pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "--skip-backup")
    assert fixed.ret == 0, output(fixed)
    wait_for(lambda: jarvis.image_of("green-backend") == "bluegreen/jarvis:v1.1.0", 30, "green")


def retag(source: str, name: str) -> Iterator[None]:
    """``source`` under a new ``name`` meanwhile; a name that exists is never taken over (nor
    removed afterwards): the images of this engine are not the test's."""
    dc = DockerClient()
    assert not dc.image.exists(name), f"{name} exists: not this test's to retag"
    dc.image.tag(source, name)
    try:
        yield
    finally:
        dc.image.remove(name, force=True)


def test_a_deploy_that_answers_another_version_fails_the_gate(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue")
    # an image tagged v1.3.0-<project> whose application reports v1.0.0: not what --deploy
    # asked for
    tag = f"v1.3.0-{jarvis.project.name}"
    for _ in retag("bluegreen/jarvis:v1.0.0", f"bluegreen/jarvis:{tag}"):
        live_before = jarvis.haproxy.live_weights()
        result = gate(
            pytester, jarvis, "--env", "green", "--deploy", tag, "-m", "quick", "--switch"
        )
        assert result.ret == 1, output(result)
        result.stdout.fnmatch_lines(
            [f"*FAILED: green answers version v1.0.0 at *, not the deployed {tag}*"]
        )
        assert jarvis.haproxy.live_weights() == live_before
        assert history(jarvis.haproxy)[-1]["outcome"] == "failed"
        back = gate(pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "--skip-backup")
        assert back.ret == 0, output(back)


def test_the_image_repository_reaches_compose(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue")
    mirror = f"bluegreen/jarvis-mirror-{jarvis.project.name}"
    for _ in retag("bluegreen/jarvis:v1.1.0", f"{mirror}:v1.1.0"):
        result = gate(
            pytester,
            jarvis,
            "--env",
            "green",
            "--deploy",
            "v1.1.0",
            "--skip-backup",
            image_repository=mirror,
        )
        assert result.ret == 0, output(result)
        assert jarvis.image_of("green-backend") == f"{mirror}:v1.1.0"
        back = gate(pytester, jarvis, "--env", "green", "--deploy", "v1.1.0", "--skip-backup")
        assert back.ret == 0, output(back)
        assert jarvis.image_of("green-backend") == "bluegreen/jarvis:v1.1.0"


def test_a_backup_that_hangs_is_a_failed_deploy(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue")  # green idle, whatever ran before (random order)
    before = _unchanged(jarvis)
    result = gate(
        pytester,
        jarvis,
        "--env",
        "green",
        "--deploy",
        "v1.1.0",
        backup_command=["sleep", "30"],
        backup_timeout=1,
    )
    assert result.ret == 9, output(result)
    assert "bluegreen: deploy failed: backup timed out after 1s (sleep in postgres)" in output(
        result
    )
    assert _unchanged(jarvis) == before
    assert not any(p.name.endswith(".partial") for p in (jarvis.workdir / "backups").iterdir())


def test_the_bake_catches_a_release_that_degrades_after_the_switch(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue", blue="v1.0.0")
    stack = jarvis.haproxy
    assert routed(jarvis) == ("blue", "v1.0.0")
    probe = Probe(f"{stack.routed_url}/api/items")  # what users do: the API, not /health
    probe.start()
    try:
        result = gate(
            pytester,
            jarvis,
            "--env",
            "green",
            "--deploy",
            "v1.3.0-degrading",
            "-m",
            "quick",
            "--switch",
            "--bake",
            "20",
            bake_interval=2,
            scale_down_delay=0,
        )
        finished, answered = time.monotonic(), probe.answered
        wait_for(lambda: probe.answered > answered + 100, 30, "100 answers after the gate")
    finally:
        load = probe.finish()
    assert result.ret == 11, output(result)
    result.stdout.fnmatch_lines(
        [
            "*SWITCH: switched blue -> green*",
            "*bake failed: interval */10 failed*",
            "*rolled back green -> blue: bake failed*",
        ],
        consecutive=False,
    )
    assert routed(jarvis) == ("blue", "v1.0.0")
    failed = load.failed
    assert failed, "the degrading build failed no request: the probe saw nothing to catch"
    assert all(s.end < finished for s in failed), "errors went on after the switch back"
    assert {s.color for s in failed} <= {"green"}
    assert [e["outcome"] for e in history(stack)][-2:] == ["switched", "rolled-back"]


def test_a_clean_bake_then_the_old_color_is_stopped(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="blue", blue="v1.0.0")
    result = gate(
        pytester,
        jarvis,
        "--env",
        "green",
        "--deploy",
        "v1.1.0",
        "-m",
        "quick",
        "--switch",
        "--bake",
        "4",
        bake_interval=1,
        scale_down_delay=1,
        after_bake_old_color="stop",
    )
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(
        ["*bake passed*", "*blue stopped after its warm window (after_bake_old_color = stop)*"],
        consecutive=False,
    )
    assert routed(jarvis) == ("green", "v1.1.0")
    stopped = jarvis.compose().compose.ps(["blue-backend"], all=True)
    assert all(not c.state.running for c in stopped), [c.state.status for c in stopped]


# --- judging the new color against the live one ------------------------------------------------

COMPARISONS = 5  # benchmarks/compare.py --jarvis runs 20 (the false failure rate, measured)


def test_identical_builds_compared_give_no_false_failure(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    # v1.0.0 and v1.1.0: the same code, their version aside
    jarvis.arrange(blue="v1.0.0", green="v1.1.0")
    stack = jarvis.haproxy
    rules = parse_compare_table(tomllib.loads((ROOT / "bluegreen.toml").read_text())["compare"])
    runs = []
    for _ in range(COMPARISONS):
        runs.append(
            measure(
                "/api/items",
                rules["/api/items"],
                (("blue", stack.direct_url("blue")), ("green", stack.direct_url("green"))),
                requests=300, duration=30, concurrency=4, timeout=5,
                color_header="X-Bluegreen-Color", confidence=0.95, min_samples=50,
            )
        )  # fmt: skip
    false = [c for run in runs for c in run.failed]
    judged = [c for run in runs for c in run.comparisons if c.decision != "inconclusive"]
    print(f"identical builds, {COMPARISONS} comparisons x {len(rules['/api/items'])} rules: "
          f"false failures={len(false)}")  # fmt: skip
    for comparison in false:
        print(f"  false failure: {comparison.line()}")
    assert len(judged) == COMPARISONS * len(rules["/api/items"]), [r.text() for r in runs]
    assert false == []
    assert all({r.new_color, r.live_color} == {"blue", "green"} for r in runs)


# The [drill] variants whose verdict the suite asserts elsewhere, on this stack, and the test
# that does: the build itself (v1.1.0 passes and is switched to, v1.2.0-broken fails), or the
# same fault caught by the same check with the same message (a build reporting another version
# than its tag; a worker that never runs a task; a color whose model is not there). The drill
# test gates every other variant -- and any added to bluegreen.toml later -- so the drill runs
# end to end on bad builds and on a good one; `bluegreen drill` runs them all.
ASSERTED_ELSEWHERE = {
    "v1.1.0": "stack/test_docker_stack.py::test_full_cycle_without_a_failed_request",
    "v1.2.0-broken": "stack/test_docker_stack.py::test_full_cycle_without_a_failed_request",
    "v1.6.0-misversioned": (
        "stack/test_docker_stack.py::test_a_deploy_that_answers_another_version_fails_the_gate"
    ),
    "v1.7.0-deadagent": (
        "stack/test_checks_stack.py::test_unhealthy_container_fails_the_availability_check"
    ),
    "v1.8.0-nomodel": "stack/test_checks_stack.py::test_model_missing_fails_the_model_checks",
}


def drill_variants() -> dict[str, str]:
    variants: dict[str, str] = tomllib.loads((ROOT / "bluegreen.toml").read_text())["drill"]
    return variants


def test_the_drill_leaves_out_only_variants_asserted_elsewhere() -> None:
    variants = drill_variants()
    assert set(ASSERTED_ELSEWHERE) <= set(variants)
    for test in set(ASSERTED_ELSEWHERE.values()):
        module, _, name = test.partition("::")
        assert f"\ndef {name}(" in (ROOT / "tests" / module).read_text(), test
    drilled = {tag: v for tag, v in variants.items() if tag not in ASSERTED_ELSEWHERE}
    assert "failed" in drilled.values()
    assert "switch" in drilled.values()


def test_the_drill_catches_the_variants_nothing_else_covers(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="green", blue="v1.0.0", green="v1.1.0")
    variants = {t: v for t, v in drill_variants().items() if t not in ASSERTED_ELSEWHERE}
    config = jarvis.write_settings_with_tables(pytester.path)
    only = [arg for tag in variants for arg in ("--only", tag)]
    drill = subprocess.run(
        [sys.executable, "-c",
         "from pytest_bluegreen.cli.command import main; raise SystemExit(main())",
         "--config", str(config), "--checks", CHECKS, "drill", *only],
        cwd=pytester.path, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    out = drill.stdout + drill.stderr
    print(drill.stdout)  # the drill's table, shown with -rP
    assert drill.returncode == 0, out
    rows = [line.split() for line in out.splitlines()]
    table = {row[0]: row for row in rows if row and row[0] in drill_variants()}
    assert set(table) == set(variants), out
    for tag, expected in variants.items():
        row = table[tag]
        assert row[1:3] == [expected, expected], row
        assert row[-1] == "ok", row
    assert f"drill: {len(variants)} of {len(variants)} variant(s) got the expected verdict" in out
    # +300 ms: caught by the comparison with the live color and by the absolute threshold
    slow = (pytester.path / "reports" / "drill" / "v1.4.0-slow.log").read_text()
    assert "FAILED" in slow
    assert re.search(r"FAILED \S*test_compare.py::test_compared_with_the_live_color", slow), slow
    assert re.search(r"FAILED \S*test_perf.py::test_latency_thresholds\[blue-/api/items\]", slow)
    # 10% of requests +150 ms, the median unchanged: caught by the comparison's p(95) rule
    tail = (pytester.path / "reports" / "drill" / "v1.10.0-tail.log").read_text()
    assert re.search(r"FAILED \S*test_compare.py::test_compared_with_the_live_color", tail), tail
    assert re.search(r"p\(95\) <= live \* 1\.10 \+ 2: new \d+\.?\d* ms.*: failed", tail), tail
    assert routed(jarvis) == ("green", "v1.1.0")  # nothing ever took traffic
    assert jarvis.image_of("blue-backend") == "bluegreen/jarvis:v1.0.0"  # deployed back


@dataclass
class RoutedColors:
    """Which color answers the routed URL, asked every 0.2 s while a ``with`` block runs (a
    light poll: the gates judged meanwhile compare latencies)."""

    url: str
    seen: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def _poll(self) -> None:
        with requests.Session() as http:
            while not self.stop.wait(0.2):
                answer = http.get(self.url, timeout=5)
                self.seen[
                    answer.headers.get("X-Bluegreen-Color", f"HTTP {answer.status_code}")
                ] += 1

    def __enter__(self) -> RoutedColors:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(30)


def test_the_power_drill_finds_the_smallest_fault_the_gate_catches(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    """``bluegreen drill --power`` on a ladder of one latency magnitude (+3000% of green's
    median, some 30 ms on this ~1 ms endpoint: far past the comparison's ``p(95) <= live *
    1.10 + 2``, which +300% is not) and one error magnitude (20% of /api/* answering 500), each
    and the zero-fault control gated twice, with
    ``-m perf`` (the comparison and the thresholds: the checks that see latency and errors,
    and fewer of them than the drill's default, for a shorter test). Green keeps every routed
    request; blue is back at its tag without faults afterwards."""
    jarvis.arrange(live="green", blue="v1.0.0", green="v1.1.0")
    config = jarvis.write_settings_with_tables(
        pytester.path,
        drill_markers="perf",
        drill_power_latency=[3000],
        drill_power_errors=[20],
        drill_power_runs=2,
        allure_dir=str(pytester.path / "allure"),
    )
    with RoutedColors(f"{jarvis.haproxy.routed_url}/health") as routed_colors:
        drill = subprocess.run(
            [*BLUEGREEN, "--config", str(config), "--checks", CHECKS, "drill", "--power"],
            cwd=pytester.path, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    out = drill.stdout + drill.stderr
    print(drill.stdout)  # the table and the lines, shown with -rP
    assert drill.returncode == 0, out
    lines = drill.stdout.splitlines()
    seconds = r"seconds=\d+\.\d"
    assert re.fullmatch(
        rf"latency: caught>=90% at \+3000% \(n=2\), false_alarms=0/2, {seconds}", lines[-2]
    ), out
    assert re.fullmatch(
        rf"errors: caught>=90% at 20% \(n=2\), false_alarms=0/2, {seconds}", lines[-1]
    )
    kinds = {"control", "latency", "errors"}  # a table row's first word
    rows = {
        tuple(line.split()[:2]): line for line in lines if line.split()[:1] in ([k] for k in kinds)
    }
    assert set(rows) == {("control", "0"), ("latency", "+3000%"), ("errors", "20%")}, out
    assert rows[("control", "0")].endswith("switch 2  false alarms 0/2"), out
    assert re.search(r"  2/2 +failed 2 +reached$", rows[("latency", "+3000%")]), out
    assert re.search(r"HTTP 500 on 20\.00% of /api/\* requests  2/2 +failed 2 +reached$",
                     rows[("errors", "20%")]), out  # fmt: skip
    # the gates judged blue with its fault: the comparison saw the latency
    logs = pytester.path / "reports" / "drill" / "power"
    slow = (logs / "latency-3000pct-1.log").read_text()
    assert re.search(r"FAILED \S*test_compare.py::test_compared_with_the_live_color", slow), slow
    power = json.loads((pytester.path / "reports" / "verdict.json").read_text())["power"]
    assert (power["live"], power["idle"], power["tag"]) == ("green", "blue", "v1.1.0")
    assert (power["latency"]["caught_at"], power["errors"]["caught_at"]) == (3000, 20)
    assert 0 < power["baseline_ms"] < 50
    assert power["latency"]["magnitudes"][0]["latency_ms"] == round(30 * power["baseline_ms"], 2)
    allure = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    [result] = [r for r in allure if r["name"] == "bluegreen drill --power"]
    assert result["statusDetails"]["message"] == "; ".join(lines[-2:])
    # nothing ever took traffic but green; blue at its tag again, without faults
    assert set(routed_colors.seen) == {"green"}, routed_colors.seen
    assert sum(routed_colors.seen.values()) >= 10
    assert routed(jarvis) == ("green", "v1.1.0")
    assert jarvis.image_of("blue-backend") == "bluegreen/jarvis:v1.0.0"
    env = jarvis.compose().container.inspect(jarvis.project.container("blue-backend")).config.env
    assert {"JARVIS_FAULT_LATENCY_MS=0", "JARVIS_FAULT_ERROR_RATE=0"} <= set(env or []), env


def test_a_fault_a_killed_power_drill_left_goes_with_the_next_deploy(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    """A SIGKILL leaves the idle color running the fault its deploy's environment had (every
    /api/* request answering 500 here); the next plain deploy of that color, at the same tag
    and without the variable, replaces the container: no fault is written down anywhere."""
    jarvis.arrange(live="green", blue="v1.0.0", green="v1.1.0")
    config = jarvis.write_settings(pytester.path)
    command = [*BLUEGREEN, "--config", str(config), "--checks", CHECKS, "deploy",
               "--target-color", "blue", "--deployment-tag", "v1.0.0", "--skip-tests"]  # fmt: skip
    api = f"http://{jarvis.project.api_address('blue')}/api/items"

    def deploy(**faults: str) -> tuple[str, set[str], int]:
        done = subprocess.run(
            command, cwd=pytester.path, env={**os.environ, **faults}, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        inspected = jarvis.compose().container.inspect(jarvis.project.container("blue-backend"))
        env = {v for v in inspected.config.env or [] if v.startswith("JARVIS_FAULT_")}
        return str(inspected.id), env, requests.get(api, timeout=5).status_code

    left, faulty_env, faulty = deploy(BLUE_FAULT_ERROR_RATE="1")
    assert ("JARVIS_FAULT_ERROR_RATE=1" in faulty_env, faulty) == (True, 500), faulty_env
    replaced, env, answer = deploy()
    assert replaced != left
    assert env == {
        "JARVIS_FAULT_LATENCY_MS=0",
        "JARVIS_FAULT_LATENCY_SHARE=1",
        "JARVIS_FAULT_ERROR_RATE=0",
    }
    assert answer == 200
    assert routed(jarvis) == ("green", "v1.1.0")


def test_a_routed_only_fault_passes_every_direct_and_preview_request(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    """v1.11.0-routedflaky answers 500 on every 20th /api/* request HAProxy routed to it as
    user traffic; requests to its own ports and through the preview route never fail and are
    not counted. The gate's checks before a switch pass it; only routed traffic shows it."""
    jarvis.arrange(live="green", blue="v1.11.0-routedflaky", green="v1.1.0")
    stack = jarvis.haproxy
    https = f"https://127.0.0.1:{stack.ports['https']}/api/items"
    with requests.Session() as http:
        http.trust_env = False  # straight to 127.0.0.1
        http.verify = str(stack.cert)
        unrouted = {
            "container": (f"http://{jarvis.project.api_address('blue')}/api/items", {}),
            "direct": (f"{stack.direct_url('blue')}/api/items", {}),
            "preview": (https, preview_headers("blue", preview_key())),
        }

        def each_unrouted() -> list[tuple[str, int]]:
            """One request to blue's own port, HAProxy's direct port and the preview route."""
            return [
                (name, http.get(url, headers=headers, timeout=5).status_code)
                for name, (url, headers) in unrouted.items()
            ]

        before = [answer for _ in range(40) for answer in each_unrouted()]
        assert before == [(name, 200) for _ in range(40) for name in unrouted]
        # the checks before a switch, as the drill gates a variant: they pass it
        dry = gate(
            pytester, jarvis, "--env", "blue", "-m", "quick", "--switch", "--dry-run",
            "--deployment-tag=v1.11.0-routedflaky",
        )  # fmt: skip
        assert dry.ret == 0, output(dry)
        dry.stdout.fnmatch_lines(["*dry run: would switch because*"])
        stack.route_to("blue")
        try:
            failed, answers = [], []
            for n in range(1, 101):
                response = http.get(f"{stack.routed_url}/api/items", timeout=5)
                assert response.headers["X-Bluegreen-Color"] == "blue"
                assert response.status_code in (200, 500), response.text[:200]
                if response.status_code == 500:
                    failed.append(n)
                answers += each_unrouted()
        finally:
            stack.route_to("green")
    assert failed == [20, 40, 60, 80, 100], "every 20th routed request, counted from the first"
    assert answers == [(name, 200) for _ in range(100) for name in unrouted]
    jarvis.arrange(live="green", blue="v1.0.0")  # what the next test starts from


def test_redis_down_is_environmental_and_rolls_nothing_back(
    pytester: pytest.Pytester, jarvis: JarvisStack
) -> None:
    jarvis.arrange(live="green", blue="v1.0.0", green="v1.1.0")
    stack, dc = jarvis.haproxy, jarvis.compose()
    before = len(history(stack))

    def unhealthy(color: str) -> bool:
        try:
            return requests.get(f"{stack.direct_url(color)}/health", timeout=10).status_code != 200
        except requests.RequestException:
            return True

    running = [color for color in ("blue", "green") if not unhealthy(color)]
    dc.compose.stop(["redis"])
    try:
        wait_for(lambda: unhealthy("blue") and unhealthy("green"), 60, "both colors unhealthy")
        # green is live and its own checks fail: blue (where traffic would return) fails too
        live = gate(pytester, jarvis, "--env", "green", "--switch", "-m", "quick", verify_timeout=1)
        assert live.ret == 6, output(live)
        assert "fail on blue too" in output(live)
        assert "nothing rolled back" in output(live)
        # blue as the target: fails on green too
        idle = gate(pytester, jarvis, "--env", "blue", "--switch", "-m", "quick", verify_timeout=1)
        assert idle.ret == 6, output(idle)
        weights = stack.live_weights()
        assert weights["green-api"][0] > 0, weights
        assert weights["blue-api"][0] == 0, weights
        assert [e["outcome"] for e in history(stack)][before:] == ["inconclusive"] * 2
    finally:
        dc.compose.start(["redis"])
        stack.wait_up(*running, timeout=60)
    assert routed(jarvis) == ("green", "v1.1.0")


# --- a container of the old tag still answering for the color ----------------------------------


@pytest.fixture
def stale(jarvis: JarvisStack) -> Iterator[tuple[str, int, str, str]]:
    """(idle color, port, image, name): a container of the old tag v1.0.0, outside the Compose
    project (on its network), answering as the idle color on a port of its own (as one left
    over from an earlier deploy would)."""
    weights = jarvis.haproxy.live_weights()
    idle = "green" if weights.get("blue-api", (0, ""))[0] > 0 else "blue"
    [port] = free_ports(1)
    image = "bluegreen/jarvis:v1.0.0"
    name = f"{jarvis.project.name}-stale"
    dc = DockerClient()
    deploy = ROOT / "config" / "deploy"
    dc.run(
        image, ["jarvis-api"], detach=True, name=name, networks=[jarvis.project.network],
        publish=[(f"127.0.0.1:{port}", 8000)],
        env_files=[deploy / "shared.env", deploy / f"{idle}.env", deploy / "secrets.env"],
        envs={"DEPLOYMENT_COLOR": idle},
    )  # fmt: skip
    try:
        wait_for(
            lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok,
            60,
            "stale",
            retry=(requests.ConnectionError,),  # not listening yet
        )
        yield idle, port, image, name
    finally:
        dc.container.remove(name, force=True)


def test_an_old_container_answering_for_the_color_is_never_judged(
    pytester: pytest.Pytester, jarvis: JarvisStack, stale: tuple[str, int, str, str]
) -> None:
    idle, port, image, name = stale
    stack, api = jarvis.haproxy, jarvis.haproxy.api()
    before = stack.live_weights()
    entries = len(history(stack))

    # an extra server in the color's direct backend reaches the old container: some of the
    # checks' answers come from v1.0.0, so the checks did not judge v1.1.0 -- inconclusive
    assert "New server registered" in api.execute(
        f"add server {idle}_direct/stale 127.0.0.1:{port}"
    )
    api.execute(f"set server {idle}_direct/stale state ready")
    try:
        result = gate(pytester, jarvis, "--env", idle, "--deploy", "v1.1.0", "-m", "quick",
                      "--switch", "--skip-backup")  # fmt: skip
    finally:
        api.execute(f"set server {idle}_direct/stale state maint")
        api.execute(f"del server {idle}_direct/stale")
    text = output(result)
    assert result.ret == 6, text
    found = re.search(
        rf"INCONCLUSIVE: inconclusive: (\d+) of \d+ answer\(s\) from {idle} came from another "
        r"build than the deployed v1\.1\.0: v1\.0\.0 \((\d+) answers?, by image: "
        rf"{name} \({image}\) at 127\.0\.0\.1:{port} via {idle}_direct/stale\)",
        text,
    )
    assert found, text
    assert found.group(1) == found.group(2) != "0"
    assert stack.live_weights() == before  # nothing switched
    assert [e["outcome"] for e in history(stack)][entries:] == ["inconclusive"]

    # the color's own server moved to the old container: every slot of the color must run the
    # deployed image before any check runs -- refused, naming the slot and what runs there
    api.execute(f"set server api_backend/{idle}-api addr 127.0.0.1 port {port}")
    try:
        result = gate(pytester, jarvis, "--env", idle, "--deploy", "v1.1.0", "-m", "quick",
                      "--switch", "--skip-backup", deploy_timeout=15)  # fmt: skip
    finally:
        home = jarvis.project.ports[f"{idle.upper()}_API_PORT"]
        api.execute(f"set server api_backend/{idle}-api addr 127.0.0.1 port {home}")
    text = output(result)
    assert result.ret == 7, text
    assert (
        f"bluegreen: refused: not every HAProxy slot of {idle} runs the deployed v1.1.0 (after "
    ) in text
    assert f"api_backend/{idle}-api at 127.0.0.1:{port}: {name} ({image})" in text
    assert " PASSED" not in text  # no check ran
    assert stack.live_weights() == before
    assert [e["outcome"] for e in history(stack)][entries:] == ["inconclusive", "refused"]
