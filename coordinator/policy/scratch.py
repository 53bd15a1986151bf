"""A planning round's scratch copy of the cluster's aggregates.

The snapshot is immutable; within one round the planner records each chosen move
here so the next choice sees its effect (the target got busier, the source calmer,
a slot and some bandwidth are taken). Only per-host totals are copied, never VMs.

Purely computational, no side effects.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from coordinator.model import ClusterSnapshot, GroupPolicy, Vm


@dataclass(slots=True)
class HostLoad:
    """Running totals for one host."""

    vcpus: int = 0
    ram_mib: int = 0
    demand: float = 0.0  # vCPUs its VMs want to run
    peak_demand: float = 0.0  # Σ of its VMs' remembered peak demand (at least the present)
    demand_trend: float = 0.0  # how fast that is changing, vCPUs per second
    stolen: float = 0.0  # Σ steal × vCPUs of its VMs (with fresh metrics)
    sampled_vcpus: int = 0
    # vCPUs of VMs Nova runs here that the agent gives no numbers for (just landed,
    # a domain it cannot read, an agent that reports no VMs): unknown demand.
    unmeasured_vcpus: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    vms: int = 0

    @property
    def target_demand(self) -> float:
        """The demand a target is judged by: its unmeasured VMs counted busy. A host
        whose agent says nothing of its VMs must not look idle and draw moves."""
        return self.demand + self.unmeasured_vcpus

    @property
    def target_peak_demand(self) -> float:
        """`target_demand` at each VM's remembered peak: what the host wants when its
        tenants' daily peaks come back (an upper bound: they need not coincide)."""
        return self.peak_demand + self.unmeasured_vcpus

    @property
    def steal(self) -> float:
        """vCPU-weighted mean steal of the host's VMs."""
        return self.stolen / self.sampled_vcpus if self.sampled_vcpus else 0.0

    def demand_ahead(self, seconds: float) -> float:
        """The demand `seconds` from now if it keeps rising as it has (a falling trend
        is not counted on), never more than every allocated vCPU busy."""
        rising = max(self.demand_trend, 0.0) * seconds
        return max(self.demand, min(self.demand + rising, float(self.vcpus)))


@dataclass(slots=True)
class RoundState:
    """Aggregates plus the caps consumed so far in this round."""

    hosts: dict[str, HostLoad]
    # server-group id -> hosts holding members, for (soft-)anti-affinity
    group_hosts: dict[str, Counter[str]]
    by_source: Counter[str]
    by_target: Counter[str]
    by_az: Counter[str]
    running: int
    bandwidth_in_use: float
    # Automatic or manual moves finished within the last hour (for limits.max_per_hour).
    finished_last_hour: int = 0
    # Moves Nova is done with that have not closed yet (verifying, reattaching): no
    # slot or bandwidth, but they count towards limits.max_per_hour as started.
    settling: int = 0

    @staticmethod
    def of(snapshot: ClusterSnapshot, cooldown_s: float | None = None) -> RoundState:
        """The aggregates of `snapshot`, with every migration in flight counted as
        landed on its target (its source is being relieved already). With
        `cooldown_s`, moves that finished within the hour are counted from the
        cooldowns they left (cooldown_until = finished + cooldown_s)."""
        hosts: dict[str, HostLoad] = defaultdict(HostLoad)
        group_hosts: dict[str, Counter[str]] = defaultdict(Counter)
        anti = _spread_groups(snapshot)
        # Moves finished after this left cooldowns ending after `recent` (one pass).
        recent = math.inf if cooldown_s is None else snapshot.now - 3600.0 + cooldown_s
        finished_last_hour = 0
        for vm in snapshot.vms.values():
            _add_vm(hosts[vm.host], vm)
            if vm.server_group in anti:
                group_hosts[vm.server_group][vm.host] += 1
            if vm.cooldown_until > recent and vm.cooldown_until > 0:
                finished_last_hour += 1
        state = RoundState(
            hosts=dict(hosts),
            group_hosts=dict(group_hosts),
            by_source=Counter(),
            by_target=Counter(),
            by_az=Counter(),
            running=0,
            bandwidth_in_use=0.0,
            finished_last_hour=finished_last_hour,
        )
        for flight in snapshot.in_flight:
            if flight.copying:
                state.take_slot(flight.source, flight.target, flight.az, flight.bandwidth_mib_s)
            else:
                state.settling += 1
            moving = snapshot.vms.get(flight.vm_uuid)
            if moving is not None and moving.host == flight.source:
                state.apply_move(moving, flight.target)
        return state

    @property
    def started_last_hour(self) -> int:
        """Moves started within the hour, as limits.max_per_hour counts them."""
        return self.finished_last_hour + self.settling + self.running

    def load(self, host: str) -> HostLoad:
        return self.hosts.get(host) or HostLoad()

    def take_slot(self, source: str, target: str, az: str, bandwidth: float) -> None:
        self.by_source[source] += 1
        self.by_target[target] += 1
        self.by_az[az] += 1
        self.running += 1
        self.bandwidth_in_use += bandwidth

    def apply_move(self, vm: Vm, target: str) -> None:
        """Account the VM on its target (and off its source) for the rest of the round."""
        _remove_vm(self.hosts.setdefault(vm.host, HostLoad()), vm)
        _add_vm(self.hosts.setdefault(target, HostLoad()), vm, assume_relieved=True)
        if vm.server_group in self.group_hosts:
            hosts = self.group_hosts[vm.server_group]
            hosts[vm.host] -= 1
            hosts[target] += 1


def _spread_groups(snapshot: ClusterSnapshot) -> set[str]:
    spread = {GroupPolicy.ANTI_AFFINITY, GroupPolicy.SOFT_ANTI_AFFINITY}
    return {g.id for g in snapshot.server_groups.values() if g.policy in spread}


def _add_vm(load: HostLoad, vm: Vm, assume_relieved: bool = False) -> None:
    load.vcpus += vm.vcpus
    load.ram_mib += vm.ram_mib
    load.demand += vm.metrics.cpu_demand
    load.peak_demand += vm.metrics.demand_at_peak
    load.demand_trend += vm.metrics.demand_trend
    load.vms += 1
    if vm.role:
        load.roles[vm.role] += 1
    if vm.metrics.sampled_at is not None:
        # A VM moved to a calm host is predicted not to suffer steal there.
        load.stolen += 0.0 if assume_relieved else vm.metrics.steal * vm.vcpus
        load.sampled_vcpus += vm.vcpus
    elif vm.running:
        load.unmeasured_vcpus += vm.vcpus


def _remove_vm(load: HostLoad, vm: Vm) -> None:
    load.vcpus -= vm.vcpus
    load.ram_mib -= vm.ram_mib
    load.demand -= vm.metrics.cpu_demand
    load.peak_demand -= vm.metrics.demand_at_peak
    load.demand_trend -= vm.metrics.demand_trend
    load.vms -= 1
    if vm.role:
        load.roles[vm.role] -= 1
    if vm.metrics.sampled_at is not None:
        load.stolen -= vm.metrics.steal * vm.vcpus
        load.sampled_vcpus -= vm.vcpus
    elif vm.running:
        load.unmeasured_vcpus -= vm.vcpus
