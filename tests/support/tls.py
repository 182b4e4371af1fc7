"""Certificates for the TLS Runtime API tests, made with openssl: a CA, HAProxy's server
certificate and a client certificate it signs, and a client certificate it does not."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _signed(folder: Path, name: str, cn: str, ca: tuple[Path, Path] | None) -> tuple[Path, Path]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    if ca is None:
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
            "-keyout", key, "-out", crt,
        )  # fmt: skip
        return key, crt
    csr = folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:{cn}\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", key, "-out", csr
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
        "-days", "2", "-extfile", ext, "-out", crt,
    )  # fmt: skip
    return key, crt


@dataclass(frozen=True)
class RuntimeApiCerts:
    ca: Path  # the CA both sides trust
    server_pem: Path  # HAProxy's certificate and key, one file
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate the CA did not sign
    stranger_key: Path


def make_runtime_api_certs(folder: Path) -> RuntimeApiCerts:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = _signed(folder, "ca", "bluegreen-test-ca", None)
    server_key, server_crt = _signed(folder, "haproxy", "localhost", (ca_key, ca_crt))
    client_key, client_crt = _signed(folder, "operator", "operator", (ca_key, ca_crt))
    stranger_key, stranger_crt = _signed(folder, "stranger", "stranger", None)
    server_pem = folder / "haproxy.pem"
    server_pem.write_text(server_crt.read_text() + server_key.read_text())
    return RuntimeApiCerts(ca_crt, server_pem, client_crt, client_key, stranger_crt, stranger_key)
