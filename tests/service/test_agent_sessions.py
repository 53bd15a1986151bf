"""Agent sessions: a dropped stream frees its host, a newer stream replaces an older
one, and a second coordinator cannot share the ports (real gRPC, real processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import agent_pb2, agent_pb2_grpc
from coordinator.service.main import Running
from tests.ctl.coordinator_process import HERE as CTL_TESTS
from tests.polling import eventually
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import service, service_config, until

REGISTER = agent_pb2.AgentMessage(register=agent_pb2.Register(host="host-a", pcpus=8))


def _nova() -> SimCompute:
    nova = SimCompute(clock=time.time)
    nova.add_hypervisor("host-a", "az1")
    return nova


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]  # a coroutine


async def _register_and_drop(running: Running, wait_s: float) -> None:
    """Send Register and hang up without waiting for the ack."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.agent_port}")

    async def messages() -> AsyncIterator[agent_pb2.AgentMessage]:
        yield REGISTER
        await asyncio.sleep(3600)

    call = agent_pb2_grpc.AgentLinkStub(channel).Connect(messages())
    await asyncio.sleep(wait_s)
    call.cancel()
    await channel.close(None)


def test_an_agent_that_drops_right_after_register_leaves_no_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            hub = running.coordinator.agents
            # Drops at different moments around Register and its ack.
            for attempt in range(12):
                await _register_and_drop(running, wait_s=attempt * 0.002)
                await until(lambda: "host-a" not in hub.connected(), timeout_s=5)
            assert running.coordinator.metrics.agents._value.get() == 0
            agent = FakeAgent(f"127.0.0.1:{running.agent_port}", "host-a")
            await agent.connect()
            assert hub.connected() == ["host-a"]
            await agent.close()

    run(scenario())


class _DropsAtAck:
    """A servicer context whose peer is gone by the time the ack is written (gRPC then
    cancels the handler): the one moment a real client cannot hit on demand."""

    async def read(self) -> agent_pb2.AgentMessage:
        return REGISTER

    async def write(self, message: agent_pb2.CoordinatorMessage) -> None:
        raise asyncio.CancelledError

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


def test_a_stream_cancelled_while_the_ack_is_written_frees_its_host(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            hub = running.coordinator.agents
            with pytest.raises(asyncio.CancelledError):
                await hub.Connect(None, _DropsAtAck())  # type: ignore[arg-type]  # a stand-in context
            assert hub.connected() == []
            agent = FakeAgent(f"127.0.0.1:{running.agent_port}", "host-a")
            await agent.connect()
            assert hub.connected() == ["host-a"]
            await agent.close()

    run(scenario())


def test_a_newer_stream_from_the_same_host_replaces_the_old_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            hub = running.coordinator.agents
            target = f"127.0.0.1:{running.agent_port}"
            # The old stream: a host that rebooted without closing it.
            old = FakeAgent(target, "host-a", vms={"vm-1": FakeVm("vm-1", steal=0.3)})
            await old.connect()
            new = FakeAgent(target, "host-a", vms={"vm-2": FakeVm("vm-2")})
            await new.connect()  # not ALREADY_EXISTS
            assert await asyncio.wait_for(old._call.code(), 5) == grpc.StatusCode.ABORTED
            await new.report()
            await until(lambda: (t := hub.host_telemetry("host-a")) is not None
                        and set(t.vms) == {"vm-2"}, timeout_s=5)  # fmt: skip
            assert hub.connected() == ["host-a"]
            assert running.coordinator.metrics.rejected_count("replaced_stream") == 1
            # The old session's cleanup must not unregister its replacement.
            await old.close()
            await asyncio.sleep(0.2)
            assert hub.connected() == ["host-a"]
            await new.close()

    run(scenario())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(config: Path, journal: Path, out: Path) -> subprocess.Popen[str]:
    # Output to files: the first process keeps logging, and no pipe may fill and block it.
    with out.open("w") as sink, out.with_suffix(".err").open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "serve", "--simulate", "--config",
             str(config), "--scenario", str(CTL_TESTS / "scenario.yaml"), "--journal",
             str(journal)],
            stdout=sink, stderr=errors, text=True,
        )  # fmt: skip


def _write_config(path: Path, ports: dict[str, int]) -> Path:
    path.write_text("service:\n" + "".join(f"  {k}: 127.0.0.1:{p}\n" for k, p in ports.items()))
    return path


@pytest.mark.parametrize("shared", ["agent_listen", "admin_listen", "metrics_listen"])
def test_a_second_coordinator_on_the_same_port_exits_with_one_line(
    tmp_path: Path, shared: str
) -> None:
    ports = {key: _free_port() for key in ("agent_listen", "admin_listen", "metrics_listen")}
    first_cfg = _write_config(tmp_path / "first.yaml", ports)
    others = {k: (p if k == shared else 0) for k, p in ports.items()}
    second_cfg = _write_config(tmp_path / "second.yaml", others)
    first = _serve(first_cfg, tmp_path / "first.sqlite", tmp_path / "first.out")
    try:
        eventually(lambda: "LISTENING" in (tmp_path / "first.out").read_text(), timeout_s=60)
        second = _serve(second_cfg, tmp_path / "second.sqlite", tmp_path / "second.out")
        second.wait(timeout=60)
        err = (tmp_path / "second.err").read_text()
        assert second.returncode == 2, err
        ours = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(ours) == 1, err
        assert f"service.{shared}: cannot listen on 127.0.0.1:{ports[shared]}" in ours[0]
    finally:
        first.terminate()
        first.wait(timeout=30)
