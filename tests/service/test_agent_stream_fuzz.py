"""Fuzzing the agent stream (hypothesis): one agent sends random and hostile
HostReports over real gRPC; the coordinator keeps folding another agent's reports and
never plans a move of a VM on the strength of telemetry from the wrong host."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import agent_pb2
from coordinator.policy import plan
from coordinator.service.main import Running, start
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import service_config, until

T = TypeVar("T")
HOSTS = {"hv-a": "az1", "hv-b": "az1", "hv-c": "az1"}
VICTIMS = ("vm-b1", "vm-b2")  # Nova places them on hv-b

U64 = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=10**13)
samples = st.builds(
    agent_pb2.VmSample,
    instance_uuid=st.one_of(st.sampled_from([*VICTIMS, "ghost"]), st.text(max_size=40)),
    name=st.text(max_size=30),
    domain_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    vcpus=st.integers(0, 2**32 - 1) | st.integers(0, 8),
    cpu_time_ns=SMALL | U64,
    steal_ns=SMALL | U64,
    load_source=st.sampled_from([agent_pb2.LOAD_SOURCE_GUEST_AGENT,
                                 agent_pb2.LOAD_SOURCE_HOST_ESTIMATE]),
    guest_load_1m=st.floats(allow_nan=True, allow_infinity=True),
    memory_bytes=U64,
)  # fmt: skip


@st.composite
def claims(draw: st.DrawFn) -> list[agent_pb2.HostReport]:
    """A hostile burst: random reports, and a run of well-formed ones claiming the
    victims are starving (50% steal, busy) so the claim is foldable into rates."""
    noise = draw(st.lists(st.builds(agent_pb2.HostReport, seq=U64, monotonic_ns=SMALL | U64,
                                    vms=st.lists(samples, max_size=5)), max_size=4))  # fmt: skip
    rounds = draw(st.integers(2, 5))
    start_ns = draw(st.integers(1, 10**12))
    claim = [
        agent_pb2.HostReport(
            seq=2**40 + n, monotonic_ns=start_ns + n * 10**10,
            vms=[agent_pb2.VmSample(instance_uuid=v, vcpus=2, domain_id=1,
                                    cpu_time_ns=n * 10**10, steal_ns=n * 10**10)
                 for v in VICTIMS],
        )
        for n in range(rounds)
    ]  # fmt: skip
    return draw(st.permutations(noise + claim))


class _Loop:
    """An event loop in a thread, so one real service serves every hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _World:
    def __init__(self, tmp: Path) -> None:
        self.loop = _Loop()
        nova = SimCompute(clock=time.time)
        for host, az in HOSTS.items():
            nova.add_hypervisor(host, az)
        for vm in VICTIMS:
            nova.add_server(vm, "hv-b", name=vm)
        self.config = service_config(tmp)
        self.running: Running = self.loop.run(start(self.config, nova))
        target = f"127.0.0.1:{self.running.agent_port}"
        self.honest = {h: FakeAgent(target, h) for h in ("hv-b", "hv-c")}
        for vm in VICTIMS:
            self.honest["hv-b"].vms[vm] = FakeVm(vm, steal=0.0, busy=0.5)
        for agent in self.honest.values():
            self.loop.run(agent.connect())
        self.hostile = FakeAgent(target, "hv-a")

    async def honest_round(self) -> None:
        hub = self.running.coordinator.agents
        before = hub.host_telemetry("hv-b")
        for agent in self.honest.values():
            await agent.report()
        await until(lambda: hub.host_telemetry("hv-b") is not before, timeout_s=10)

    async def hostile_burst(self, burst: list[agent_pb2.HostReport]) -> None:
        try:
            await self.hostile.connect(timeout_s=5)
        except Exception:  # refused is fine: the point is what the coordinator does
            return
        for report in burst:
            await self.hostile.send(agent_pb2.AgentMessage(report=report))
        # Half-close and wait for the coordinator to end the call: it has then read
        # (and folded or rejected) every report of the burst.
        await self.hostile._outbox.put(None)
        with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
            await asyncio.wait_for(self.hostile._call.code(), 10)
        await self.hostile.close()

    def stop(self) -> None:
        for agent in self.honest.values():
            self.loop.run(agent.close())
        self.loop.run(self.running.stop())
        self.running.coordinator.journal.close()
        self.loop.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_World]:
    world = _World(tmp_path_factory.mktemp("fuzz"))
    try:
        world.loop.run(world.honest_round())
        yield world
    finally:
        world.stop()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(burst=claims())
def test_hostile_reports_never_steer_a_move_nor_stop_other_agents(
    world: _World, burst: list[agent_pb2.HostReport]
) -> None:
    world.loop.run(world.hostile_burst(burst))
    world.loop.run(world.honest_round())  # the honest agent is still heard
    snap = world.running.coordinator.snapshot()
    for uuid in VICTIMS:
        vm = snap.vms[uuid]
        assert vm.host == "hv-b" and vm.reported_by_agent
        # hv-b's measurement (calm), whatever hv-a claimed.
        assert math.isfinite(vm.metrics.steal) and vm.metrics.steal < 0.01
    assert plan(snap, world.config).moves == ()
    tick = world.loop.run(world.running.coordinator.tick())
    assert tick is not None and tick.started == ()
