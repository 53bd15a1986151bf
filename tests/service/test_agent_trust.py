"""A hostile agent cannot steer migrations: telemetry for a VM counts only from the
host Nova places it on (real gRPC server, scripted agents, the simulated Nova)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import agent_pb2
from coordinator.config import Config
from coordinator.model import ClusterSnapshot
from coordinator.policy import plan
from coordinator.service.main import Running
from tests.service.fake_agent import FakeVm
from tests.service.harness import agents_for, report_all, service, service_config, until

HOSTS = {"hv-a": "az1", "hv-b": "az1"}


def _nova() -> SimCompute:
    nova = SimCompute(clock=time.time, migration_s=0.5)
    for host, az in HOSTS.items():
        nova.add_hypervisor(host, az)
    nova.add_server("vm-x", "hv-b", name="victim")
    return nova


@pytest.mark.parametrize(
    "owner_reports",
    [
        pytest.param(True, id="owner-reports-it-calm"),
        pytest.param(False, id="owner-does-not-report-it"),
    ],
)
def test_an_agent_reporting_steal_for_a_vm_on_another_host_cannot_move_it(
    tmp_path: Path, owner_reports: bool
) -> None:
    async def scenario() -> tuple[ClusterSnapshot, list[str], Config]:
        config = service_config(tmp_path)
        async with service(config, _nova()) as running:
            c = running.coordinator
            agents = await agents_for(running, HOSTS)
            # hv-a claims the VM Nova runs on hv-b is starving: 50% steal, busy.
            agents["hv-a"].vms["vm-x"] = FakeVm("vm-x", steal=0.5, busy=0.5)
            if owner_reports:
                agents["hv-b"].vms["vm-x"] = FakeVm("vm-x", steal=0.0, busy=0.5)
            await report_all(agents, rounds=6)
            await asyncio.sleep(0.2)
            tick = await c.tick()
            assert tick is not None
            started = [r.target for r in tick.started]
            snap = c.snapshot()
            for agent in agents.values():
                await agent.close()
            return snap, started, config

    snap, started, config = asyncio.run(asyncio.wait_for(scenario(), 60))
    vm = snap.vms["vm-x"]
    assert started == [], "a migration was started on another host's word"
    assert vm.host == "hv-b" and vm.telemetry_from_wrong_host == ("hv-a",)
    if owner_reports:
        # The steal in the snapshot is what hv-b measured, not hv-a's claim.
        assert vm.reported_by_agent and vm.metrics.sampled_at is not None
        assert vm.metrics.steal == pytest.approx(0.0, abs=0.01)
    else:
        assert not vm.reported_by_agent and vm.metrics.steal == 0.0
    assert all(m.vm_uuid != "vm-x" for m in plan(snap, config).moves)


def test_one_unusable_vm_sample_is_dropped_and_the_rest_of_the_report_counts(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), _nova()) as running:
            c = running.coordinator
            agent = (await agents_for(running, {"hv-b": "az1"}))["hv-b"]
            agent.vms["vm-x"] = FakeVm("vm-x", steal=0.3, busy=0.5)
            agent.vms["no-stats"] = FakeVm("no-stats")
            agent.vms["nan-load"] = FakeVm("nan-load")
            for _ in range(4):
                message = agent.report_message(10.0)
                for sample in message.report.vms:
                    if sample.instance_uuid == "no-stats":
                        sample.vcpus = 0  # a domain libvirt gave no vCPU statistics for
                    if sample.instance_uuid == "nan-load":
                        sample.load_source = agent_pb2.LOAD_SOURCE_GUEST_AGENT
                        sample.guest_load_1m = math.nan
                await agent.send(message)
            await until(lambda: c.metrics.rejected_count("bad_counter") >= 4, timeout_s=10)
            assert c.metrics.rejected_count("bad_vm") == 4
            telemetry = c.agents.host_telemetry("hv-b")
            assert telemetry is not None and set(telemetry.vms) == {"vm-x"}
            vm = c.snapshot().vms["vm-x"]
            assert vm.metrics.steal == pytest.approx(0.3, abs=0.01)
            await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def _reports_folded(running: Running) -> float:
    value = running.coordinator.metrics.registry.get_sample_value(
        "stealbalancer_agent_reports_total"
    )
    return value or 0.0


def test_counter_state_of_vms_no_longer_reported_is_forgotten(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        config = service_config(tmp_path, service={"telemetry_forget_reports": 3})
        async with service(config, _nova()) as running:
            hub = running.coordinator.agents
            agent = (await agents_for(running, {"hv-b": "az1"}))["hv-b"]
            agent.vms["vm-old"] = FakeVm("vm-old")
            tracked = []
            for step in range(6):
                if step == 2:
                    agent.vms = {"vm-new": FakeVm("vm-new")}
                await agent.report()
                await until(lambda n=step + 1: _reports_folded(running) == n, timeout_s=10)
                tracked.append(hub.tracked_vms())
            await agent.close()
            return tracked

    # vm-old is last reported in report 2, kept through reports 3-4, gone after report 5.
    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [1, 1, 2, 2, 1, 1]


@pytest.mark.parametrize(
    ("vcpus_claimed_before", "peak_after"),
    [
        pytest.param(2, 2.0, id="a-migrated-vm-keeps-its-peak"),
        # The host it left claimed 64 vCPUs all busy: no more than its 2 vCPUs here.
        pytest.param(64, 2.0, id="capped-at-its-vcpus-here"),
    ],
)
def test_a_vm_that_lands_on_another_host_brings_its_peak_demand(
    tmp_path: Path, vcpus_claimed_before: int, peak_after: float
) -> None:
    """The service keeps one counter folder per host: the peak a target is ranked by
    (policy.peak_half_life_s) must not be forgotten because the VM moved."""

    async def scenario() -> float:
        async with service(service_config(tmp_path), _nova()) as running:
            hub = running.coordinator.agents
            agents = await agents_for(running, HOSTS)
            agents["hv-a"].vms["vm-x"] = FakeVm("vm-x", vcpus=vcpus_claimed_before, busy=1.0)
            await report_all(agents, rounds=3)
            # Landed on hv-b: a new domain there, calm.
            del agents["hv-a"].vms["vm-x"]
            agents["hv-b"].vms["vm-x"] = FakeVm("vm-x", busy=0.1, domain_id=2)
            await report_all(agents, rounds=3)

            def landed() -> float:
                telemetry = hub.host_telemetry("hv-b")
                vm = telemetry.vms.get("vm-x") if telemetry else None
                return vm.metrics.peak_demand if vm and vm.metrics.sampled_at else -1.0

            await until(lambda: landed() >= 0)
            for agent in agents.values():
                await agent.close()
            return landed()

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == pytest.approx(peak_after, rel=0.01)
