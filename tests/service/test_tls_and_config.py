"""mTLS on the agent port, and config errors that name the bad key."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coordinator.adapters.sim.compute import SimCompute
from tests.service.fake_agent import FakeAgent
from tests.service.harness import service, service_config

Key = ec.EllipticCurvePrivateKey


def _cert(name: str, key: Key, issuer: tuple[str, Key] | None, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rogue_key = ec.generate_private_key(ec.SECP256R1())  # signs for an unknown CA
        self.ca = _cert("test-ca", self.ca_key, None, ca=True)
        issuers = {
            "server": ("test-ca", self.ca_key),
            "agent": ("test-ca", self.ca_key),
            "rogue": ("rogue-ca", self.rogue_key),
        }
        for name, issuer in issuers.items():
            key = ec.generate_private_key(ec.SECP256R1())
            (tmp / f"{name}.key").write_bytes(_key_pem(key))
            (tmp / f"{name}.crt").write_bytes(_pem(_cert(name, key, issuer, ca=False)))
        (tmp / "ca.crt").write_bytes(_pem(self.ca))
        self.tmp = tmp

    def client(self, name: str | None) -> grpc.ChannelCredentials:
        root = (self.tmp / "ca.crt").read_bytes()
        if name is None:
            return grpc.ssl_channel_credentials(root)
        return grpc.ssl_channel_credentials(
            root, (self.tmp / f"{name}.key").read_bytes(), (self.tmp / f"{name}.crt").read_bytes()
        )


@pytest.mark.parametrize(
    ("client", "admitted"),
    [
        pytest.param("agent", True, id="cert-from-our-ca"),
        pytest.param("rogue", False, id="cert-from-another-ca"),
        pytest.param(None, False, id="no-client-cert"),
    ],
)
def test_agent_port_requires_a_verifying_client_cert(
    tmp_path: Path, client: str | None, admitted: bool
) -> None:
    pki = Pki(tmp_path)
    tls = {"cert_file": str(tmp_path / "server.crt"), "key_file": str(tmp_path / "server.key"),
           "ca_file": str(tmp_path / "ca.crt")}  # fmt: skip
    config = service_config(tmp_path, service={"tls": tls, "agent_listen": "localhost:0"})
    nova = SimCompute(clock=lambda: 0.0)
    nova.add_hypervisor("host-a", "az1")

    async def scenario() -> bool:
        async with service(config, nova) as running:
            agent = FakeAgent(f"localhost:{running.agent_port}", "host-a",
                              credentials=pki.client(client))  # fmt: skip
            try:
                await agent.connect(timeout_s=5)
            except (grpc.aio.AioRpcError, ConnectionError, TimeoutError):
                return False
            finally:
                await agent.close()
            return "host-a" in running.coordinator.agents.connected()

    assert asyncio.run(scenario()) is admitted


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        pytest.param("service:\n  plan_intervl_s: 3\n", "service.plan_intervl_s: unknown key",
                     id="typo"),
        pytest.param("workflow:\n  poll_s: -1\n", "workflow.poll_s", id="negative"),
        pytest.param("service:\n  tls:\n    cert_file: a\n", "service.tls.key_file", id="missing"),
    ],
)  # fmt: skip
def test_broken_config_names_the_bad_key(tmp_path: Path, yaml_text: str, named: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert named in done.stderr
