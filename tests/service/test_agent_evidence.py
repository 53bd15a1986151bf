"""What an agent's reports may count as: a replayed report is not a measurement of now,
and no report rate sets the planning rate (real gRPC server, scripted agents, the
simulated Nova)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.model import Bookkeeping
from coordinator.policy import is_contended, plan
from coordinator.service.inventory import join
from coordinator.service.main import Running
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import agents_for, service, service_config, until

HOSTS = {"hv-src": "az1", "hv-dst": "az1"}


def _nova() -> SimCompute:
    nova = SimCompute(clock=time.time, migration_s=0.5)
    nova.add_hypervisor("hv-src", "az1", vcpus=8)
    nova.add_hypervisor("hv-dst", "az1", vcpus=16)
    for i in range(6):  # 12 vCPUs on 8 pCPUs
        nova.add_server(f"src-{i}", "hv-src", vcpus=2)
    return nova


def _count(running: Running, name: str) -> float:
    return running.coordinator.metrics.registry.get_sample_value(name) or 0.0


def _reports_folded(running: Running) -> float:
    return _count(running, "stealbalancer_agent_reports_total")


async def _send_and_wait(running: Running, agent: FakeAgent, replayed: bool = False) -> None:
    before = _reports_folded(running)
    message = agent.report_message(10.0)
    if replayed:  # buffered an hour ago while the stream was down, sent on reconnect
        message.report.replayed = True
        message.report.wall_time_unix_ns = int((time.time() - 3600) * 1e9)
    await agent.send(message)
    await until(lambda: _reports_folded(running) > before, timeout_s=10, step_s=0.01)


def test_replayed_reports_are_not_current_evidence(tmp_path: Path) -> None:
    """Four replayed reports of heavy steal (40 s of it, by the agent's clock) make no VM
    freshly measured or contended, start nothing, and cannot pass for evidence read after
    a migration left the host; their counters are the baseline the first live report's
    rate is taken against."""

    async def scenario() -> None:
        config = service_config(tmp_path)
        async with service(config, _nova()) as running:
            c = running.coordinator
            agents = await agents_for(running, HOSTS)
            src = agents["hv-src"]
            for i in range(6):
                src.vms[f"src-{i}"] = FakeVm(f"src-{i}", steal=0.4, busy=0.6)
            for _ in range(4):
                await _send_and_wait(running, src, replayed=True)
                await _send_and_wait(running, agents["hv-dst"])
            snap = c.snapshot()
            assert c.agents.host_telemetry("hv-src") is None  # no live report yet
            assert snap.hosts["hv-src"].last_report_at is None
            assert all(snap.vms[f"src-{i}"].metrics.sampled_at is None for i in range(6))
            books = Bookkeeping(departed_at={"hv-src": c.clock.now() - 60})
            now = c.clock.now()
            assert plan(join(now, c.inventory, c.agents.telemetry(), config.inventory, books),
                        config).moves == ()  # fmt: skip
            tick = await c.tick()
            assert tick is not None and tick.started == ()

            await _send_and_wait(running, src)  # the first live report
            vm = c.snapshot().vms["src-0"]
            # A rate at once, against the newest replayed counters: 10 s of streak.
            assert vm.metrics.sampled_at is not None
            assert vm.metrics.steal == pytest.approx(0.4, abs=0.01)
            assert vm.metrics.contended_s == pytest.approx(10.0)
            assert not is_contended(vm, config.policy)
            for agent in agents.values():
                await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def _ticks(running: Running) -> float:
    return _count(running, "stealbalancer_plan_seconds_count")


async def _flood(agent: FakeAgent, seconds: float) -> None:
    """Reports as fast as an agent can push them (20 a second), each of 10 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await agent.report(10.0)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("reported_vm", "most", "least"),
    [
        # plan_interval_s = 8: early rounds at least 2 s apart, so 4.5 s allow 1-3.
        pytest.param("vm-a", 3, 1, id="a-vm-nova-places-there-plans-early-within-bounds"),
        pytest.param("ghost", 0, 0, id="a-vm-nova-does-not-know-plans-nothing"),
        pytest.param("vm-b", 0, 0, id="a-vm-nova-places-elsewhere-plans-nothing"),
    ],
)
def test_no_agent_sets_the_planning_rate(
    tmp_path: Path, reported_vm: str, most: int, least: int
) -> None:
    async def scenario() -> float:
        nova = SimCompute(clock=time.time, migration_s=0.5)
        nova.add_hypervisor("hv-a", "az1")
        nova.add_hypervisor("hv-b", "az1")
        for i in range(300):  # a tick has work to do
            nova.add_server(f"vm-{i}", "hv-b")
        nova.add_server("vm-a", "hv-a")
        nova.add_server("vm-b", "hv-b")
        config = service_config(
            tmp_path,
            service={"plan_on_contention": True, "plan_interval_s": 8},
            workflow={"poll_s": 3600},
        )
        async with service(config, nova) as running:
            agent = (await agents_for(running, {"hv-a": "az1"}))["hv-a"]
            agent.vms[reported_vm] = FakeVm(reported_vm, steal=0.5, busy=0.5)
            before = _ticks(running)
            await _flood(agent, 4.5)
            await asyncio.sleep(0.3)  # let a tick under way finish
            ticks = _ticks(running) - before
            await agent.close()
            return ticks

    ticks = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert least <= ticks <= most, f"{ticks:.0f} planning ticks from ~90 reports"
