"""A hostile agent cannot steer migrations: telemetry for a VM counts only from the
host Nova places it on (real gRPC server, scripted agents, the simulated Nova)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from coordinator.adapters.sim.compute import SimCompute
from coordinator.config import Config
from coordinator.model import ClusterSnapshot
from coordinator.policy import plan
from tests.service.fake_agent import FakeVm
from tests.service.harness import agents_for, report_all, service, service_config

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
            started = [r.target for r in await c.tick()]
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
