"""Joining Nova's inventory with the agents' telemetry into one ClusterSnapshot.

Purely computational: the service fetches the inventory (in a thread) and keeps the
telemetry; `join` only combines them. The join key is the instance UUID. A VM only
an agent reports, or only Nova knows, is kept in the snapshot (an operator sees it)
with `known_to_nova` / `reported_by_agent` saying which, and the policy never moves
it. A host's `last_report_at` is its agent's newest report, so the policy can treat
a silent agent's host as neither source nor target.

A VM's telemetry is taken only from the host Nova places it on (or the other end of
its open migration). Another agent reporting it is ignored and named in
`Vm.telemetry_from_wrong_host`, which keeps the VM from being moved: no agent can
steer a migration of a VM that is not on its host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from coordinator.config import InventoryConfig
from coordinator.model import (
    Bookkeeping,
    ClusterSnapshot,
    Host,
    InFlight,
    Orchestrator,
    ServerGroup,
    Vm,
    VmMetrics,
)
from coordinator.ports import Detacher, HypervisorInfo, ServerInfo

NO_BOOKS = Bookkeeping()
BUILT_IN_ORCHESTRATORS = frozenset(o.value for o in Orchestrator)
_TRUE = frozenset({"1", "true", "yes", "on"})
# (orchestrator tag, orchestrator_ref, the VM's addresses) -> why no detacher could act
# on the ref, "" if one could (`Detacher.ref_problem`).
RefCheck = Callable[[str, str, tuple[str, ...]], str]


def _any_ref(tag: str, ref: str, addresses: tuple[str, ...]) -> str:
    return ""


def ref_checker(detachers: Mapping[str, Detacher]) -> RefCheck:
    """The join's ref check from the registered detachers (each knows its ref format)."""

    def check(tag: str, ref: str, addresses: tuple[str, ...]) -> str:
        detacher = detachers.get(tag)
        return detacher.ref_problem(ref, addresses) if detacher is not None else ""

    return check


# Long enough to span an agent's missed report or two, short enough that a host whose
# agent went silent stops flagging the VMs Nova placed elsewhere within minutes.
WRONG_HOST_WINDOW_S = 120.0


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


# Nova statuses in which the VM's domain does not run (no vCPU wants CPU). Any other,
# an unknown one included, is taken as running: its demand is then unknown, not none.
NOT_RUNNING = frozenset(
    {"SHUTOFF", "SUSPENDED", "PAUSED", "SHELVED", "SHELVED_OFFLOADED", "SOFT_DELETED",
     "DELETED", "ERROR"}
)  # fmt: skip


def join(
    now: float,
    inventory: Inventory,
    telemetry: Mapping[str, HostTelemetry],
    keys: InventoryConfig,
    books: Bookkeeping = NO_BOOKS,
    orchestrators: frozenset[str] = BUILT_IN_ORCHESTRATORS,
    wrong_host_window_s: float = WRONG_HOST_WINDOW_S,
    ref_problem: RefCheck = _any_ref,
) -> ClusterSnapshot:
    """`orchestrators`: the tags a detacher is registered for; any other tag makes
    the VM unmovable (never read as "none": it would be moved without a drain).
    `ref_problem`: a VM whose orchestrator_ref its detacher could never act on (a typo
    in the cluster, a ref that is not a node or an address, a Consul agent address
    Nova does not list for the VM) is unmovable too: a move would reattach it for
    ever, holding its bandwidth grant, or detach another VM's entry.
    `wrong_host_window_s`: telemetry from a host Nova does not place a VM on flags
    the VM only while that host's agent is still reporting (a dead host's last report
    must not pin the VMs Nova evacuated from it)."""
    reported = _reports_by_vm(telemetry)
    group_of = {m: g.id for g in inventory.groups for m in g.members}
    moving = _moving(books.in_flight)
    recent = {t.host for t in telemetry.values() if now - t.last_report_at <= wrong_host_window_s}
    vms = [
        _from_nova(
            s,
            reported.get(s.uuid, {}),
            group_of,
            keys,
            books,
            moving,
            recent,
            orchestrators,
            ref_problem,
        )
        for s in inventory.servers
    ]
    known = {s.uuid for s in inventory.servers}
    # A VM only agents report is shown (from one of them) and never moved.
    vms += [_agent_only(*min(seen.items())) for uuid, seen in reported.items()
            if uuid not in known]  # fmt: skip
    return ClusterSnapshot.build(
        now=now,
        hosts=_hosts(inventory, telemetry),
        vms=vms,
        server_groups=list(inventory.groups),
        in_flight=books.in_flight,
        quarantined_targets=books.quarantined_targets,
        departed_at=books.departed_at,
    )


def _reports_by_vm(telemetry: Mapping[str, HostTelemetry]) -> dict[str, dict[str, ReportedVm]]:
    """VM → {reporting host → what it reported}: every host that reports a VM is kept,
    so the join can take the VM's telemetry from the host Nova places it on."""
    reported: dict[str, dict[str, ReportedVm]] = {}
    for t in telemetry.values():
        for uuid, vm in t.vms.items():
            reported.setdefault(uuid, {})[t.host] = vm
    return reported


def _moving(in_flight: tuple[InFlight, ...]) -> dict[str, frozenset[str]]:
    """VM → the hosts of its open migration (source and target both run the domain)."""
    hosts: dict[str, frozenset[str]] = {}
    for f in in_flight:
        hosts[f.vm_uuid] = hosts.get(f.vm_uuid, frozenset()) | {f.source, f.target}
    return hosts


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
    seen: Mapping[str, ReportedVm],
    group_of: Mapping[str, str],
    keys: InventoryConfig,
    books: Bookkeeping,
    moving: Mapping[str, frozenset[str]],
    recent: set[str],
    orchestrators: frozenset[str],
    ref_problem: RefCheck,
) -> Vm:
    """Telemetry counts only from the host Nova places the VM on, or, while it
    migrates, from the other end of its migration: an agent elsewhere cannot speak
    for it (and makes it unmovable while it tries)."""
    migration_hosts = moving.get(server.uuid, frozenset())
    moved_to = books.moved_to.get(server.uuid)
    others = migration_hosts | {moved_to} if moved_to else migration_hosts
    mine, wrong = _trusted(server.host, others, seen, recent)
    meta = server.metadata
    tag = orchestrator_tag(meta.get(keys.orchestrator_key, ""))
    ref = meta.get(keys.orchestrator_ref_key, "")
    refusal = _orchestrator_refusal(tag, orchestrators) or _ref_refusal(
        tag, ref, server.addresses, ref_problem
    )
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
        orchestrator_ref=ref,
        addresses=server.addresses,
        opt_out=meta.get(keys.opt_out_key, "").strip().lower() in _TRUE,
        metrics=mine.metrics if mine else VmMetrics(),
        migrating=server.status == "MIGRATING" or bool(migration_hosts),
        running=server.status not in NOT_RUNNING,
        cooldown_until=books.cooldown_until.get(server.uuid, 0.0),
        quarantined_until=books.quarantined_vms.get(server.uuid, 0.0),
        parked_reason=books.park_reasons.get(server.uuid, ""),
        known_to_nova=True,
        reported_by_agent=mine is not None,
        telemetry_from_wrong_host=wrong,
        refusal=refusal,
    )


def _trusted(
    host: str, others: frozenset[str], seen: Mapping[str, ReportedVm], recent: set[str]
) -> tuple[ReportedVm | None, tuple[str, ...]]:
    """The report to use (Nova's host first, then the migration's other end) and the
    recently reporting hosts that have no business reporting the VM."""
    mine = seen.get(host)
    if len(seen) <= 1 and (mine is not None or not seen):
        return mine, ()  # the common case: reported by its own host only, or by none
    trusted = [host, *sorted(others - {host})]
    mine = next((seen[h] for h in trusted if h in seen), None)
    return mine, tuple(sorted(h for h in seen if h not in trusted and h in recent))


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


def _ref_refusal(tag: str, ref: str, addresses: tuple[str, ...], ref_problem: RefCheck) -> str:
    if tag == Orchestrator.NONE.value:
        return ""  # no detacher reads it: the common case costs no call
    problem = ref_problem(tag, ref, addresses)
    return f"unusable orchestrator_ref: {problem}"[:400] if problem else ""
