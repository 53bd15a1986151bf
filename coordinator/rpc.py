"""The only place that converts between protobuf messages and the model.

Inbound (agent → coordinator) conversion is also where hostile input stops: every
function here either returns clean model values or raises `Rejected` with a short
reason that the service counts (`reason` is a Prometheus label, so it is one of a
small fixed set). Nothing half-parsed ever reaches the telemetry state.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from coordinator.api.v1 import admin_pb2, agent_pb2
from coordinator.config import PolicyConfig
from coordinator.journal import MigrationRecord
from coordinator.model import ClusterSnapshot, Host, Move, Plan, Skipped, Vm, mean_steal
from coordinator.policy import Explanation, is_contended
from coordinator.policy.detect import is_fresh
from coordinator.state import CounterSample

# Hostnames and UUIDs are short; anything longer is garbage or an attack.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_MAX_COUNTER = 2**62  # ns: ~146 years of CPU time; beyond is corrupt
_MAX_VCPUS = 4096


class Rejected(ValueError):
    """An agent message that must not be folded in; `reason` is a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Registration:
    host: str
    az: str
    pcpus: int
    memory_mib: int
    agent_version: str
    report_interval_s: int
    boot_id: str


@dataclass(frozen=True, slots=True)
class VmReading:
    uuid: str
    name: str
    sample: CounterSample


@dataclass(frozen=True, slots=True)
class Report:
    seq: int
    monotonic_ns: int
    replayed: bool
    vms: tuple[VmReading, ...]
    # One reason per VM sample that was dropped (the rest of the report still counts).
    dropped: tuple[str, ...] = ()


def registration(msg: agent_pb2.Register) -> Registration:
    if not _NAME.match(msg.host):
        raise Rejected("bad_host", repr(msg.host[:64]))
    if msg.availability_zone and not _NAME.match(msg.availability_zone):
        raise Rejected("bad_register", "availability zone")
    if not 0 < msg.pcpus <= 65536:
        raise Rejected("bad_register", "pcpus")
    return Registration(
        host=msg.host,
        az=msg.availability_zone,
        pcpus=msg.pcpus,
        memory_mib=msg.memory_bytes // (1024 * 1024),
        agent_version=msg.agent_version[:64],
        report_interval_s=msg.report_interval_s,
        boot_id=msg.boot_id[:64],
    )


def report(msg: agent_pb2.HostReport, at: float, max_vms: int) -> Report:
    """Validate a report. A report-wide problem rejects it; one unusable VM sample
    (zero vCPUs, a NaN load, an impossible counter) is dropped with its reason, so one
    bad domain cannot blind its whole host."""
    if len(msg.vms) > max_vms:
        raise Rejected("too_many_vms", f"{len(msg.vms)} > {max_vms}")
    if msg.monotonic_ns > _MAX_COUNTER:
        raise Rejected("bad_counter", "monotonic_ns")
    readings: list[VmReading] = []
    dropped: list[str] = []
    for vm in msg.vms:
        try:
            readings.append(_vm_reading(vm, msg.monotonic_ns, at))
        except Rejected as exc:
            dropped.append(exc.reason)
    uuids = Counter(r.uuid for r in readings)
    # Two samples for one VM: neither can be trusted, both are dropped.
    dropped += ["duplicate_vm"] * sum(n for n in uuids.values() if n > 1)
    kept = tuple(r for r in readings if uuids[r.uuid] == 1)
    return Report(seq=msg.seq, monotonic_ns=msg.monotonic_ns, replayed=msg.replayed, vms=kept,
                  dropped=tuple(dropped))  # fmt: skip


def _vm_reading(vm: agent_pb2.VmSample, monotonic_ns: int, at: float) -> VmReading:
    if not _NAME.match(vm.instance_uuid):
        raise Rejected("bad_vm", "instance_uuid")
    if not 0 < vm.vcpus <= _MAX_VCPUS:
        raise Rejected("bad_vm", "vcpus")
    if vm.cpu_time_ns > _MAX_COUNTER or vm.steal_ns > _MAX_COUNTER:
        raise Rejected("bad_counter", "cpu/steal")
    guest_load: float | None = None
    if vm.load_source == agent_pb2.LOAD_SOURCE_GUEST_AGENT:
        if not math.isfinite(vm.guest_load_1m) or vm.guest_load_1m < 0:
            raise Rejected("bad_counter", "guest_load_1m")
        guest_load = vm.guest_load_1m
    dirty = vm.dirty_rate_mib_s if vm.HasField("dirty_rate_mib_s") else None
    if dirty is not None and not 0 <= dirty < math.inf:
        raise Rejected("bad_counter", "dirty_rate_mib_s")
    sample = CounterSample(
        at=at,
        monotonic_ns=monotonic_ns,
        vcpus=vm.vcpus,
        cpu_time_ns=vm.cpu_time_ns,
        steal_ns=vm.steal_ns,
        domain_id=vm.domain_id,
        guest_load=guest_load,
        memory_mib=vm.memory_bytes / (1024 * 1024),
        disk_gib=vm.disk_bytes / (1024**3),
        dirty_rate_mib_s=dirty,
    )
    # The checks above are exactly what CounterSample.validate() demands (the fuzz test
    # holds them to it); not calling it here halves the per-VM cost of ingest.
    return VmReading(uuid=vm.instance_uuid, name=vm.name[:255], sample=sample)


# -- coordinator → agent ----------------------------------------------------
def register_ack(version: str, interval_s: float) -> agent_pb2.CoordinatorMessage:
    ack = agent_pb2.RegisterAck(coordinator_version=version, report_interval_s=int(interval_s))
    return agent_pb2.CoordinatorMessage(register_ack=ack)


def set_speed(command_id: str, vm_uuid: str, mib_s: int) -> agent_pb2.CoordinatorMessage:
    action = agent_pb2.SetMigrationSpeed(instance_uuid=vm_uuid, bandwidth_mib_s=mib_s)
    return agent_pb2.CoordinatorMessage(
        command=agent_pb2.Command(id=command_id, set_migration_speed=action)
    )


# -- admin views --------------------------------------------------------------
def host_view(
    host: Host, vms: Sequence[Vm], now: float, policy: PolicyConfig
) -> admin_pb2.HostView:
    """One host for coordctl; `vms` are the VMs on it."""
    age = now - host.last_report_at if host.last_report_at is not None else -1.0
    return admin_pb2.HostView(
        name=host.name,
        availability_zone=host.az,
        pcpus=host.pcpus,
        cpu_demand=sum(v.metrics.cpu_demand for v in vms),
        steal=mean_steal(vms),
        vms=len(vms),
        agent_age_s=age,
        enabled=host.enabled,
        up=host.up,
        fresh=is_fresh(host.last_report_at, now, policy) and age >= 0,
        ram_mib=host.ram_mib,
        ram_used_mib=sum(v.ram_mib for v in vms),
        vcpus_used=sum(v.vcpus for v in vms),
    )


def stale_telemetry(vm: Vm, snap: ClusterSnapshot, policy: PolicyConfig) -> str:
    """`stale telemetry (AGE old)` when the agent of the VM's host is not fresh by the
    policy's rule, else "": the VM's steal and load are then history, not "now"."""
    host = snap.hosts.get(vm.host)
    reported_at = host.last_report_at if host is not None else None
    if is_fresh(reported_at, snap.now, policy):
        return ""
    if reported_at is None:
        return "stale telemetry (never reported)"
    return f"stale telemetry ({_age(snap.now - reported_at)} old)"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def vm_state(vm: Vm, now: float, stale: str = "") -> str:
    """`stale` is `stale_telemetry(...)`: it outranks every state but these two, since
    the steal and load shown beside it are old."""
    if not vm.known_to_nova:
        return "unknown"
    if vm.migrating:
        return "migrating"
    if stale:
        return stale
    if vm.opt_out:
        return "opted-out"
    if now < vm.quarantined_until:
        return "quarantined"
    if now < vm.cooldown_until:
        return "cooldown"
    return "active"


def vm_view(vm: Vm, snap: ClusterSnapshot, policy: PolicyConfig) -> admin_pb2.VmView:
    host = snap.hosts.get(vm.host)
    stale = stale_telemetry(vm, snap, policy)
    return admin_pb2.VmView(
        uuid=vm.uuid,
        name=vm.name,
        host=vm.host,
        availability_zone=host.az if host else "",
        role=vm.role,
        vcpus=vm.vcpus,
        ram_mib=vm.ram_mib,
        disk_gib=vm.disk_gib,
        steal=vm.metrics.steal,
        load=vm.metrics.load,
        contended=not stale and is_contended(vm, policy),
        orchestrator=str(vm.orchestrator),
        state=vm_state(vm, snap.now, stale),
        known_to_nova=vm.known_to_nova,
        reported_by_agent=vm.reported_by_agent,
    )


def migration_view(r: MigrationRecord, now: float = 0.0) -> admin_pb2.MigrationView:
    """`now` (the snapshot's clock) gives an open migration's time detached."""
    detached = r.detached_at > 0 and not r.state.terminal and r.state.value != "PLANNED"
    return admin_pb2.MigrationView(
        id=r.id,
        vm_uuid=r.vm_uuid,
        vm_name=r.vm_name,
        source=r.source,
        target=r.target,
        state=r.state.value,
        outcome=r.outcome,
        created_unix_ns=int(r.created_at * 1e9),
        finished_unix_ns=int(r.finished_at * 1e9),
        gib_moved=r.gib_to_move if r.state.value == "DONE" else 0.0,
        steal_before=r.steal_before,
        steal_after=r.steal_after,
        bandwidth_mib_s=int(r.bandwidth_mib_s),
        manual=r.manual,
        last_error=r.last_error,
        attempts=r.attempts,
        retry_unix_ns=int(r.retry_at * 1e9),
        detached_seconds=max(now - r.detached_at, 0.0) if detached and now else 0.0,
    )


def planned_move(m: Move) -> admin_pb2.PlannedMove:
    return admin_pb2.PlannedMove(
        vm_uuid=m.vm_uuid,
        vm_name=m.vm_name,
        source=m.source,
        target=m.target,
        bandwidth_mib_s=int(m.bandwidth_mib_s),
        steal=m.steal,
        load=m.load,
        gib_to_move=m.cost.gib_to_move,
        seconds_estimate=m.cost.seconds,
        relief_per_gib=m.relief_per_gib,
        targets=[
            admin_pb2.TargetScore(
                host=t.host,
                eligible=t.eligible,
                rejected_because=t.rejected_because,
                steal=t.steal,
                same_role_vms=t.same_role_vms,
                headroom_cpus=t.headroom_cpus,
                predicted_demand_ratio=t.predicted_demand_ratio,
                peak_headroom_cpus=t.peak_headroom_cpus,
            )
            for t in m.targets
        ],
        reason=m.reason,
    )


def skipped(s: Skipped) -> admin_pb2.SkippedCandidate:
    return admin_pb2.SkippedCandidate(vm_uuid=s.vm_uuid, vm_name=s.vm_name, reason=s.reason)


def plan_response(plan: Plan, paused: bool) -> admin_pb2.PlanResponse:
    return admin_pb2.PlanResponse(
        moves=[planned_move(m) for m in plan.moves],
        skipped=[skipped(s) for s in plan.skipped],
        paused=paused,
    )


def explain_response(
    vm: Vm | None, uuid: str, e: Explanation, history: Iterable[MigrationRecord]
) -> admin_pb2.ExplainResponse:
    response = admin_pb2.ExplainResponse(
        vm_uuid=uuid,
        vm_name=vm.name if vm else "",
        verdict=e.verdict,
        reasons=list(e.reasons),
        history=[migration_view(r) for r in history],
    )
    if e.move is not None:
        response.move.CopyFrom(planned_move(e.move))
    return response
