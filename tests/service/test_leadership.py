"""Only the leader plans and acts; a follower keeps its model warm."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.model import Bookkeeping, ClusterSnapshot, Move
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


def _observing_then(running: Running, after_join: Callable[[], None]) -> None:
    """Run `after_join` right after each of the controller's joins (seconds at scale)."""
    controller = running.coordinator.controller
    observe = controller._observe

    def observe_then(now: float, books: Bookkeeping) -> ClusterSnapshot:
        snap = observe(now, books)
        after_join()
        return snap

    controller._observe = observe_then


def test_a_lease_lost_during_a_tick_stops_that_tick_acting(tmp_path: Path) -> None:
    """Leadership is asked before every admission and step, not once per tick: the
    renew deadline passing during the join leaves the hot VM where it is."""

    async def scenario() -> None:
        nova = sim_nova()
        leadership = SwitchableLeadership(leading=True)
        async with reporting_service(tmp_path, nova, leadership) as (running, _stub):

            def lose() -> None:
                leadership.leading = False

            _observing_then(running, lose)
            tick = await running.coordinator.tick()
            assert tick is not None and tick.plan is not None and tick.plan.moves
            assert tick.started == ()
            assert nova.live_migrate_calls == []
            assert running.coordinator.journal.open_migrations() == []

    run(scenario())


def test_shutdown_waits_for_the_tick_thread_before_the_lease_is_handed_over(
    tmp_path: Path,
) -> None:
    """Cancelling the task that awaits a tick does not stop its thread: stop() returns
    (and serve releases the lease) only once that tick is over, and nothing is
    journaled after it returned."""

    async def scenario() -> None:
        nova = sim_nova()
        leadership = SwitchableLeadership(leading=True)
        async with reporting_service(tmp_path, nova, leadership) as (running, _stub):
            _observing_then(running, lambda: time.sleep(2.0))  # a slow join

            async def ticking() -> None:  # as the service's loop task awaits its ticks
                await running.coordinator.tick()

            running.tasks.append(asyncio.ensure_future(ticking()))
            await asyncio.sleep(0.3)  # the tick is in its thread, joining
            assert await running.stop()
            journal = running.coordinator.journal
            at_release = [(r.id, r.state, r.updated_at) for r in journal.history()]
            await asyncio.sleep(2.5)
            assert [(r.id, r.state, r.updated_at) for r in journal.history()] == at_release
            assert (await running.coordinator.tick()) is not None  # answers, acts no more
            assert [(r.id, r.state, r.updated_at) for r in journal.history()] == at_release

    run(scenario())
