"""A scripted agent over real gRPC (the generated stubs), for service tests.

It registers, sends HostReports whose cumulative counters grow by the steal and busy
ratios the test sets per VM, and answers SetMigrationSpeed commands (recording them).
Time is the test's: each `report(dt_s)` advances the agent's monotonic clock by dt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from coordinator.api.v1 import agent_pb2, agent_pb2_grpc


@dataclass
class FakeVm:
    uuid: str
    vcpus: int = 2
    steal: float = 0.0  # share of each vCPU's time stolen
    busy: float = 0.2  # share of each vCPU's time run
    cpu_ns: int = 0
    steal_ns: int = 0
    domain_id: int = 1


@dataclass
class FakeAgent:
    target: str
    host: str
    az: str = "az1"
    credentials: grpc.ChannelCredentials | None = None
    vms: dict[str, FakeVm] = field(default_factory=dict)
    caps: list[tuple[str, int]] = field(default_factory=list)
    monotonic_ns: int = 1_000_000_000
    seq: int = 0
    refuse_caps: bool = False

    async def connect(self, timeout_s: float = 10.0) -> agent_pb2.RegisterAck:
        if self.credentials is not None:
            self._channel = grpc.aio.secure_channel(self.target, self.credentials)
        else:
            self._channel = grpc.aio.insecure_channel(self.target)
        self._outbox: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue()
        stub = agent_pb2_grpc.AgentLinkStub(self._channel)
        self._call = stub.Connect(self._messages())
        register = agent_pb2.Register(
            host=self.host, availability_zone=self.az, pcpus=64, memory_bytes=256 << 30,
            agent_version="test", report_interval_s=10, boot_id="boot",
        )  # fmt: skip
        await self.send(agent_pb2.AgentMessage(register=register))
        first = await asyncio.wait_for(self._call.read(), timeout_s)
        if first is grpc.aio.EOF:  # type: ignore[attr-defined]  # missing from grpc-stubs
            raise ConnectionError("stream closed")
        self._reader = asyncio.ensure_future(self._read())
        ack: agent_pb2.RegisterAck = first.register_ack
        return ack

    async def _messages(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            yield message

    async def send(self, message: agent_pb2.AgentMessage) -> None:
        await self._outbox.put(message)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._call.read()
            except grpc.aio.AioRpcError:
                return  # the coordinator went away; the test sees it elsewhere
            if message is grpc.aio.EOF:  # type: ignore[attr-defined]  # missing from grpc-stubs
                return
            if message.HasField("command") and message.command.HasField("set_migration_speed"):
                await self._answer(message.command)

    async def _answer(self, command: agent_pb2.Command) -> None:
        speed = command.set_migration_speed
        ok = speed.instance_uuid in self.vms and not self.refuse_caps
        if ok:
            self.caps.append((speed.instance_uuid, speed.bandwidth_mib_s))
        result = agent_pb2.CommandResult(
            command_id=command.id, ok=ok, error="" if ok else "unknown domain",
            applied_bandwidth_mib_s=speed.bandwidth_mib_s if ok else 0,
        )  # fmt: skip
        await self.send(agent_pb2.AgentMessage(command_result=result))

    def report_message(self, dt_s: float) -> agent_pb2.AgentMessage:
        dt_ns = int(dt_s * 1e9)
        self.monotonic_ns += dt_ns
        self.seq += 1
        samples = []
        for vm in self.vms.values():
            vm.cpu_ns += int(vm.busy * vm.vcpus * dt_ns)
            vm.steal_ns += int(vm.steal * vm.vcpus * dt_ns)
            samples.append(
                agent_pb2.VmSample(
                    instance_uuid=vm.uuid, name=vm.uuid[:8], domain_id=vm.domain_id,
                    vcpus=vm.vcpus, cpu_time_ns=vm.cpu_ns, steal_ns=vm.steal_ns,
                    steal_source=agent_pb2.STEAL_SOURCE_SIMULATED,
                    load_source=agent_pb2.LOAD_SOURCE_HOST_ESTIMATE,
                    memory_bytes=512 << 20,
                )
            )  # fmt: skip
        report = agent_pb2.HostReport(seq=self.seq, monotonic_ns=self.monotonic_ns, vms=samples)
        return agent_pb2.AgentMessage(report=report)

    async def report(self, dt_s: float = 10.0) -> None:
        await self.send(self.report_message(dt_s))

    async def close(self) -> None:
        await self._outbox.put(None)
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.cancel()
        await self._channel.close(None)
