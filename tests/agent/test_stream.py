"""The agent's stream against a real AgentLink server on loopback: register, reports,
commands, the coordinator going away and coming back, the buffer bound, mTLS."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agent.cli import build_daemon
from agent.config import load_agent_config
from agent.daemon import AgentDaemon
from agent.errors import SourceError
from agent.sources.sim import SimHost
from agent.stream import Backoff, ReportBuffer
from coordinator.api.v1 import agent_pb2 as pb
from tests.agent.linkserver import LinkServer

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2}


def _daemon(address: str, **extra: Any) -> AgentDaemon:
    config: dict[str, Any] = {
        "host": "cmp-7",
        "availability_zone": "az-1",
        "interval_s": 0.1,
        "source": "sim",
        "sim_vms": [{"name": "web-1", "vcpus": 2, "demand": 1.0, "steal": 0.25}],
        "reconnect": FAST_BACKOFF,
        "coordinator": {"address": address, "plaintext": True},
        "metrics": {"port": 0},
    }
    config.update(extra)
    return build_daemon(load_agent_config(None, config))


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def _with_agent(daemon: AgentDaemon, body: Callable[[], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def _sim(daemon: AgentDaemon) -> SimHost:
    source = daemon.collector.domain_source
    assert isinstance(source, SimHost)
    return source


def test_registers_then_reports_raw_counters() -> None:
    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        daemon = _daemon(server.address)
        sim = _sim(daemon)

        async def body() -> None:
            await server.wait_for(lambda r: len(r.reports) >= 3)

        await _with_agent(daemon, body)
        await server.stop()
        [register] = server.received.registers
        assert (register.host, register.availability_zone) == ("cmp-7", "az-1")
        assert register.pcpus == sim.pcpus and register.boot_id == sim.boot_id()
        reports = server.received.reports
        assert [r.seq for r in reports] == sorted({r.seq for r in reports})
        # Only what was collected before the first registration comes from the buffer.
        flags = [r.replayed for r in reports]
        assert flags == sorted(flags, reverse=True) and not flags[-1]
        first, last = reports[0], reports[-1]
        [vm_first], [vm_last] = first.vms, last.vms
        assert vm_last.name == "web-1" and vm_last.steal_source == pb.STEAL_SOURCE_SIMULATED
        steal = (vm_last.steal_ns - vm_first.steal_ns) / (
            2 * (last.monotonic_ns - first.monotonic_ns)
        )
        assert steal == pytest.approx(0.25, abs=0.02)

    _run(scenario)


@pytest.mark.parametrize(
    ("command", "ok", "error", "applied"),
    [
        pytest.param(pb.Command(id="p", ping=pb.Ping(sent_unix_ns=1)), True, "", 0, id="ping"),
        pytest.param(
            pb.Command(id="s", set_migration_speed=pb.SetMigrationSpeed(bandwidth_mib_s=250)),
            True,
            "",
            250,
            id="set-speed",
        ),
        pytest.param(
            pb.Command(
                id="u",
                set_migration_speed=pb.SetMigrationSpeed(
                    instance_uuid="00000000-0000-0000-0000-000000000000", bandwidth_mib_s=5
                ),
            ),
            False,
            "unknown domain",
            0,
            id="unknown-domain",
        ),
        pytest.param(pb.Command(id="e"), False, "unknown command", 0, id="empty-command"),
    ],
)
def test_commands_get_one_reply_each(
    command: pb.Command, ok: bool, error: str, applied: int
) -> None:
    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        daemon = _daemon(server.address)
        [vm] = _sim(daemon).vms
        if (
            command.HasField("set_migration_speed")
            and not command.set_migration_speed.instance_uuid
        ):
            command.set_migration_speed.instance_uuid = vm.instance_uuid

        async def body() -> None:
            await server.wait_for(lambda r: r.registers)
            result = await server.command(command)
            assert (result.ok, result.error, result.applied_bandwidth_mib_s) == (
                ok,
                error,
                applied,
            )
            # The agent is still alive and reporting after any reply.
            count = len(server.received.reports)
            await server.wait_for(lambda r: len(r.reports) > count)

        await _with_agent(daemon, body)
        await server.stop()
        if applied:
            assert vm.max_speed_mib_s == applied

    _run(scenario)


def test_buffers_while_coordinator_is_down_and_replays_newest() -> None:
    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        daemon = _daemon(server.address, buffer_reports=3)
        crash = {"seq": 0}

        async def body() -> None:
            await server.wait_for(lambda r: len(r.reports) >= 2)
            await server.stop()  # the coordinator crashes
            crash["seq"] = seq_at_crash = daemon.seq
            while daemon.seq < seq_at_crash + 8:  # 8 cycles collected while down
                await asyncio.sleep(0.05)
            assert len(daemon.buffer) == 3 and daemon.buffer.dropped >= 5
            sent_before = len(server.received.reports)
            await server.start()  # same port
            await server.wait_for(lambda r: any(x.replayed for x in r.reports[sent_before:]))
            await server.wait_for(lambda r: len(r.registers) == 2)

        await _with_agent(daemon, body)
        await server.stop()
        reports = server.received.reports
        seqs = [r.seq for r in reports]
        assert seqs == sorted(set(seqs)), "no duplicates, never out of order"
        replayed = [r for r in reports if r.replayed and r.seq > crash["seq"]]
        assert 1 <= len(replayed) <= 3, "at most the buffer's capacity comes back"
        assert all(r.dropped_reports >= 5 for r in replayed)
        gap = set(range(seqs[0], seqs[-1] + 1)) - set(seqs)
        assert len(gap) == daemon.buffer.dropped, "every missing report is counted as dropped"
        assert daemon.metrics.send_failures._value.get() >= 1
        assert daemon.stream.sessions == 2

    _run(scenario)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(SourceError("/proc/meminfo: [Errno 5] Input/output error"), id="register"),
        pytest.param(RuntimeError("an error nobody foresaw"), id="unexpected"),
    ],
)
def test_a_session_failing_with_any_error_is_retried(error: Exception) -> None:
    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        daemon = _daemon(server.address)
        register = daemon.stream._register
        attempts: list[int] = []

        def flaky() -> pb.AgentMessage:
            attempts.append(1)
            if len(attempts) == 1:
                raise error
            return register()

        daemon.stream._register = flaky

        async def body() -> None:
            await server.wait_for(lambda r: r.reports)

        with capture_logs() as logs:
            await _with_agent(daemon, body)
        await server.stop()
        assert len(attempts) == 2 and daemon.stream.sessions == 1
        assert daemon.metrics.send_failures._value.get() == 1
        [failed] = [entry for entry in logs if entry["event"] == "stream failed"]
        assert failed["exc_info"] is True and failed["error"] == str(error)

    _run(scenario)


def test_reconnects_with_backoff_when_coordinator_never_answers() -> None:
    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        address = server.address
        await server.stop()  # nothing listens on that port now
        daemon = _daemon(address, buffer_reports=2)

        async def body() -> None:
            await asyncio.sleep(1.0)

        await _with_agent(daemon, body)
        failures = daemon.metrics.send_failures._value.get()
        # Backoff 0.05 → 0.2 s (half fixed, half jitter): 5..20 attempts in 1 s.
        assert 4 <= failures <= 25
        assert len(daemon.buffer) == 2 and daemon.buffer.dropped >= 5
        assert daemon.metrics.buffer_drops._value.get() == daemon.buffer.dropped

    _run(scenario)


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        pytest.param(0, 0.5, 1.0, id="first"),
        pytest.param(3, 4.0, 8.0, id="grows"),
        pytest.param(10, 30.0, 60.0, id="capped"),
        pytest.param(10_000, 30.0, 60.0, id="no-overflow"),
    ],
)
def test_backoff_is_exponential_with_bounded_jitter(attempt: int, low: float, high: float) -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0)
    assert backoff.delay(attempt, lambda: 0.0) == low
    assert backoff.delay(attempt, lambda: 1.0) == high


@given(capacity=st.integers(1, 20), pushes=st.integers(0, 60))
def test_buffer_keeps_newest_and_counts_every_drop(capacity: int, pushes: int) -> None:
    buffer = ReportBuffer(capacity)
    for seq in range(pushes):
        buffer.push(pb.HostReport(seq=seq), online=False)
    assert len(buffer) == min(capacity, pushes)
    assert buffer.dropped == max(0, pushes - capacity)
    kept = [item.report.seq for item in buffer._items]
    assert kept == list(range(max(0, pushes - capacity), pushes))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")  # fmt: skip
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cmp-7",
             "-keyout", f"{d}/rogue.key", "-out", f"{d}/rogue.pem")  # fmt: skip
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:cmp-7")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem",
                 "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem")  # fmt: skip
    return d


@pytest.mark.parametrize(
    ("client_cert", "registers"),
    [pytest.param(True, True, id="mtls"), pytest.param(False, False, id="client-cert-not-from-ca")],
)
def test_mtls(pki: Path, client_cert: bool, registers: bool) -> None:
    async def scenario() -> None:
        server = LinkServer()
        creds = grpc.ssl_server_credentials(
            [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
            root_certificates=(pki / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        await server.start(creds)
        # A self-signed client certificate the CA never signed must be refused.
        cert = "client" if client_cert else "rogue"
        tls = {"ca": str(pki / "ca.pem"), "cert": str(pki / f"{cert}.pem"),
               "key": str(pki / f"{cert}.key")}  # fmt: skip
        daemon = _daemon(server.address, coordinator={"address": server.address, **tls})

        async def body() -> None:
            if registers:
                await server.wait_for(lambda r: r.reports)
            else:
                await asyncio.sleep(1.0)

        await _with_agent(daemon, body)
        await server.stop()
        assert bool(server.received.registers) is registers
        if not registers:
            assert daemon.metrics.send_failures._value.get() >= 1

    _run(scenario)


def test_metrics_endpoint_and_systemd_notify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import urllib.request

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))

    async def scenario() -> None:
        server = LinkServer()
        await server.start()
        daemon = _daemon(server.address)
        port = daemon.metrics.serve(0)

        async def body() -> None:
            await server.wait_for(lambda r: len(r.reports) >= 2)

        await _with_agent(daemon, body)
        await server.stop()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        assert "stealbalancer_agent_domains 1.0" in text
        assert "stealbalancer_agent_collection_seconds_count" in text
        assert "stealbalancer_agent_send_failures_total 0.0" in text
        assert "stealbalancer_agent_buffer_drops_total 0.0" in text

    try:
        _run(scenario)
        # Ready once; watchdog pings come from their own timer (tests/agent/test_daemon.py).
        assert notify.recv(64) == b"READY=1"
    finally:
        notify.close()
