"""The gate's own metrics: the text format (as promtool reads it), the textfile that carries its
counters on and is replaced atomically, and a real Pushgateway receiving real gate runs against
a real HAProxy."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path

import pytest
import requests

from pytest_bluegreen.record import history
from pytest_bluegreen.record.history import HistoryEntry, Outcome
from pytest_bluegreen.report.exposition import (
    ExpositionError,
    Family,
    Sample,
    labels_of,
    parse,
    render,
)
from pytest_bluegreen.report.metrics import (
    BAKE,
    LIVE,
    NAMES,
    RUNS,
    SWITCH,
    RunMetrics,
    families,
    publish,
    write_textfile,
)
from pytest_bluegreen.settings import Settings, resolve
from tests.support.bake import bake_run
from tests.support.cli import BLUEGREEN
from tests.support.gate import output, run_gate
from tests.support.infra import require_infra
from tests.support.pushgateway import Pushgateway, pushgateway_binary
from tests.support.stack import Stack, wait_for

COLORS = ("blue", "green")


def entry(outcome: Outcome, target: str) -> HistoryEntry:
    return HistoryEntry.now(from_color=None, to_color=target, tag=None, outcome=outcome)


def runs(samples: Iterable[Sample]) -> dict[tuple[str | None, str | None], float]:
    """The gate-run counters that are not 0: (outcome, target) -> count."""
    return {
        (s.label("outcome"), s.label("target")): s.value
        for s in samples
        if s.name == RUNS and s.value
    }


def pushed_runs(
    gateway: Pushgateway, expected: Mapping[tuple[str, str], float]
) -> list[Sample] | None:
    """What the Pushgateway holds, once it counts the ``expected`` runs."""
    samples = gateway.samples()
    return samples if samples and runs(samples) == expected else None


def live(samples: Iterable[Sample]) -> dict[str | None, float]:
    return {s.label("color"): s.value for s in samples if s.name == LIVE}


def read(path: Path) -> list[Sample]:
    return list(parse(path.read_text(), NAMES))


@pytest.fixture(scope="session")
def promtool(pytestconfig: pytest.Config) -> str:
    found = shutil.which("promtool")
    require_infra(pytestconfig, found is not None, "promtool is not installed (apt prometheus)")
    assert found is not None
    return found


def promtool_check(promtool: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )


# --- the format ---------------------------------------------------------------------------------


def test_label_values_and_help_are_escaped_and_read_back() -> None:
    odd = 'a"b\\c\nd'
    family = Family(RUNS, "counter", "help with \\ and\na newline", {labels_of(outcome=odd): 3})
    text = render([family])
    assert "# HELP bluegreen_gate_runs_total help with \\\\ and\\na newline\n" in text
    # prometheus-client writes every value as a float (3.0); Prometheus reads both
    assert 'bluegreen_gate_runs_total{outcome="a\\"b\\\\c\\nd"} 3.0\n' in text
    [sample] = parse(text, NAMES)
    assert (sample.label("outcome"), sample.value) == (odd, 3)


def test_only_our_lines_are_read_and_a_broken_one_is_an_error() -> None:
    text = 'other_metric{x="never closed 1\nbluegreen_live_color{color="green"} 1 1700000000\n'
    assert [(s.name, s.labels, s.value) for s in parse(text, NAMES)] == [
        (LIVE, (("color", "green"),), 1.0)
    ]
    with pytest.raises(ExpositionError, match="line 1"):
        list(parse('bluegreen_live_color{color="green} 1\n', NAMES))


def test_promtool_accepts_the_families_and_rejects_a_broken_file(promtool: str) -> None:
    run = RunMetrics(switch_seconds=1.25, deploy_seconds=42.0)
    run.recorded(entry(Outcome.SWITCHED, "green"))
    run.bake_intervals.update(["passed", "passed", "failed"])
    text = render(families([], run, COLORS, "green"))
    checked = promtool_check(promtool, text)
    assert checked.returncode == 0, checked.stdout + checked.stderr + text
    assert checked.stdout + checked.stderr == ""  # no lint finding either
    broken = promtool_check(promtool, text.replace('target="green"', 'target="green'))
    assert broken.returncode != 0  # the check is not a rubber stamp


def test_counters_carry_on_and_durations_keep_their_last_value() -> None:
    first = RunMetrics(switch_seconds=2.5, deploy_seconds=30.0)
    first.recorded(entry(Outcome.SWITCHED, "green"))
    after_first = list(parse(render(families([], first, COLORS, "green")), NAMES))
    second = RunMetrics()
    second.recorded(entry(Outcome.SWITCHED, "green"))
    second.recorded(entry(Outcome.FAILED, "blue"))
    after = list(parse(render(families(after_first, second, COLORS, None)), NAMES))
    assert runs(after) == {("switched", "green"): 2, ("failed", "blue"): 1}
    assert live(after) == {"blue": 0, "green": 0}  # HAProxy read: no single color live
    assert [s.value for s in after if s.name == SWITCH] == [2.5]  # the second run switched none
    every = {(s.label("outcome"), s.label("target")) for s in after if s.name == RUNS}
    assert every == {(o.value, c) for o in Outcome for c in COLORS}  # 0s give rate() a start
    unknown = families(after_first, second, COLORS, None, live_known=False)
    assert LIVE not in {f.name for f in unknown}  # HAProxy not read: said nothing, not 0


def test_the_innermost_collector_hears_each_history_entry_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    outer, inner = RunMetrics(), RunMetrics()
    with outer.collecting():
        history.append(path, entry(Outcome.FAILED, "green"))
        with inner.collecting():
            history.append(path, entry(Outcome.SWITCHED, "green"))
        history.append(path, entry(Outcome.NOOP, "green"))
    history.append(path, entry(Outcome.ABORTED, "green"))  # nobody collecting
    assert outer.outcomes == {("failed", "green"): 1, ("noop", "green"): 1}
    assert inner.outcomes == {("switched", "green"): 1}
    assert [e.outcome for e in history.read_history(path)] == [
        Outcome.FAILED,
        Outcome.SWITCHED,
        Outcome.NOOP,
        Outcome.ABORTED,
    ]


# --- the textfile -------------------------------------------------------------------------------


def add_one(previous: Iterable[Sample]) -> list[Family]:
    run = RunMetrics()
    run.recorded(entry(Outcome.SWITCHED, "green"))
    return families(previous, run, COLORS, "green")


def test_the_textfile_is_replaced_whole_and_counts_every_write(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "bluegreen.prom"
    write_textfile(path, add_one)
    # held open, the first file's inode cannot be reused by a later one (a false "same file")
    first = path.open("rb")
    inode = os.fstat(first.fileno()).st_ino
    seen: list[float] = []
    problems: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                count = runs(read(path))[("switched", "green")]
            except (ExpositionError, KeyError) as exc:  # a half-written file would land here
                problems.append(repr(exc))
                continue
            seen.append(count)

    watching = threading.Thread(target=reader)
    watching.start()
    try:
        for _ in range(29):  # each one fsync'd: 30 writes in all
            write_textfile(path, add_one)
    finally:
        done.set()
        watching.join()
    assert problems == []
    assert seen == sorted(seen)  # a counter read back never goes down
    assert len(seen) > 1  # the reader read while the file was rewritten
    assert runs(read(path)) == {("switched", "green"): 30}
    assert path.stat().st_ino != inode  # renamed over, not rewritten in place
    first.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".bluegreen.prom.lock",
        "bluegreen.prom",
    ]


def settings_for(tmp_path: Path, **environ: str) -> Settings:
    """Settings whose HAProxy does not answer (the live color is then left out)."""
    runtime = {"BLUEGREEN_RUNTIME_API": str(tmp_path / "no-haproxy.sock")}
    return resolve({}, {**runtime, **environ}, {}, tmp_path)


def test_a_file_not_in_the_format_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "bluegreen.prom"
    path.write_text('bluegreen_gate_runs_total{outcome="switched} 7\n')
    run = RunMetrics()
    run.recorded(entry(Outcome.SWITCHED, "green"))
    settings = settings_for(tmp_path, BLUEGREEN_METRICS_TEXTFILE=str(path))
    [warning] = publish(settings, run)
    assert warning.startswith(f"warning: gate metrics not written to {path}: line 1: ")
    assert path.read_text() == 'bluegreen_gate_runs_total{outcome="switched} 7\n'


def test_with_neither_place_set_nothing_is_sent_or_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    def record(self: requests.Session, method: str, url: str, **kwargs: object) -> None:
        sent.append(f"{method} {url}")
        raise requests.ConnectionError("not here")

    monkeypatch.setattr(requests.Session, "request", record)
    run = RunMetrics(switch_seconds=1.0)
    run.recorded(entry(Outcome.SWITCHED, "green"))
    before = sorted(tmp_path.rglob("*"))
    assert publish(settings_for(tmp_path), run) == []
    assert sent == []
    assert sorted(tmp_path.rglob("*")) == before
    # the same run with a push URL does reach for the network: the probe above would see it
    pushed = settings_for(tmp_path, BLUEGREEN_METRICS_PUSH_URL="http://127.0.0.1:9")
    [warning] = publish(pushed, run)
    assert sent == ["GET http://127.0.0.1:9/metrics"] * 2  # one retry
    assert (
        warning
        == "warning: gate metrics not pushed to http://127.0.0.1:9: GET failed: ConnectionError"
    )


# --- real gate runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushgateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pushgateway]:
    binary = pushgateway_binary()
    message = "prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)"
    require_infra(request.config, binary is not None, message)
    assert binary is not None
    gateway = Pushgateway.start(binary, tmp_path_factory.mktemp("pushgateway") / "log")
    yield gateway
    gateway.stop()


@pytest.fixture
def gateway(pushgateway: Pushgateway) -> Pushgateway:
    """The module's Pushgateway, without this host's group of an earlier test."""
    pushgateway.clear()
    return pushgateway


@pytest.fixture(autouse=True)
def _no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pending promotion asks the engine for the image: no engine here."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def test_a_failed_and_a_switched_run_are_pushed_and_written(
    pytester: pytest.Pytester, stack: Stack, gateway: Pushgateway, promtool: str
) -> None:
    textfile = pytester.path / "textfile" / "bluegreen.prom"
    sinks = {"metrics_push_url": gateway.url, "metrics_textfile": str(textfile)}
    stack.green.control(api_status=500)
    failed = run_gate(pytester, stack, "--env", "green", "--switch", **sinks)
    assert failed.ret == 1, output(failed)
    stack.green.reset()
    switched = run_gate(pytester, stack, "--env", "green", "--switch", **sinks)
    assert switched.ret == 0, output(switched)
    assert "gate metrics" not in output(failed) + output(switched)  # no warning

    expected = {("failed", "green"): 1, ("switched", "green"): 1}
    pushed = wait_for(partial(pushed_runs, gateway, expected), 10, "push")
    written = read(textfile)
    for samples in (pushed, written):
        assert runs(samples) == expected
        assert live(samples) == {"blue": 0, "green": 1}
        [seconds] = [s.value for s in samples if s.name == SWITCH]
        assert 0 < seconds < 60
    checked = promtool_check(promtool, textfile.read_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_run_under_xdist_counts_each_outcome_once(
    pytester: pytest.Pytester, stack: Stack, gateway: Pushgateway
) -> None:
    # switched, then a failed bake switches back: two history entries of one run, each once
    result = bake_run(pytester, stack, 2, "-n", "2", degrade=True, metrics_push_url=gateway.url)
    assert result.ret == 11, output(result)
    expected = {("switched", "green"): 1, ("rolled-back", "blue"): 1}
    pushed = wait_for(partial(pushed_runs, gateway, expected), 10, "push")
    bake = {s.label("result"): s.value for s in pushed if s.name == BAKE}
    assert bake == {"passed": 0, "failed": 1, "inconclusive": 0}
    assert live(pushed) == {"blue": 1, "green": 0}


def test_a_pushgateway_that_does_not_answer_is_one_warning(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        textfile = pytester.path / "bluegreen.prom"
        result = run_gate(
            pytester,
            stack,
            "--env",
            "green",
            "--switch",
            metrics_push_url=f"http://gate:s3cr3t-push@127.0.0.1:{port}",
            metrics_push_timeout=1,
            metrics_textfile=str(textfile),
        )
    assert result.ret == 0, output(result)  # the switch's exit status, unchanged
    assert stack.served_color() == "green"
    warnings = [line for line in result.outlines if "gate metrics" in line]
    assert warnings == [
        f"bluegreen: warning: gate metrics not pushed to http://***@127.0.0.1:{port}: GET "
        "timed out (metrics_push_timeout 1s)"
    ]
    assert "s3cr3t-push" not in output(result)
    assert runs(read(textfile)) == {("switched", "green"): 1}  # the other place still written


def test_commands_count_and_a_dry_run_does_not(pytester: pytest.Pytester, stack: Stack) -> None:
    textfile = pytester.path / "bluegreen.prom"
    dry = run_gate(
        pytester, stack, "--env", "green", "--switch", "--dry-run", metrics_textfile=str(textfile)
    )
    assert dry.ret == 0, output(dry)
    assert not textfile.exists()
    pending = run_gate(
        pytester, stack, "--env", "green", "--switch=manual", metrics_textfile=str(textfile)
    )
    assert pending.ret == 0, output(pending)
    assert runs(read(textfile)) == {("pending-promotion", "green"): 1}

    def bluegreen(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*BLUEGREEN, *args],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "gate metrics" not in done.stdout + done.stderr
        return done

    bluegreen("abort")
    assert runs(read(textfile)) == {("pending-promotion", "green"): 1, ("aborted", "green"): 1}
    assert [s for s in read(textfile) if s.name == SWITCH] == []  # nothing switched yet
    bluegreen("switch-to", "green", "--force")
    samples = read(textfile)
    assert runs(samples) == {
        ("pending-promotion", "green"): 1,
        ("aborted", "green"): 1,
        ("switched", "green"): 1,
    }
    assert live(samples) == {"blue": 0, "green": 1}
    assert [s.value > 0 for s in samples if s.name == SWITCH] == [True]  # the CLI's switch


WITHOUT_CLIENT = [
    sys.executable,
    "-c",
    "import sys; sys.modules['prometheus_client'] = None; "  # the metrics extra not installed
    "from pytest_bluegreen.cli.command import main; raise SystemExit(main())",
]


def test_a_command_that_would_publish_without_the_extra_is_refused(
    pytester: pytest.Pytester, stack: Stack
) -> None:
    """Without prometheus-client, a command that may record an outcome stops before it changes
    anything, naming the extra; one that only reads still works."""
    pytester.makefile(".toml", bluegreen=stack.settings_toml(metrics_textfile="bluegreen.prom"))
    before = stack.live_weights()

    def bluegreen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*WITHOUT_CLIENT, *args],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = bluegreen("switch-to", "green", "--force")
    text = refused.stdout + refused.stderr
    assert refused.returncode == 4, text
    assert "needs the 'metrics' extra: pip install 'pytest-bluegreen[metrics]'" in text
    assert "Traceback" not in text
    assert stack.live_weights() == before
    assert not stack.state_file.exists()  # no history entry
    assert not (pytester.path / "bluegreen.prom").exists()
    shown = bluegreen("status")
    assert "extra" not in shown.stdout + shown.stderr, shown.stdout + shown.stderr
