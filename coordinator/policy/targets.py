"""Target selection: which hosts may take a VM, and which of those is best.

Filters (hard): same AZ, not the source, enabled, up, fresh agent, steal below the
threshold, not quarantined as a target, per-target cap, no migration leaving it, vCPU
and RAM allocation with the host's ratios, predicted CPU demand after the move (VMs
its agent gives no numbers for counted busy), hard anti-affinity.
Order (soft): hosts whose VMs' remembered peaks, with this VM's, fit in their pCPUs
first; then least steal (within a tie band), fewest VMs of the same role, fewest
members of a soft-anti-affinity group, most CPU headroom at those peaks.

Purely computational, no side effects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.config import Config
from coordinator.model import ClusterSnapshot, GroupPolicy, Host, TargetScore, Vm
from coordinator.policy.detect import is_fresh
from coordinator.policy.scratch import HostLoad, RoundState

# How many rejected targets a move keeps for `explain`: enough to see the runner-up
# and the typical reasons, without a 5,000-host list per plan item.
REJECTED_KEPT = 5
_NOBODY: Counter[str] = Counter()


@dataclass(frozen=True, slots=True)
class TargetChoice:
    chosen: TargetScore | None
    considered: tuple[TargetScore, ...]  # chosen first, then the best rejected


def host_blocker(
    host: Host, load: HostLoad, snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> str | None:
    """Why `host` can take no VM at all now (independent of the VM)."""
    policy = config.policy
    if not host.enabled:
        return "compute service disabled"
    if not host.up:
        return "compute service down"
    if not is_fresh(host.last_report_at, snapshot.now, policy):
        return "agent telemetry stale"
    if snapshot.quarantined_targets.get(host.name, 0.0) > snapshot.now:
        return "quarantined as a target (an earlier move there did not help)"
    if state.by_target[host.name] >= config.limits.max_per_target:
        return "per-target migration cap reached"
    if state.by_source[host.name] > 0:
        # It is shedding load (this round or in flight): filling it again is churn.
        return "a migration is leaving it"
    if load.steal >= policy.target_steal_max:
        return f"steal {load.steal:.1%} not below {policy.target_steal_max:.1%}"
    return None


def fit_blocker(
    vm: Vm, host: Host, load: HostLoad, snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> str | None:
    """Why `host` cannot take this particular VM."""
    if host.name == vm.host:
        return "is the source host"
    if load.vcpus + vm.vcpus > host.pcpus * host.cpu_allocation_ratio:
        return "vCPU allocation would exceed the allocation ratio"
    if load.ram_mib + vm.ram_mib > host.ram_mib * host.ram_allocation_ratio:
        return "RAM would exceed the allocation ratio"
    fill = (load.target_demand + vm.metrics.cpu_demand) / host.pcpus
    if fill > config.policy.target_cpu_fill_max:
        unknown = (
            f", {load.unmeasured_vcpus} vCPUs of its VMs unmeasured and counted busy"
            if load.unmeasured_vcpus
            else ""
        )
        limit = config.policy.target_cpu_fill_max
        return f"predicted CPU demand {fill:.0%} of pCPUs > {limit:.0%}{unknown}"
    group = snapshot.server_groups.get(vm.server_group) if vm.server_group else None
    if (
        group is not None
        and group.policy is GroupPolicy.ANTI_AFFINITY
        and state.group_hosts.get(group.id, _NOBODY)[host.name] > 0
    ):
        return f"anti-affinity: another member of server group {group.name!r} is there"
    return None


def score(vm: Vm, host: Host, load: HostLoad, eligible: bool, why: str = "") -> TargetScore:
    demand_after = load.target_demand + vm.metrics.cpu_demand
    peak_after = load.target_peak_demand + vm.metrics.demand_at_peak
    return TargetScore(
        host=host.name,
        eligible=eligible,
        rejected_because=why,
        steal=load.steal,
        same_role_vms=load.roles.get(vm.role, 0) if vm.role else 0,
        headroom_cpus=host.pcpus - demand_after,
        predicted_demand_ratio=demand_after / host.pcpus,
        peak_headroom_cpus=host.pcpus - peak_after,
    )


def choose_target(
    vm: Vm,
    candidates: list[Host],
    snapshot: ClusterSnapshot,
    config: Config,
    state: RoundState,
) -> TargetChoice:
    """The best eligible host among `candidates` (already same-AZ), with reasons."""
    eligible: list[TargetScore] = []
    rejected: list[TargetScore] = []
    for host in candidates:
        load = state.load(host.name)
        why = host_blocker(host, load, snapshot, config, state) or fit_blocker(
            vm, host, load, snapshot, config, state
        )
        (rejected if why else eligible).append(score(vm, host, load, not why, why or ""))
    key = _preference_key(vm, snapshot, config, state)
    eligible.sort(key=key)
    rejected.sort(key=lambda s: (s.steal, -s.headroom_cpus))
    considered = tuple(eligible[:REJECTED_KEPT] + rejected[:REJECTED_KEPT])
    return TargetChoice(chosen=eligible[0] if eligible else None, considered=considered)


def has_eligible_target(
    vm: Vm, candidates: list[Host], snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> bool:
    """Whether `choose_target` would find a host, stopping at the first one."""
    for host in candidates:
        load = state.load(host.name)
        if host_blocker(host, load, snapshot, config, state) is None and (
            fit_blocker(vm, host, load, snapshot, config, state) is None
        ):
            return True
    return False


def _preference_key(
    vm: Vm, snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> Callable[[TargetScore], tuple[bool, float, int, int, float, str]]:
    band = config.policy.steal_tie_band
    group = snapshot.server_groups.get(vm.server_group) if vm.server_group else None
    soft_members = (
        state.group_hosts.get(group.id, _NOBODY)
        if group is not None and group.policy is GroupPolicy.SOFT_ANTI_AFFINITY
        else _NOBODY
    )

    def key(s: TargetScore) -> tuple[bool, float, int, int, float, str]:
        # A host over its pCPUs at its tenants' peaks is where the next contention
        # will be: filled now, between those peaks, it needs a move of its own when
        # they come back (on the reference day, 15% of the GiB moved). It still
        # takes the VM when every host is.
        over_at_peaks = s.peak_headroom_cpus < 0
        steal_rank = float(int(s.steal / band)) if band > 0 else s.steal
        return (
            over_at_peaks,
            steal_rank,
            s.same_role_vms,
            soft_members[s.host],
            -s.peak_headroom_cpus,
            s.host,
        )

    return key
