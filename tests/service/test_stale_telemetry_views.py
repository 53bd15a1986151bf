"""What `coordctl status`, `vms` and `hosts` say about a VM whose host's agent went
silent: its last readings are history, not "contended now" (they used to be counted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2
from tests.service.fake_agent import FakeVm
from tests.service.harness import admin, agents_for, report_all, service, service_config
from tests.service.test_service import run
from tests.service.world import FakeClock

HOSTS = {"host-a": "az1", "host-b": "az1"}


def test_a_silent_hosts_vm_is_stale_not_contended(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        nova = SimCompute(clock=clock.now, migration_s=0.5)
        for host, az in HOSTS.items():
            nova.add_hypervisor(host, az)
        nova.add_server("vm-hot", "host-a", name="hot", metadata={"role": "web"})
        # Paused: the hot VM stays where it is, so only its telemetry ages.
        config = service_config(tmp_path, service={"start_paused": True})
        async with service(config, nova, clock=clock) as running:
            agents = await agents_for(running, HOSTS)
            channel, stub = admin(running)
            agents["host-a"].vms["vm-hot"] = FakeVm("vm-hot", steal=0.4, busy=0.5)
            for _ in range(4):
                clock.sleep(10)
                await report_all(agents, rounds=1)
            (hot,) = (await stub.ListVms(admin_pb2.ListVmsRequest())).vms
            assert hot.contended and hot.state == "active", "contended while it reports"
            assert (await stub.Status(admin_pb2.StatusRequest())).vms_contended == 1

            await agents["host-a"].close()
            clock.sleep(3600)  # an hour without a word from host-a
            await asyncio.sleep(0.2)
            (hot,) = (await stub.ListVms(admin_pb2.ListVmsRequest())).vms
            assert not hot.contended
            assert hot.state == "stale telemetry (60m old)"
            status = await stub.Status(admin_pb2.StatusRequest())
            assert (status.vms_contended, status.cluster_steal, status.hosts_stale) == (0, 0.0, 2)
            hosts = (await stub.ListHosts(admin_pb2.ListHostsRequest())).hosts
            assert [h.fresh for h in hosts] == [False, False]
            await channel.close(None)

    run(scenario())
