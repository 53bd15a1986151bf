"""coordctl's TLS options: against the coordinator's own admin port with
`service.admin_tls` (mutual TLS), and against a bare gRPC server that demands mutual
TLS, which checks the transport alone: it registers no service, so a call that
completes the handshake is answered UNIMPLEMENTED (exit 1), while a failed handshake
is the coordinator being unreachable (exit 3).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coordinator.adapters.sim.compute import SimCompute
from coordinator.ctl.cli import run
from coordinator.ctl.connection import Exit
from tests.service.harness import service, service_config


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _issue(directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
           | None) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return pem, cert, key


@dataclass(frozen=True)
class Pki:
    ca: Pem
    other_ca: Pem
    server: Pem
    client: Pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = _issue(d, "ca", None)
    other, _, _ = _issue(d, "other-ca", None)
    server, _, _ = _issue(d, "server", (ca_cert, ca_key))
    client, _, _ = _issue(d, "client", (ca_cert, ca_key))
    return Pki(ca, other, server, client)


@pytest.fixture(scope="module")
def mtls_address(pki: Pki) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    credentials = grpc.ssl_server_credentials(
        [(pki.server.key.read_bytes(), pki.server.cert.read_bytes())],
        root_certificates=pki.ca.cert.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def _ctl(address: str, *tls: str) -> int:
    return run(["--address", address, "--timeout", "5", *tls, "status"])


def test_mutual_tls_handshake_completes(pki: Pki, mtls_address: str) -> None:
    tls = ("--ca", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key", str(pki.client.key))
    assert _ctl(mtls_address, *tls) == Exit.REFUSED  # reached the server: UNIMPLEMENTED


@pytest.mark.parametrize(
    "which",
    [
        pytest.param("wrong-ca", id="server-cert-not-trusted"),
        pytest.param("no-client-cert", id="client-cert-missing"),
        pytest.param("plaintext", id="plaintext-to-tls-port"),
    ],
)
def test_failed_handshake_is_unreachable(
    pki: Pki, mtls_address: str, which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = {
        "wrong-ca": ("--ca", str(pki.other_ca.cert), "--cert", str(pki.client.cert),
                     "--key", str(pki.client.key)),
        "no-client-cert": ("--ca", str(pki.ca.cert)),
        "plaintext": (),
    }[which]  # fmt: skip
    assert _ctl(mtls_address, *tls) == Exit.UNREACHABLE
    assert "cannot reach the coordinator" in capsys.readouterr().err


def test_coordinator_admin_port_serves_mutual_tls(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_tls = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key),
                 "ca_file": str(pki.ca.cert)}  # fmt: skip
    config = service_config(tmp_path, service={"admin_tls": admin_tls})
    nova = SimCompute(clock=time.time)
    nova.add_hypervisor("host-a", "az1")
    good = ("--ca", str(pki.ca.cert), "--cert", str(pki.client.cert), "--key", str(pki.client.key))

    async def scenario() -> tuple[int, int]:
        async with service(config, nova) as running:
            address = f"127.0.0.1:{running.admin_port}"
            with_cert = await asyncio.to_thread(_ctl, address, *good)
            without = await asyncio.to_thread(_ctl, address, "--ca", str(pki.ca.cert))
            return with_cert, without

    with_cert, without = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert with_cert == Exit.OK
    assert without == Exit.UNREACHABLE  # no client certificate: the handshake fails
    assert "hosts" in capsys.readouterr().out
