"""The interleaved load behind the comparison (two real backends), and the drill's scoring."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import pytest

from pytest_bluegreen.cli.drill import DrillRow, caught_by, drill_table, run_variants
from pytest_bluegreen.eventually import INFRASTRUCTURE, classify
from pytest_bluegreen.judge.compare import CompareDecision
from pytest_bluegreen.judge.comparerules import parse_compare_rule
from pytest_bluegreen.judge.load import TlsError, run_interleaved, run_load
from pytest_bluegreen.judge.sidebyside import measure
from pytest_bluegreen.settings import SwitchingSettings
from pytest_bluegreen.switch.probe import Probe
from tests.support.stack import Backend, Stack, make_cert


@pytest.mark.timing
def test_the_interleaved_load_hits_both_colors_alike(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, green = color_backends
    for backend in (blue, green):
        backend.reset()
    loads = run_interleaved(
        {"blue": f"{blue.url}/api/echo", "green": f"{green.url}/api/echo"},
        total_each=120,
        duration=30,
        concurrency=3,
    )
    assert {name: load.count for name, load in loads.items()} == {"blue": 120, "green": 120}
    assert loads["blue"].colors() == {"blue": 120}
    assert loads["green"].colors() == {"green": 120}
    # in time: never one color's load first and the other's after it (each began before the
    # other ended), and the n-th request to blue and the n-th to green were sent close together
    # -- but for a pair or two a stalled thread kept apart on a busy machine (the whole load
    # takes a tenth of a second: one 30 ms stall is a third of it)
    starts = {name: sorted(s.start for s in load.samples) for name, load in loads.items()}
    assert starts["blue"][0] < starts["green"][-1], starts
    assert starts["green"][0] < starts["blue"][-1], starts
    wall = loads["blue"].wall
    gaps = sorted(abs(b - g) for b, g in zip(starts["blue"], starts["green"], strict=True))
    assert gaps[int(len(gaps) * 0.95)] < wall / 4, (gaps[-10:], wall)
    blue_first = sum(b < g for b, g in zip(starts["blue"], starts["green"], strict=True))
    assert 0 < blue_first < 120  # both colors lead on some connections


@pytest.mark.timing
def test_the_interleaved_load_counts_errors_per_color(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, green = color_backends
    blue.reset()
    green.reset()
    green.control(error_every=10)
    try:
        loads = run_interleaved(
            {"blue": f"{blue.url}/api/echo", "green": f"{green.url}/api/echo"},
            total_each=100,
            duration=30,
            concurrency=2,
        )
    finally:
        green.reset()
    assert len(loads["blue"].failed) == 0
    assert 9 <= len(loads["green"].failed) <= 11  # every 10th of ~100 (counted per process)


def test_bad_interleaved_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        run_interleaved({"a": "http://127.0.0.1:1/"}, total_each=0, duration=1)
    with pytest.raises(ValueError, match="must be positive"):
        run_interleaved({}, total_each=1, duration=1)


# --- https:// colors: loaded over TLS, verified against tls_ca (a real HAProxy TLS frontend) ---


def https_url(stack: Stack) -> str:
    """HAProxy's TLS frontend (the shipped https_in): it routes /api/* to the live color, blue."""
    return f"https://127.0.0.1:{stack.ports['https']}"


def tls_requests(stack: Stack) -> int:
    """Requests HAProxy's TLS frontend has taken so far."""
    (row,) = [
        r for r in stack.api().show_stat() if r.backend == "https_in" and r.server == "FRONTEND"
    ]
    return int(row.raw["req_tot"] or 0)


@pytest.fixture
def no_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests' default trust, whatever the caller's shell exports."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timing
def test_an_https_color_is_loaded_over_tls(stack: Stack) -> None:
    before = tls_requests(stack)
    result = run_load(
        https_url(stack) + "/api/echo", total=30, duration=30, concurrency=3, tls_ca=stack.cert
    )
    assert [s.error for s in result.failed] == []
    assert result.count == 30
    assert result.colors() == {"blue": 30}
    assert set(result.by_kind()) == {"keepalive-get", "new-get", "keepalive-post"}
    assert tls_requests(stack) - before == 30  # every one through the TLS frontend


@pytest.mark.timing
def test_an_https_color_is_compared_over_tls(stack: Stack) -> None:
    rules = (parse_compare_rule("p(95) <= live * 2 + 50"), parse_compare_rule("rate <= live"))
    before = tls_requests(stack)
    result = measure(
        "/api/echo",
        rules,
        (("green", https_url(stack)), ("blue", stack.direct_url("blue"))),
        requests=60, duration=60, concurrency=2, timeout=5, color_header="X-Bluegreen-Color",
        confidence=0.95, min_samples=50, tls_ca=stack.cert,
    )  # fmt: skip
    assert (result.new.total, result.new.errors) == (60, 0)
    assert (result.live.total, result.live.errors) == (60, 0)
    assert tls_requests(stack) - before == 60
    assert [c.decision for c in result.comparisons] == [CompareDecision.PASSED] * 2


def test_a_wrong_ca_is_an_infrastructure_error_not_failed_requests(
    stack: Stack, tmp_path: Path
) -> None:
    other = make_cert(tmp_path / "other.pem")  # a CA that did not sign HAProxy's certificate
    url = https_url(stack) + "/api/echo"
    with pytest.raises(TlsError, match="CERTIFICATE_VERIFY_FAILED") as raised:
        run_load(url, total=30, duration=30, concurrency=3, tls_ca=other)
    assert str(raised.value).startswith(f"{url}: the TLS handshake failed: ")
    assert f"verified against tls_ca {other}" in str(raised.value)
    assert classify(raised.value) == INFRASTRUCTURE
    with pytest.raises(TlsError, match="CERTIFICATE_VERIFY_FAILED") as compared:
        measure(
            "/api/echo",
            (parse_compare_rule("rate <= live"),),
            (("green", https_url(stack)), ("blue", stack.direct_url("blue"))),
            requests=60, duration=60, concurrency=2, timeout=5,
            color_header="X-Bluegreen-Color", confidence=0.95, min_samples=50, tls_ca=other,
        )  # fmt: skip
    assert classify(compared.value) == INFRASTRUCTURE


@pytest.mark.usefixtures("no_ca_bundle")
def test_without_tls_ca_the_default_trust_is_requests(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = https_url(stack) + "/api/echo"
    with pytest.raises(TlsError, match="verified against certifi's CA bundle"):
        run_load(url, total=5, duration=30, concurrency=1)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.cert))  # as requests reads it
    assert run_load(url, total=5, duration=30, concurrency=1).colors() == {"blue": 5}


def test_a_plain_http_port_behind_an_https_url_is_an_infrastructure_error(
    stack: Stack,
) -> None:
    with pytest.raises(TlsError, match="the TLS handshake failed"):
        run_load(stack.direct_url("blue").replace("http://", "https://") + "/api/echo",
                 total=5, duration=30, concurrency=1, tls_ca=stack.cert)  # fmt: skip


@pytest.mark.usefixtures("no_ca_bundle")
def test_the_probe_of_an_https_routed_url_uses_tls(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    switching = SwitchingSettings(routed_api_url=https_url(stack), probe_requests=20)
    untrusted = Probe(switching, "X-Bluegreen-Color")
    untrusted.thread.join(30)
    refused = untrusted.finish()
    assert refused.requests == 0
    assert refused.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error
    assert refused.line("URL").startswith("probe through URL: nothing measured: ")
    # trusted as the switch's verification trusts it (requests' REQUESTS_CA_BUNDLE)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.cert))
    before = tls_requests(stack)
    probe = Probe(switching, "X-Bluegreen-Color")
    probe.thread.join(30)
    summary = probe.finish()
    assert (summary.requests, summary.failed, summary.error) == (20, 0, None)
    assert summary.colors == {"blue": 20}
    assert tls_requests(stack) - before == 20


# --- the drill's scoring (no stack: deploy and gate are stand-ins) ------------------------------


def test_caught_by_names_the_first_failed_check_and_counts_the_rest() -> None:
    verdict = {
        "failed_checks": {
            "shared": ["checks/test_databases.py::test_redis"],
            "green": [
                "checks/test_perf.py::test_latency_thresholds[green-/api/items]",
                "checks/test_compare.py::test_compared_with_the_live_color[green-/api/items]",
            ],
        }
    }
    assert caught_by(verdict, "green") == (
        "test_perf.py::test_latency_thresholds[green-/api/items] (+2 more)"
    )
    assert caught_by({"failed_checks": {}}, "green") == ""


def test_a_variant_with_another_verdict_is_a_hole(tmp_path: Path) -> None:
    verdicts = {
        "v2-slow": {"verdict": "failed", "failed_checks": {"green": ["a.py::test_x[green]"]}},
        "v2-sneaky": {"verdict": "switch", "failed_checks": {}},
    }
    deployed: list[str] = []

    def gate(tag: str) -> tuple[int, Path]:
        path = tmp_path / f"{tag}.json"
        path.write_text(json.dumps(verdicts[tag]))
        return (0 if verdicts[tag]["verdict"] == "switch" else 1), path

    def deploy(tag: str) -> int:
        deployed.append(tag)
        return 9 if tag == "v2-unhealthy" else 0

    rows = run_variants(
        {"v2-slow": "failed", "v2-sneaky": "failed", "v2-unhealthy": "deploy-failed"},
        "green",
        deploy=deploy,
        gate=gate,
        progress=lambda line: None,
    )
    assert deployed == ["v2-slow", "v2-sneaky", "v2-unhealthy"]
    assert [(r.tag, r.actual, r.caught_by, r.ok) for r in rows] == [
        ("v2-slow", "failed", "a.py::test_x[green]", True),
        ("v2-sneaky", "switch", "", False),
        ("v2-unhealthy", "deploy-failed", "the deploy", True),
    ]
    table = drill_table(rows)
    assert table[0].split() == ["variant", "expected", "actual", "caught", "by"]
    assert table[2].split()[-1] == "MISSED"
    assert table[-1].startswith("drill: 2 of 3 variant(s) got the expected verdict in ")
    assert table[-1].endswith("the gate has a hole: see MISSED")


def test_a_gate_without_a_verdict_is_reported_not_guessed(tmp_path: Path) -> None:
    rows = run_variants(
        {"v3": "failed"},
        "green",
        deploy=lambda tag: 0,
        gate=lambda tag: (3, tmp_path / "missing.json"),
        progress=lambda line: None,
    )
    assert rows == [DrillRow("v3", "failed", "no verdict (exit 3)", "", rows[0].seconds)]
    assert not rows[0].ok


def test_a_paused_load_leaves_that_long_between_a_connections_requests(
    color_backends: tuple[Backend, Backend],
) -> None:
    blue, _ = color_backends
    blue.reset()
    result = run_load(f"{blue.url}/api/echo", total=12, duration=30, concurrency=1, pause=0.05)
    assert result.count == 12
    gaps = [b.start - a.end for a, b in itertools.pairwise(result.samples)]
    assert min(gaps) >= 0.05, gaps  # one connection: each request after the pause
    # a stop during a pause ends the load then, not at the duration
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    stopped = run_load(f"{blue.url}/api/echo", total=1000, duration=30, concurrency=1,
                       pause=10, stop=stop)  # fmt: skip
    assert stopped.count == 1
    assert stopped.wall < 10
    with pytest.raises(ValueError, match="pause must not be negative"):
        run_load(f"{blue.url}/api/echo", total=1, duration=1, pause=-1)
