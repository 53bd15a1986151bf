"""Small, explicit builders for policy tests: every default is a calm, healthy cluster.

Tests override only the field under test, so each table row reads as "the normal
case except X".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from coordinator.config import Config
from coordinator.model import (
    ClusterSnapshot,
    GroupPolicy,
    Host,
    InFlight,
    ServerGroup,
    Vm,
    VmMetrics,
)

NOW = 100_000.0


def host(name: str, az: str = "az1", **fields: Any) -> Host:
    """A 16-pCPU, 128 GiB host that reported just now."""
    base = Host(name=name, az=az, pcpus=16, ram_mib=128 * 1024, last_report_at=NOW)
    return replace(base, **fields)


def metrics(**fields: Any) -> VmMetrics:
    """Calm, fresh telemetry unless overridden."""
    base = VmMetrics(steal=0.0, load=0.2, cpu_demand=0.4, contended_s=0.0, sampled_at=NOW)
    return replace(base, **fields)


def hot(**fields: Any) -> VmMetrics:
    """Telemetry of a VM that is contended by the default config (steal 30%, busy)."""
    values: dict[str, Any] = {
        "steal": 0.30,
        "load": 0.95,
        "cpu_demand": 1.9,
        "contended_s": 50.0,
    }
    values.update(fields)
    return metrics(**values)


def vm(uuid: str, on: str, **fields: Any) -> Vm:
    """A 2-vCPU, 4 GiB VM with a 10 GiB disk and calm metrics."""
    values: dict[str, Any] = {"metrics": metrics()}
    values.update(fields)
    base = Vm(uuid=uuid, name=f"vm-{uuid}", host=on, vcpus=2, ram_mib=4096, disk_gib=10.0)
    return replace(base, **values)


def filler(prefix: str, on: str, count: int, demand: float, steal: float = 0.0) -> list[Vm]:
    """Background VMs that make `on` busy (`demand` vCPUs each) without being movable."""
    return [
        vm(
            f"{prefix}-{i}",
            on,
            metrics=metrics(steal=steal, load=0.3, cpu_demand=demand),
            opt_out=True,
        )
        for i in range(count)
    ]


def snapshot(
    hosts: list[Host],
    vms: list[Vm],
    groups: list[ServerGroup] | None = None,
    in_flight: tuple[InFlight, ...] = (),
    quarantined_targets: dict[str, float] | None = None,
    now: float = NOW,
) -> ClusterSnapshot:
    return ClusterSnapshot.build(
        now,
        hosts,
        vms,
        server_groups=groups or [],
        in_flight=in_flight,
        quarantined_targets=quarantined_targets,
    )


def group(gid: str, policy: GroupPolicy, members: list[str] | None = None) -> ServerGroup:
    return ServerGroup(id=gid, name=f"group-{gid}", policy=policy, members=frozenset(members or []))


def config(**sections: dict[str, Any]) -> Config:
    """The default Config with some section fields overridden (validated)."""
    data = Config().model_dump()
    for section, values in sections.items():
        data[section].update(values)
    return Config.model_validate(data)


def flight(vm_uuid: str, source: str, target: str, az: str = "az1", bw: float = 500.0) -> InFlight:
    return InFlight(
        vm_uuid=vm_uuid, source=source, target=target, az=az, bandwidth_mib_s=bw, started_at=NOW
    )
