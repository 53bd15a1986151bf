"""How long a live migration takes under `serve --simulate`: the World's own RAM,
dirty rate and disk at the cap the coordinator told the VM's agent, not a constant."""

from __future__ import annotations

from coordinator.adapters.sim.compute import SimCompute
from coordinator.config import Config
from coordinator.service.simulated import AcceleratedClock, SimulatedCluster
from coordinator.sim.scenario import Scenario

CONFIG = Config()


def _cluster() -> SimulatedCluster:
    scenario = Scenario.model_validate(
        {
            "seed": 3,
            "hosts": [
                {"prefix": "local", "count": 2, "az": "az1", "pcpus": 32, "ram_gib": 256},
                {"prefix": "ceph", "count": 1, "az": "az1", "pcpus": 32, "ram_gib": 256,
                 "shared_storage": True},
            ],
            "roles": {"web": {"base": 0.5}},
            "vms": [
                {"prefix": "small", "count": 1, "role": "web", "vcpus": [2], "ram_gib": [4],
                 "disk_gib": [40], "host": "local-000"},
                {"prefix": "big", "count": 1, "role": "web", "vcpus": [2], "ram_gib": [32],
                 "disk_gib": [40], "host": "local-000"},
                {"prefix": "shared", "count": 1, "role": "web", "vcpus": [2], "ram_gib": [4],
                 "disk_gib": [40], "host": "ceph-000"},
            ],
        }
    )  # fmt: skip
    return SimulatedCluster(scenario, AcceleratedClock(1.0), start_hour=12.0, config=CONFIG)


def _uuid(cluster: SimulatedCluster, prefix: str) -> str:
    return next(vm.uuid for vm in cluster.world.vms if vm.name.startswith(prefix))


def test_more_ram_or_a_lower_cap_takes_longer_and_shared_storage_skips_the_disk() -> None:
    cluster = _cluster()
    small, big, shared = (_uuid(cluster, p) for p in ("small", "big", "shared"))
    seconds = {uuid: cluster.migration_seconds(uuid, "local-001") for uuid in (small, big)}
    assert seconds[big] > seconds[small]
    # 40 GiB of local disk at the default cap, plus at least the RAM once.
    disk_s = 40 * 1024 / CONFIG.limits.max_bandwidth_per_migration_mib_s
    assert seconds[small] >= disk_s + 4 * 1024 / CONFIG.limits.max_bandwidth_per_migration_mib_s
    assert cluster.migration_seconds(shared, "local-001") < disk_s
    cluster.caps[small] = CONFIG.limits.max_bandwidth_per_migration_mib_s / 4
    # The disk scales with the cap exactly; pre-copy worse (more is dirtied meanwhile).
    slower = cluster.migration_seconds(small, "local-001")
    assert slower >= min(4 * seconds[small], CONFIG.cost.max_migration_s) * 0.999


def test_the_simulated_nova_holds_each_migration_for_its_own_duration() -> None:
    now = [0.0]
    nova = SimCompute(clock=lambda: now[0], duration_s=lambda uuid, _host: {"a": 10, "b": 50}[uuid])
    for host in ("h1", "h2"):
        nova.add_hypervisor(host, "az1")
    nova.add_server("a", "h1")
    nova.add_server("b", "h1")
    nova.live_migrate("a", "h2")
    nova.live_migrate("b", "h2")
    now[0] = 20.0
    assert (nova.get_server("a").host, nova.get_server("a").status) == ("h2", "ACTIVE")
    assert nova.get_server("b").status == "MIGRATING"
    now[0] = 51.0
    assert (nova.get_server("b").host, nova.get_server("b").status) == ("h2", "ACTIVE")
