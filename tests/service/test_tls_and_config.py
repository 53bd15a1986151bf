"""mTLS on the agent port, and config errors that name the bad key."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coordinator.adapters.sim.compute import SimCompute
from coordinator.config import Config, ConfigError
from coordinator.service.main import check_exposure, with_env_token
from tests.service.fake_agent import FakeAgent
from tests.service.harness import service, service_config

Key = ec.EllipticCurvePrivateKey


def _cert(
    name: str, key: Key, issuer: tuple[str, Key] | None, ca: bool, san: list[x509.GeneralName]
) -> x509.Certificate:
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
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


class Pki:
    """A CA, the coordinator's certificate, one certificate per hypervisor (SAN
    DNS:<hypervisor>, as the README tells operators to issue them), one with only a
    CN, and one signed by another CA."""

    def __init__(self, tmp: Path) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rogue_key = ec.generate_private_key(ec.SECP256R1())  # signs for an unknown CA
        self.ca = _cert("test-ca", self.ca_key, None, ca=True, san=[])
        ours, rogue = ("test-ca", self.ca_key), ("rogue-ca", self.rogue_key)
        server_san = [*_dns("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        certs: dict[str, tuple[str, tuple[str, Key], list[x509.GeneralName]]] = {
            "server": ("coordinator", ours, server_san),
            "host-a": ("agent", ours, _dns("host-a")),
            "host-b": ("agent", ours, _dns("host-b")),
            "cn-only": ("host-a", ours, []),
            "rogue": ("host-a", rogue, _dns("host-a")),
        }
        for file, (cn, issuer, san) in certs.items():
            key = ec.generate_private_key(ec.SECP256R1())
            (tmp / f"{file}.key").write_bytes(_key_pem(key))
            (tmp / f"{file}.crt").write_bytes(_pem(_cert(cn, key, issuer, ca=False, san=san)))
        (tmp / "ca.crt").write_bytes(_pem(self.ca))
        self.tmp = tmp

    def client(self, name: str | None) -> grpc.ChannelCredentials:
        root = (self.tmp / "ca.crt").read_bytes()
        if name is None:
            return grpc.ssl_channel_credentials(root)
        return grpc.ssl_channel_credentials(
            root, (self.tmp / f"{name}.key").read_bytes(), (self.tmp / f"{name}.crt").read_bytes()
        )

    def server_tls(self) -> dict[str, str]:
        return {"cert_file": str(self.tmp / "server.crt"), "key_file": str(self.tmp / "server.key"),
                "ca_file": str(self.tmp / "ca.crt")}  # fmt: skip


@pytest.mark.parametrize(
    ("client", "host", "admitted"),
    [
        pytest.param("host-a", "host-a", True, id="own-hypervisor"),
        pytest.param("cn-only", "host-a", True, id="cn-when-no-san"),
        pytest.param("host-a", "host-b", False, id="another-hypervisor"),
        pytest.param("host-b", "host-a", False, id="another-hypervisor-reversed"),
        pytest.param("rogue", "host-a", False, id="cert-from-another-ca"),
        pytest.param(None, "host-a", False, id="no-client-cert"),
    ],
)
def test_agent_registers_only_as_the_hypervisor_its_certificate_names(
    tmp_path: Path, client: str | None, host: str, admitted: bool
) -> None:
    pki = Pki(tmp_path)
    config = service_config(tmp_path, service={"tls": pki.server_tls(),
                                               "agent_listen": "localhost:0"})  # fmt: skip
    nova = SimCompute(clock=lambda: 0.0)
    nova.add_hypervisor("host-a", "az1")
    nova.add_hypervisor("host-b", "az1")

    async def scenario() -> tuple[bool, float]:
        async with service(config, nova) as running:
            await running.coordinator.refresh_inventory()
            agent = FakeAgent(f"localhost:{running.agent_port}", host,
                              credentials=pki.client(client))  # fmt: skip
            try:
                await agent.connect(timeout_s=5)
            except (grpc.aio.AioRpcError, ConnectionError, TimeoutError):
                pass
            finally:
                await agent.close()
            connected = host in running.coordinator.agents.connected()
            return connected, running.coordinator.metrics.rejected_count("identity_mismatch")

    admitted_now, mismatches = asyncio.run(scenario())
    assert admitted_now is admitted
    # A valid certificate for another hypervisor is refused and counted as such.
    assert mismatches == (1.0 if client in {"host-a", "host-b"} and not admitted else 0.0)


def test_the_certificates_hypervisor_is_refused_with_permission_denied(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    config = service_config(tmp_path, service={"tls": pki.server_tls(),
                                               "agent_listen": "localhost:0"})  # fmt: skip
    nova = SimCompute(clock=lambda: 0.0)
    for host in ("host-a", "host-b"):
        nova.add_hypervisor(host, "az1")

    async def scenario() -> grpc.StatusCode:
        async with service(config, nova) as running:
            agent = FakeAgent(f"localhost:{running.agent_port}", "host-b",
                              credentials=pki.client("host-a"))  # fmt: skip
            try:
                await agent.connect(timeout_s=5)
            except grpc.aio.AioRpcError as exc:
                code: grpc.StatusCode = exc.code()
                return code
            finally:
                await agent.close()
            raise AssertionError("host-a's certificate registered as host-b")

    assert asyncio.run(scenario()) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [
        pytest.param("service:\n  plan_intervl_s: 3\n", "service.plan_intervl_s: unknown key",
                     id="typo"),
        pytest.param("workflow:\n  poll_s: -1\n", "workflow.poll_s", id="negative"),
        pytest.param("service:\n  tls:\n    cert_file: a\n", "service.tls.key_file", id="missing"),
        pytest.param("policy:\n  sustained_samples: 2\n", "sustained_samples is now sustained_s",
                     id="renamed"),
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


def _serve_with(tmp_path: Path, yaml_text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    environment = {k: v for k, v in os.environ.items() if k != "STEALBALANCER_ADMIN_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "serve", "--simulate", "--config", str(path),
         "--journal", str(tmp_path / "j.sqlite")],
        capture_output=True, text=True, timeout=60, env={**environment, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("yaml_text", "env", "named"),
    [
        pytest.param("service:\n  admin_listen: 0.0.0.0:0\n", {}, "service.admin_listen",
                     id="network-without-token"),
        pytest.param("service:\n  admin_listen: '[::]:0'\n", {}, "service.admin_listen",
                     id="ipv6-any-without-token"),
        pytest.param("service:\n  admin_token: ''\n", {"STEALBALANCER_ADMIN_TOKEN": " \n"},
                     "STEALBALANCER_ADMIN_TOKEN is set but empty", id="empty-env-token"),
        pytest.param("service:\n  admin_token: '  '\n", {}, "service.admin_token",
                     id="blank-token-in-file"),
    ],
)  # fmt: skip
def test_serve_refuses_an_open_admin_api_with_one_line(
    tmp_path: Path, yaml_text: str, env: dict[str, str], named: str
) -> None:
    done = _serve_with(tmp_path, yaml_text, env)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], done.stderr


@pytest.mark.parametrize(
    ("service", "env", "allowed"),
    [
        pytest.param({"admin_listen": "127.0.0.1:1"}, None, True, id="loopback"),
        pytest.param({"admin_listen": "[::1]:1"}, None, True, id="loopback-v6"),
        pytest.param({"admin_listen": "localhost:1"}, None, True, id="localhost"),
        pytest.param({"admin_listen": "0.0.0.0:1"}, None, False, id="any"),
        pytest.param({"admin_listen": "10.0.0.5:1"}, None, False, id="an-interface"),
        pytest.param({"admin_listen": "0.0.0.0:1"}, "s3cret\n", True, id="token-from-secret"),
        pytest.param({"admin_listen": "0.0.0.0:1", "admin_token": "t"}, None, True, id="token"),
        pytest.param({"admin_listen": "0.0.0.0:1", "admin_insecure": True}, None, True,
                     id="explicitly-insecure"),
    ],
)  # fmt: skip
def test_admin_exposure_rules(
    monkeypatch: pytest.MonkeyPatch, service: dict[str, Any], env: str | None, allowed: bool
) -> None:
    if env is None:
        monkeypatch.delenv("STEALBALANCER_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("STEALBALANCER_ADMIN_TOKEN", env)
    config = with_env_token(Config.model_validate({"service": service}))
    if allowed:
        check_exposure(config)
    else:
        with pytest.raises(ConfigError, match=r"service\.admin_listen"):
            check_exposure(config)
    if env is not None:
        assert config.service.admin_token == "s3cret"  # the Secret's newline is not the token


def test_a_token_file_with_a_trailing_newline_is_the_token_without_it() -> None:
    config = Config.model_validate({"service": {"admin_token": "s3cret\n"}})
    assert config.service.admin_token == "s3cret"
