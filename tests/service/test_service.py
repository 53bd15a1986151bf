"""The coordinator service over real gRPC on loopback, with the simulated Nova."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2, agent_pb2, agent_pb2_grpc
from coordinator.journal import State
from coordinator.service.main import Running
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import (
    admin,
    agents_for,
    report_all,
    service,
    service_config,
    started,
    until,
    until_over,
)

HOSTS = {"host-a": "az1", "host-b": "az1", "host-c": "az1", "host-d": "az2"}


def sim_nova() -> SimCompute:
    nova = SimCompute(clock=time.time, migration_s=0.5)
    for host, az in HOSTS.items():
        nova.add_hypervisor(host, az)
    nova.add_server("vm-hot", "host-a", name="hot", metadata={"role": "web"})
    nova.add_server("vm-calm", "host-a", name="calm", metadata={"role": "db"})
    nova.add_server("vm-only-nova", "host-b", name="ghost")
    return nova


def place(agents: dict[str, FakeAgent], nova: SimCompute) -> None:
    """Agents report what Nova has on their host (plus one VM Nova does not know)."""
    for host, agent in agents.items():
        wanted = {s.uuid for s in nova.servers.values() if s.host == host and s.status == "ACTIVE"}
        wanted.discard("vm-only-nova")
        for uuid in wanted - agent.vms.keys():
            steal = 0.4 if uuid == "vm-hot" and host == "host-a" else 0.0
            agent.vms[uuid] = FakeVm(uuid, steal=steal, busy=0.5)
        for uuid in set(agent.vms) - wanted - {"vm-only-agent"}:
            del agent.vms[uuid]
    agents["host-b"].vms.setdefault("vm-only-agent", FakeVm("vm-only-agent", steal=0.5, busy=0.5))


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]  # a coroutine


def test_detects_caps_migrates_verifies_and_records(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        async with service(service_config(tmp_path), nova) as running:
            agents = await agents_for(running, HOSTS)
            place(agents, nova)
            await report_all(agents, rounds=4)
            (record,) = await started(running)
            assert (record.vm_uuid, record.source) == ("vm-hot", "host-a")
            assert record.target in {"host-b", "host-c"}

            async def follow() -> None:
                while True:
                    place(agents, nova)
                    await report_all(agents, rounds=1, dt_s=1.0)
                    await asyncio.sleep(0.1)

            follower = asyncio.ensure_future(follow())
            await until_over(running, record.id)
            follower.cancel()
            final = running.coordinator.journal.get(record.id)
            assert final is not None and final.state is State.DONE, final
            assert agents["host-a"].caps == [("vm-hot", int(record.bandwidth_mib_s))]
            assert nova.servers["vm-hot"].host == record.target
            assert nova.live_migrate_calls == [("vm-hot", record.target)]
            await _check_admin_views(running)
            for agent in agents.values():
                await agent.close()

    run(scenario())


async def _check_admin_views(running: Running) -> None:
    channel, stub = admin(running)
    vms = {v.uuid: v for v in (await stub.ListVms(admin_pb2.ListVmsRequest())).vms}
    assert not vms["vm-only-agent"].known_to_nova and vms["vm-only-agent"].reported_by_agent
    assert vms["vm-only-nova"].known_to_nova and not vms["vm-only-nova"].reported_by_agent
    assert vms["vm-hot"].role == "web"
    history = (await stub.ListMigrations(admin_pb2.ListMigrationsRequest())).migrations
    assert [m.state for m in history] == ["DONE"]
    explained = await stub.Explain(admin_pb2.ExplainRequest(vm="ghost"))
    assert "no agent reports" in " ".join(explained.reasons)
    status = await stub.Status(admin_pb2.StatusRequest())
    assert status.hosts_total == 4 and status.vms_total == 4
    await channel.close(None)


def test_agent_only_vm_is_never_migrated(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        async with service(service_config(tmp_path), nova) as running:
            agents = await agents_for(running, HOSTS)
            place(agents, nova)
            agents["host-a"].vms["vm-hot"].steal = 0.0
            await report_all(agents, rounds=4)
            assert await started(running) == ()
            channel, stub = admin(running)
            plan = await stub.PreviewPlan(admin_pb2.PreviewPlanRequest())
            assert [s.vm_uuid for s in plan.skipped] == ["vm-only-agent"]
            assert "not known to Nova" in plan.skipped[0].reason
            await channel.close(None)

    run(scenario())


def test_silent_host_is_neither_source_nor_target(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        config = service_config(tmp_path, policy={"freshness_s": 2.0})
        async with service(config, nova) as running:
            agents = await agents_for(running, {"host-a": "az1", "host-b": "az1"})
            place(agents, nova)
            await report_all(agents, rounds=4)
            await asyncio.sleep(2.2)  # host-b stays silent beyond freshness
            await report_all({"host-a": agents["host-a"]}, rounds=1)
            channel, stub = admin(running)
            plan = await stub.PreviewPlan(admin_pb2.PreviewPlanRequest())
            assert not plan.moves
            reasons = {s.vm_uuid: s.reason for s in plan.skipped}
            assert "no eligible target" in reasons["vm-hot"]
            assert "stale" in reasons["vm-hot"]
            await channel.close(None)

    run(scenario())


def test_manual_migrate_pause_resume_and_token(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        config = service_config(
            tmp_path,
            service={"admin_token": "s3cret", "start_paused": True},
            workflow={"verify_timeout_s": 0.5},  # the agents here do not follow Nova
        )
        async with service(config, nova) as running:
            agents = await agents_for(running, HOSTS)
            place(agents, nova)
            await report_all(agents, rounds=4)
            channel, stub = admin(running)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.Status(admin_pb2.StatusRequest())
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            auth = (("authorization", "Bearer s3cret"),)
            assert (await stub.Status(admin_pb2.StatusRequest(), metadata=auth)).paused
            assert await started(running) == ()  # paused: nothing automatic
            with pytest.raises(grpc.aio.AioRpcError) as paused:
                await stub.Migrate(admin_pb2.MigrateRequest(vm="calm", target_host="host-c"),
                                   metadata=auth)  # fmt: skip
            assert paused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "--force" in (paused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Migrate(admin_pb2.MigrateRequest(vm="calm", target_host="host-d",
                                                            force=True), metadata=auth)  # fmt: skip
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "AZ" in (refused.value.details() or "")
            forced = admin_pb2.MigrateRequest(vm="calm", target_host="host-c", force=True)
            moved = await stub.Migrate(forced, metadata=auth)
            assert moved.target == "host-c" and moved.migration_id
            await stub.Resume(admin_pb2.ResumeRequest(), metadata=auth)
            assert not running.coordinator.pause.paused
            await channel.close(None)

    run(scenario())


# -- hostile agents ------------------------------------------------------------------


async def _final_code(call: Any) -> grpc.StatusCode:
    """Read the stream to its end; the status the coordinator closed it with."""
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    final: grpc.StatusCode = await call.code()
    return final


async def _raw_stream(running: Running, *messages: agent_pb2.AgentMessage) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.agent_port}") as channel:
        call = agent_pb2_grpc.AgentLinkStub(channel).Connect(iter(messages) if messages else None)
        return await _final_code(call)


def test_hostile_streams_are_refused_and_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        async with service(service_config(tmp_path), nova) as running:
            metrics = running.coordinator.metrics
            agents = await agents_for(running, {"host-a": "az1"})
            unknown = agent_pb2.Register(host="host-zz", pcpus=8)
            denied = await _raw_stream(running, agent_pb2.AgentMessage(register=unknown))
            assert denied == grpc.StatusCode.PERMISSION_DENIED
            report_first = agent_pb2.AgentMessage(report=agent_pb2.HostReport(seq=1))
            assert await _raw_stream(running, report_first) == grpc.StatusCode.FAILED_PRECONDITION
            silent = await _silent_stream(running)
            assert silent == grpc.StatusCode.DEADLINE_EXCEEDED
            huge = agent_pb2.Register(host="host-b", pcpus=8, agent_version="x" * (5 << 20))
            big = await _raw_stream(running, agent_pb2.AgentMessage(register=huge))
            assert big == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Poisoned reports on the good stream: rejected, counted, the stream lives on.
            agent = agents["host-a"]
            agent.vms["vm-hot"] = FakeVm("vm-hot", steal=0.3, busy=0.5)
            await agent.report()
            nan = agent.report_message(10.0)
            nan.report.vms[0].load_source = agent_pb2.LOAD_SOURCE_GUEST_AGENT
            nan.report.vms[0].guest_load_1m = math.nan
            await agent.send(nan)
            zero = agent.report_message(10.0)
            zero.report.vms[0].vcpus = 0
            await agent.send(zero)
            await until(lambda: metrics.rejected_count("bad_vm") >= 1, timeout_s=5)
            for reason in ("unknown_host", "no_register", "register_timeout",
                           "bad_counter", "bad_vm"):  # fmt: skip
                assert metrics.rejected_count(reason) >= 1, reason
            await agent.report()
            await until(lambda: running.coordinator.agents.telemetry()["host-a"].vms != {})
            vm = running.coordinator.snapshot().vms["vm-hot"]
            assert 0 <= vm.metrics.steal <= 1 and math.isfinite(vm.metrics.load)
            await agent.close()

    run(scenario())


async def _silent_stream(running: Running) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.agent_port}") as channel:
        queue: asyncio.Queue[None] = asyncio.Queue()

        async def never() -> object:
            await queue.get()
            yield agent_pb2.AgentMessage()  # pragma: no cover

        call = agent_pb2_grpc.AgentLinkStub(channel).Connect(never())
        return await _final_code(call)


@pytest.mark.parametrize(
    ("steal_follows", "quarantined"),
    [
        pytest.param(False, False, id="steal-dropped"),
        pytest.param(True, True, id="steal-stayed-quarantine"),
    ],
)
def test_after_the_verify_window_the_effect_is_recorded(
    tmp_path: Path, steal_follows: bool, quarantined: bool
) -> None:
    async def scenario() -> None:
        nova = sim_nova()
        config = service_config(tmp_path, policy={"verify_window_s": 0.0})
        async with service(config, nova) as running:
            c = running.coordinator
            agents = await agents_for(running, HOSTS)
            place(agents, nova)
            await report_all(agents, rounds=4)
            (record,) = await started(running)

            async def follow() -> None:
                while True:
                    place(agents, nova)
                    if steal_follows and "vm-hot" in agents[record.target].vms:
                        agents[record.target].vms["vm-hot"].steal = 0.4
                    await report_all(agents, rounds=1, dt_s=1.0)
                    await asyncio.sleep(0.1)

            follower = asyncio.ensure_future(follow())
            await until_over(running, record.id)
            await asyncio.sleep(1.0)  # a few reports from the target
            # Telemetry counts from where Nova places the VM: the next inventory refresh.
            await c.refresh_inventory()
            await c.tick()
            follower.cancel()
            final = c.journal.get(record.id)
            assert final is not None and final.state is State.DONE
            assert final.steal_after >= 0
            assert (final.steal_after > 0.2) is steal_follows
            now = time.time()
            assert ("vm-hot" in c.journal.quarantined("vm", now)) is quarantined
            assert (record.target in c.journal.quarantined("host", now)) is quarantined
            snap = c.snapshot()
            assert (snap.vms["vm-hot"].quarantined_until > now) is quarantined
            for agent in agents.values():
                await agent.close()

    run(scenario())


def test_reports_at_a_long_agent_interval_still_give_rates(tmp_path: Path) -> None:
    """Readings one agent interval apart are never taken for a gap, whatever the interval."""

    async def scenario() -> None:
        nova = sim_nova()
        config = service_config(tmp_path, service={"agent_interval_s": 60.0})
        async with service(config, nova) as running:
            agents = await agents_for(running, HOSTS)
            place(agents, nova)
            await report_all(agents, rounds=3, dt_s=60.0)
            hot = running.coordinator.snapshot().vms["vm-hot"]
            assert hot.metrics.steal == pytest.approx(0.4)
            for agent in agents.values():
                await agent.close()

    run(scenario())
