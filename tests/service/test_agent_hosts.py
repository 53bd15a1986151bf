"""Which hosts the coordinator keeps anything of: none before Nova's inventory can vouch
for them, and nothing, past a horizon, of hosts no agent stream serves (real gRPC
server, scripted agents, the simulated Nova)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.errors import ComputeUnavailable
from coordinator.service.main import Running
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import agents_for, report_all, service, service_config, until


def _nova(*hosts: str) -> SimCompute:
    nova = SimCompute(clock=time.time)
    for host in hosts:
        nova.add_hypervisor(host, "az1")
    return nova


def _age(running: Running, host: str) -> float | None:
    return running.coordinator.metrics.registry.get_sample_value(
        "stealbalancer_agent_last_report_age_seconds", {"host": host}
    )


async def _refused(running: Running, host: str) -> grpc.StatusCode:
    agent = FakeAgent(f"127.0.0.1:{running.agent_port}", host)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await agent.connect()
    await agent.close()
    return refused.value.code()


def test_no_host_is_admitted_before_novas_inventory_loads(tmp_path: Path) -> None:
    """Nova down at start: no listing to check a name against, so every registration is
    refused (UNAVAILABLE: the agent retries) instead of keeping a fold, telemetry and a
    metric series for any name a client makes up."""

    async def scenario() -> None:
        nova = _nova("hv-a")
        nova.failing = ComputeUnavailable("nova down")
        async with service(service_config(tmp_path), nova) as running:
            c = running.coordinator
            for host in ("hv-a", "phantom-1", "phantom-2"):
                assert await _refused(running, host) == grpc.StatusCode.UNAVAILABLE
            assert c.metrics.rejected_count("inventory_not_loaded") == 3
            assert c.agents.telemetry() == {} and c.agents.report_ages() == {}
            nova.failing = None
            await c.refresh_inventory()
            assert await _refused(running, "phantom-1") == grpc.StatusCode.PERMISSION_DENIED
            agents = await agents_for(running, {"hv-a": "az1"})
            await report_all(agents, rounds=1)
            await until(lambda: set(c.agents.telemetry()) == {"hv-a"}, timeout_s=10)
            await agents["hv-a"].close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_host_nova_stopped_listing_is_dropped_once_its_agent_is_gone(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = _nova("hv-a", "hv-old")
        async with service(service_config(tmp_path), nova) as running:
            c = running.coordinator
            agents = await agents_for(running, {"hv-a": "az1", "hv-old": "az1"})
            agents["hv-a"].vms["vm-a"] = FakeVm("vm-a")
            agents["hv-old"].vms = {f"vm-{i}": FakeVm(f"vm-{i}") for i in range(5)}
            await report_all(agents, rounds=2)
            await until(lambda: c.agents.tracked_vms() == 6, timeout_s=10)
            del nova.hypervisors["hv-old"]  # decommissioned
            await c.refresh_inventory()
            # Still connected: the stream serves it, its next report is judged as it comes.
            assert "hv-old" in c.agents.telemetry()
            await agents["hv-old"].close()
            await until(lambda: "hv-old" not in c.agents.connected(), timeout_s=10)
            await c.refresh_inventory()
            assert set(c.agents.telemetry()) == {"hv-a"}
            assert c.agents.tracked_vms() == 1
            assert _age(running, "hv-old") is None  # its metric series is gone too
            assert "hv-old" not in c.snapshot().hosts
            await agents["hv-a"].close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_silent_hosts_counter_state_expires_after_the_vm_horizon(tmp_path: Path) -> None:
    """A listed host silent for longer than VMs are remembered (telemetry_forget_reports
    agent intervals: here 0.5 s) loses its counter state; its telemetry stays, so its
    report age (the agent-stale alert) keeps growing."""

    async def scenario() -> None:
        config = service_config(
            tmp_path, service={"telemetry_forget_reports": 1, "agent_interval_s": 0.5}
        )
        async with service(config, _nova("hv-a", "hv-b")) as running:
            c = running.coordinator
            agents = await agents_for(running, {"hv-a": "az1", "hv-b": "az1"})
            agents["hv-a"].vms = {f"vm-{i}": FakeVm(f"vm-{i}") for i in range(3)}
            agents["hv-b"].vms["vm-b"] = FakeVm("vm-b")
            await report_all(agents, rounds=2)
            await until(lambda: c.agents.tracked_vms() == 4, timeout_s=10)
            await agents["hv-a"].close()
            await asyncio.sleep(0.7)
            await c.refresh_inventory()
            assert c.agents.tracked_vms() == 1  # hv-b's stream is up: kept
            assert set(c.agents.telemetry()) == {"hv-a", "hv-b"}
            age = _age(running, "hv-a")
            assert age is not None and age >= 0.7
            await agents["hv-b"].close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
