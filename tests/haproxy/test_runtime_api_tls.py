"""The Runtime API only admins reach: plain TCP on loopback only, a remote HAProxy over TLS with
a client certificate (against a real HAProxy's ``stats socket ... ssl ... verify required``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_bluegreen.haproxy.address import RuntimeApiAddress, TlsFiles
from pytest_bluegreen.haproxy.answers import RuntimeApiUnreachable
from pytest_bluegreen.haproxy.runtime import RuntimeApi, supported_version
from tests.support.gate import output, run_gate
from tests.support.stack import Stack, StackFactory, free_ports
from tests.support.tls import RuntimeApiCerts, make_runtime_api_certs


@pytest.mark.parametrize(
    "text", ["10.0.0.5:9999", "0.0.0.0:9999", "haproxy.internal:9999", "[2001:db8::1]:9999"]
)
def test_plain_tcp_off_this_host_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not on this host") as info:
        RuntimeApiAddress.parse(text)
    assert "tls://" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text", ["127.0.0.1:9999", "127.5.5.5:9999", "localhost:9999", "[::1]:9999"]
)
def test_loopback_tcp_is_taken(text: str) -> None:
    assert not RuntimeApiAddress.parse(text).tls


def test_tls_may_be_anywhere() -> None:
    address = RuntimeApiAddress.parse("tls://haproxy.internal:9443")
    assert (address.host, address.port, address.tls) == ("haproxy.internal", 9443, True)
    assert str(address) == "tls://haproxy.internal:9443"
    assert RuntimeApiAddress.parse(str(address)) == address


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param(
            'runtime_api = "10.0.0.5:9999"\n',
            "runtime_api: Runtime API address '10.0.0.5:9999' is not on this host",
            id="remote-plain-tcp",
        ),
        pytest.param(
            'runtime_api = "tls://10.0.0.5:9443"\n',
            "runtime_api tls://10.0.0.5:9443 is TLS: runtime_api_cert is required",
            id="tls-without-certificate",
        ),
        pytest.param(
            'runtime_api = "tls://10.0.0.5:9443"\nruntime_api_cert = "c.pem"\n'
            'runtime_api_key = "k.pem"\nruntime_api_ca = "ca.pem"\n',
            "runtime_api_cert",
            id="tls-certificate-missing-on-disk",
        ),
    ],
)
def test_a_bad_runtime_api_setting_is_one_line(
    pytester: pytest.Pytester, settings: str, message: str
) -> None:
    pytester.makefile(".toml", bluegreen=settings)
    pytester.makepyfile(test_x="def test_x(color):\n    pass\n")
    result = pytester.runpytest_subprocess("--env", "green", "--switch")
    assert result.ret == 4
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert message in errors[0]


# --- a real HAProxy with a TLS stats socket ---------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> RuntimeApiCerts:
    return make_runtime_api_certs(tmp_path / "certs")


@pytest.fixture
def tls_stack(stack_factory: StackFactory, certs: RuntimeApiCerts) -> tuple[Stack, str]:
    [port] = free_ports(1)
    stack = stack_factory(
        addresses={
            "BG_RUNTIME_TLS": f"127.0.0.1:{port}",
            "BG_RUNTIME_TLS_CERT": str(certs.server_pem),
            "BG_RUNTIME_TLS_CA": str(certs.ca),
        }
    )
    return stack, f"tls://127.0.0.1:{port}"


def test_a_client_certificate_the_ca_signed_gets_admin(
    tls_stack: tuple[Stack, str], certs: RuntimeApiCerts
) -> None:
    _, address = tls_stack
    api = RuntimeApi(address, tls=TlsFiles(certs.client_cert, certs.client_key, certs.ca))
    assert supported_version(api.show_info()["Version"])
    assert api.cli_level() == "admin"


def test_a_stranger_certificate_is_turned_away(
    tls_stack: tuple[Stack, str], certs: RuntimeApiCerts
) -> None:
    _, address = tls_stack
    api = RuntimeApi(address, tls=TlsFiles(certs.stranger_cert, certs.stranger_key, certs.ca))
    # HAProxy refuses the certificate (TLS 1.3: told on the first read, not in the handshake)
    with pytest.raises(RuntimeApiUnreachable, match="tlsv1 alert unknown ca") as info:
        api.show_info()
    assert "\n" not in str(info.value)
    assert address in str(info.value)


def tls_settings(address: str, certs: RuntimeApiCerts, *, cert: Path, key: Path) -> dict[str, str]:
    return {
        "runtime_api": address,
        "runtime_api_cert": str(cert),
        "runtime_api_key": str(key),
        "runtime_api_ca": str(certs.ca),
    }


def test_the_gate_switches_over_tls(
    pytester: pytest.Pytester, tls_stack: tuple[Stack, str], certs: RuntimeApiCerts
) -> None:
    stack, address = tls_stack
    settings = tls_settings(address, certs, cert=certs.client_cert, key=certs.client_key)
    result = run_gate(pytester, stack, "--env", "green", "--switch", **settings)
    assert result.ret == 0, output(result)
    result.stdout.fnmatch_lines(["*SWITCH: switched blue -> green*"])
    assert stack.served_color() == "green"


def test_the_gate_with_a_stranger_certificate_changes_nothing(
    pytester: pytest.Pytester, tls_stack: tuple[Stack, str], certs: RuntimeApiCerts
) -> None:
    stack, address = tls_stack
    settings = tls_settings(address, certs, cert=certs.stranger_cert, key=certs.stranger_key)
    before = stack.live_weights()
    result = run_gate(pytester, stack, "--env", "green", "--switch", **settings)
    assert result.ret == 7, output(result)
    assert f"HAProxy Runtime API at {address}" in output(result)
    assert "passed" not in output(result)
    assert stack.live_weights() == before
