"""Admin reads run off the event loop: the agents' streams share that loop, and a read
can be slow (a snapshot takes seconds at 400,000 VMs) or hang (a networked journal
until its timeout). An operator's `coordctl status` must not stall them."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2
from coordinator.model import ClusterSnapshot
from tests.service.fake_agent import FakeVm
from tests.service.harness import admin, agents_for, report_all, service, service_config, until

HELD_S = 10.0  # what a hung read would hold the loop for, were it on the loop


def _nova() -> SimCompute:
    nova = SimCompute(clock=time.time, migration_s=0.5)
    nova.add_hypervisor("host-a", "az1")
    nova.add_server("vm-1", "host-a", name="one")
    return nova


def test_agents_report_while_an_admin_read_hangs(tmp_path: Path) -> None:
    order: list[str] = []
    release = threading.Event()

    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            coordinator = running.coordinator
            real = coordinator.recent_snapshot  # what Status reads

            def hanging_snapshot() -> ClusterSnapshot:
                order.append("read started")
                order.append("read released" if release.wait(HELD_S) else "read timed out")
                return real()

            coordinator.recent_snapshot = hanging_snapshot  # type: ignore[method-assign]
            channel, stub = admin(running)
            async with channel:
                status = asyncio.ensure_future(stub.Status(admin_pb2.StatusRequest()))
                await until(lambda: "read started" in order)
                agents = await agents_for(running, {"host-a": "az1"})
                await report_all(agents, 2)
                await until(lambda: coordinator.agents.host_telemetry("host-a") is not None)
                order.append("agent reported")
                release.set()
                assert (await status).vms_total >= 0
                for agent in agents.values():
                    await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert order == ["read started", "agent reported", "read released"]


def test_concurrent_listings_each_get_their_own_pages(tmp_path: Path) -> None:
    """Two threads page at once: each listing answers from its own pinned sequence."""

    async def scenario() -> None:
        nova = _nova()
        for i in range(2, 40):
            nova.add_server(f"vm-{i}", "host-a", name=f"vm-{i:02d}")
        async with service(service_config(tmp_path), nova) as running:
            agents = await agents_for(running, {"host-a": "az1"})
            for uuid in nova.servers:
                agents["host-a"].vms[uuid] = FakeVm(uuid)
            await report_all(agents, 2)
            await running.coordinator.refresh_inventory()
            channel, stub = admin(running)
            async with channel:
                first = await asyncio.gather(
                    *(
                        stub.ListVms(admin_pb2.ListVmsRequest(page_size=7, sort_by="name"))
                        for _ in range(4)
                    )
                )
                for page in first:
                    names = [v.name for v in page.vms]
                    token = page.next_page_token
                    while token:
                        more = await stub.ListVms(
                            admin_pb2.ListVmsRequest(page_size=7, sort_by="name", page_token=token)
                        )
                        names += [v.name for v in more.vms]
                        token = more.next_page_token
                    assert names == sorted(names) and len(names) == page.total_size == 39
            for agent in agents.values():
                await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_read_that_raises_fails_its_call_only(tmp_path: Path) -> None:
    """An error nobody listed, raised inside a read thread, ends that one call with a
    status (not a hang) and leaves the read threads serving the next calls."""

    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            coordinator = running.coordinator
            real = coordinator.recent_snapshot  # what Status reads
            failures = iter([RuntimeError("journal vanished"), None])

            def flaky_snapshot() -> ClusterSnapshot:
                failure = next(failures, None)
                if failure is not None:
                    raise failure
                return real()

            coordinator.recent_snapshot = flaky_snapshot  # type: ignore[method-assign]
            channel, stub = admin(running)
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Status(admin_pb2.StatusRequest(), timeout=10)
                assert failed.value.code() is grpc.StatusCode.UNKNOWN
                for _ in range(3):  # both threads, and again
                    status = await stub.Status(admin_pb2.StatusRequest(), timeout=10)
                    assert status.hosts_total == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))
