"""The order `serve` opens its ports in: the admin port first, the agent port only once
Nova's inventory has loaded (until then every agent would be refused, and a fleet
reconnecting to a restarted coordinator would be turned away once for nothing)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.ports import HypervisorInfo
from coordinator.service.main import start
from coordinator.service.metrics import Metrics
from tests.service.failover import free_port
from tests.service.fake_agent import FakeAgent
from tests.service.harness import service_config


class SlowNova(SimCompute):
    """Nova whose hypervisor listing waits until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__(clock=time.time)
        self.add_hypervisor("hv-a", "az1")
        self.listing = threading.Event()  # a listing has begun
        self.answer = threading.Event()  # the test lets it return

    def list_hypervisors(self) -> list[HypervisorInfo]:
        self.listing.set()
        self.answer.wait(timeout=30)
        return super().list_hypervisors()


async def _admin_status(port: int) -> admin_pb2.StatusResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        response: admin_pb2.StatusResponse = await stub.Status(admin_pb2.StatusRequest(), timeout=5)
        return response


async def _agent_admitted(port: int, timeout_s: float) -> bool:
    agent = FakeAgent(f"127.0.0.1:{port}", "hv-a")
    try:
        await agent.connect(timeout_s=timeout_s)
    except (grpc.aio.AioRpcError, TimeoutError):
        return False
    finally:
        await agent.close()
    return True


def test_the_agent_port_opens_only_after_the_inventory_loaded(tmp_path: Path) -> None:
    """While Nova is slow to list: the admin port answers, and an agent is not served at
    all (the old order served it, only to refuse it as `inventory_not_loaded`)."""
    agent_port, admin_port = free_port(), free_port()
    listen = {"agent_listen": f"127.0.0.1:{agent_port}", "admin_listen": f"127.0.0.1:{admin_port}"}
    config = service_config(tmp_path, service=listen)
    nova, metrics = SlowNova(), Metrics()

    async def scenario() -> None:
        starting = asyncio.ensure_future(start(config, nova, metrics=metrics))
        try:
            assert await asyncio.to_thread(nova.listing.wait, 10)
            status = await _admin_status(admin_port)
            assert status.hosts_total == 0  # answered before the inventory
            assert not await _agent_admitted(agent_port, timeout_s=1)
            assert metrics.rejected_count("inventory_not_loaded") == 0
            assert not starting.done()
        finally:
            nova.answer.set()
        running = await starting
        try:
            assert await _agent_admitted(agent_port, timeout_s=5)
            assert metrics.rejected_count("inventory_not_loaded") == 0
        finally:
            await running.stop()
            running.coordinator.journal.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
