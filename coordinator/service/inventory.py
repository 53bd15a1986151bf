"""Joining Nova's inventory with the agents' telemetry into one ClusterSnapshot.

Purely computational: the service fetches the inventory (in a thread) and keeps the
telemetry; `join` only combines them. The join key is the instance UUID. A VM only
an agent reports, or only Nova knows, is kept in the snapshot (an operator sees it)
with `known_to_nova` / `reported_by_agent` saying which, and the policy never moves
it. A host's `last_report_at` is its agent's newest report, so the policy can treat
a silent agent's host as neither source nor target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.config import InventoryConfig
from coordinator.model import (
    Bookkeeping,
    ClusterSnapshot,
    Host,
    Orchestrator,
    ServerGroup,
    Vm,
    VmMetrics,
)
from coordinator.ports import HypervisorInfo, ServerInfo

NO_BOOKS = Bookkeeping()
BUILT_IN_ORCHESTRATORS = frozenset(o.value for o in Orchestrator)
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class Inventory:
    """What Nova said at `fetched_at`."""

    hypervisors: tuple[HypervisorInfo, ...] = ()
    servers: tuple[ServerInfo, ...] = ()
    groups: tuple[ServerGroup, ...] = ()
    fetched_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ReportedVm:
    uuid: str
    name: str
    vcpus: int
    memory_mib: float
    disk_gib: float
    metrics: VmMetrics


@dataclass(frozen=True, slots=True)
class HostTelemetry:
    """One agent's newest view of its host."""

    host: str
    az: str
    pcpus: int
    memory_mib: int
    last_report_at: float
    vms: Mapping[str, ReportedVm] = field(default_factory=dict)


def join(
    now: float,
    inventory: Inventory,
    telemetry: Mapping[str, HostTelemetry],
    keys: InventoryConfig,
    books: Bookkeeping = NO_BOOKS,
    orchestrators: frozenset[str] = BUILT_IN_ORCHESTRATORS,
) -> ClusterSnapshot:
    """`orchestrators`: the tags a detacher is registered for; any other tag makes
    the VM unmovable (never read as "none": it would be moved without a drain)."""
    reported = {uuid: (t.host, vm) for t in telemetry.values() for uuid, vm in t.vms.items()}
    group_of = {m: g.id for g in inventory.groups for m in g.members}
    moving = {f.vm_uuid for f in books.in_flight}
    vms = [
        _from_nova(s, reported, group_of, keys, books, moving, orchestrators)
        for s in inventory.servers
    ]
    known = {s.uuid for s in inventory.servers}
    vms += [_agent_only(h, r) for uuid, (h, r) in reported.items() if uuid not in known]
    return ClusterSnapshot.build(
        now=now,
        hosts=_hosts(inventory, telemetry),
        vms=vms,
        server_groups=list(inventory.groups),
        in_flight=books.in_flight,
        quarantined_targets=books.quarantined_targets,
    )


def _hosts(inventory: Inventory, telemetry: Mapping[str, HostTelemetry]) -> list[Host]:
    hosts = [
        Host(
            name=h.name,
            az=h.az,
            pcpus=h.vcpus,
            ram_mib=h.memory_mib,
            cpu_allocation_ratio=h.cpu_allocation_ratio,
            ram_allocation_ratio=h.ram_allocation_ratio,
            enabled=h.enabled,
            up=h.up,
            last_report_at=telemetry[h.name].last_report_at if h.name in telemetry else None,
        )
        for h in inventory.hypervisors
    ]
    in_nova = {h.name for h in inventory.hypervisors}
    # An agent on a host Nova does not list is shown, but disabled: never a target.
    hosts += [
        Host(name=t.host, az=t.az, pcpus=t.pcpus, ram_mib=t.memory_mib, enabled=False,
             last_report_at=t.last_report_at)
        for t in telemetry.values()
        if t.host not in in_nova
    ]  # fmt: skip
    return hosts


def _from_nova(
    server: ServerInfo,
    reported: Mapping[str, tuple[str, ReportedVm]],
    group_of: Mapping[str, str],
    keys: InventoryConfig,
    books: Bookkeeping,
    moving: set[str],
    orchestrators: frozenset[str],
) -> Vm:
    seen = reported.get(server.uuid)
    meta = server.metadata
    tag = orchestrator_tag(meta.get(keys.orchestrator_key, ""))
    return Vm(
        uuid=server.uuid,
        name=server.name,
        host=server.host,
        vcpus=server.vcpus,
        ram_mib=server.ram_mib,
        disk_gib=server.disk_gib,
        role=meta.get(keys.role_key, ""),
        server_group=group_of.get(server.uuid, ""),
        orchestrator=tag,
        orchestrator_ref=meta.get(keys.orchestrator_ref_key, ""),
        opt_out=meta.get(keys.opt_out_key, "").strip().lower() in _TRUE,
        metrics=seen[1].metrics if seen else VmMetrics(),
        migrating=server.status == "MIGRATING" or server.uuid in moving,
        cooldown_until=books.cooldown_until.get(server.uuid, 0.0),
        quarantined_until=books.quarantined_vms.get(server.uuid, 0.0),
        parked_reason=books.park_reasons.get(server.uuid, ""),
        known_to_nova=True,
        reported_by_agent=seen is not None,
        refusal=_orchestrator_refusal(tag, orchestrators),
    )


def _agent_only(host: str, vm: ReportedVm) -> Vm:
    return Vm(
        uuid=vm.uuid,
        name=vm.name,
        host=host,
        vcpus=vm.vcpus,
        ram_mib=int(vm.memory_mib),
        disk_gib=vm.disk_gib,
        metrics=vm.metrics,
        known_to_nova=False,
        reported_by_agent=True,
    )


def orchestrator_tag(value: str) -> str:
    """The tag as metadata spells it, normalised; no tag at all means none."""
    return value.strip().lower() or Orchestrator.NONE.value


def _orchestrator_refusal(tag: str, known: frozenset[str]) -> str:
    if tag in known:
        return ""
    shown = tag[:64].encode("unicode_escape").decode("ascii")
    return f"unknown orchestrator tag {shown!r}: no detacher is registered for it"
