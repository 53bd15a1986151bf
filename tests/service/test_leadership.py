"""Only the leader plans and acts; a follower keeps its model warm."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.model import Move
from coordinator.policy import plan_one
from coordinator.service.main import Running, start
from tests.service.harness import admin, agents_for, report_all, service_config
from tests.service.test_service import HOSTS, place, run, sim_nova


class SwitchableLeadership:
    """Stands in for the Lease elector: the test decides who leads."""

    identity = "replica-under-test"

    def __init__(self, leading: bool) -> None:
        self.leading = leading

    def is_leader(self) -> bool:
        return self.leading

    def run(self, stop: threading.Event) -> None:
        stop.wait()


@asynccontextmanager
async def reporting_service(
    tmp_path: Path, nova: SimCompute, leadership: SwitchableLeadership
) -> AsyncIterator[tuple[Running, admin_pb2_grpc.AdminStub]]:
    """A coordinator under `leadership`, with agents that reported a hot VM 4 times."""
    # Nothing here waits for a move to be verified: do not keep shutdown waiting either.
    config = service_config(tmp_path, workflow={"verify_timeout_s": 1.0})
    running = await start(config, nova, leadership=leadership)
    agents = await agents_for(running, HOSTS)
    channel, stub = admin(running)
    try:
        place(agents, nova)
        await report_all(agents, rounds=4)
        yield running, stub
    finally:
        await channel.close(None)
        for agent in agents.values():
            await agent.close()
        await running.stop()
        running.coordinator.journal.close()


def test_a_follower_neither_plans_nor_migrates_until_it_leads(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        leadership = SwitchableLeadership(leading=False)
        async with reporting_service(tmp_path, nova, leadership) as (running, stub):
            coordinator = running.coordinator
            tick = await coordinator.tick()
            assert tick is not None and tick.started == () and tick.plan is None
            status = await stub.Status(admin_pb2.StatusRequest())
            assert not status.leader and status.leader_identity == "replica-under-test"
            assert status.vms_contended == 2  # hot + the agent-only VM: the model is warm
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Migrate(admin_pb2.MigrateRequest(vm="hot"))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "not the leader" in (refused.value.details() or "")
            assert nova.live_migrate_calls == []

            leadership.leading = True
            tick = await coordinator.tick()  # recovery is no special round: it plans at once
            assert tick is not None
            (record,) = tick.started
            assert record.vm_uuid == "vm-hot"
            assert (await stub.Status(admin_pb2.StatusRequest())).leader

    run(scenario())


def test_status_counts_admitted_but_not_started_migrations_as_queued(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        # A follower: it admits nothing itself and runs nothing it finds in the journal.
        leadership = SwitchableLeadership(leading=False)
        async with reporting_service(tmp_path, nova, leadership) as (running, stub):
            coordinator = running.coordinator
            move = plan_one(coordinator.snapshot(), coordinator.config, "vm-hot")
            assert isinstance(move, Move), move
            coordinator.controller.admit(move, coordinator.clock.now(), manual=True)  # not run
            status = await stub.Status(admin_pb2.StatusRequest())
            assert (status.migrations_queued, status.migrations_running) == (1, 0)

    run(scenario())
