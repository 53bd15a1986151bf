"""The seed's naive rule, kept as a baseline to measure the policy against.

    steal >= 5% and load >= 50% -> the least-steal host of the same AZ with few
    VMs of the same role; at most 10 migrations at once, 400 MiB/s each, a VM is
    not moved again within an hour.

It has no budget, no cost model, no host-level view and no detection beyond the two
thresholds: exactly what operators ran before stealbalancer. It honours what Nova
itself would refuse (another AZ, a full host, a disabled host) and the hard blockers
(opt-out, affinity, stale telemetry), so the comparison is about the decision only.

Purely computational, no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.config import Config
from coordinator.model import ClusterSnapshot, Host, Move, Plan, Skipped, TargetScore, Vm
from coordinator.policy.cost import migration_cost, relief
from coordinator.policy.detect import is_fresh, manual_ineligibility
from coordinator.policy.scratch import RoundState
from coordinator.policy.targets import score


@dataclass(frozen=True, slots=True)
class NaiveRule:
    """The rule's constants, as the seed's operators ran it."""

    steal_min: float = 0.05
    load_min: float = 0.50
    max_concurrent: int = 10
    bandwidth_mib_s: float = 400.0
    cooldown_s: float = 3600.0


NAIVE = NaiveRule()


def plan(snapshot: ClusterSnapshot, config: Config) -> Plan:
    """The naive rule's plan: worst steal first, each to the least-steal host."""
    return plan_with(snapshot, config, NAIVE)


def plan_with(snapshot: ClusterSnapshot, config: Config, rule: NaiveRule) -> Plan:
    state = RoundState.of(snapshot)
    candidates = sorted(
        (vm for vm in snapshot.vms.values() if _triggered(vm, rule)),
        key=lambda vm: (-vm.metrics.steal, vm.uuid),
    )
    moves: list[Move] = []
    skipped: list[Skipped] = []
    for vm in candidates:
        why = _blocker(vm, snapshot, config, rule, state.running)
        target = None if why else _least_steal_host(vm, snapshot, config, state)
        if target is None:
            skipped.append(Skipped(vm.uuid, vm.name, why or "no host of the AZ fits it"))
            continue
        moves.append(_move(vm, snapshot.hosts[vm.host], target, config, state, rule))
    return Plan(now=snapshot.now, moves=tuple(moves), skipped=tuple(skipped))


def _triggered(vm: Vm, rule: NaiveRule) -> bool:
    return vm.metrics.steal >= rule.steal_min and vm.metrics.load >= rule.load_min


def _blocker(
    vm: Vm, snapshot: ClusterSnapshot, config: Config, rule: NaiveRule, running: int
) -> str | None:
    if running >= rule.max_concurrent:
        return f"{rule.max_concurrent} migrations already running"
    hard = manual_ineligibility(vm, snapshot, config.policy)
    if hard is not None:
        return hard
    # The actuator stamps cooldown_until = finish + policy.cooldown_s; the rule's own
    # (shorter) cooldown counts from the same finish.
    if vm.cooldown_until > 0:
        finished = vm.cooldown_until - config.policy.cooldown_s
        if snapshot.now < finished + rule.cooldown_s:
            return "moved within the last hour"
    return None


def _least_steal_host(
    vm: Vm, snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> TargetScore | None:
    source = snapshot.hosts[vm.host]
    fitting = [
        score(vm, host, state.load(host.name), True)
        for host in snapshot.hosts.values()
        if _fits(vm, host, source, snapshot, config, state)
    ]
    if not fitting:
        return None
    return min(
        fitting, key=lambda s: (round(s.steal, 2), s.same_role_vms, -s.headroom_cpus, s.host)
    )


def _fits(
    vm: Vm, host: Host, source: Host, snapshot: ClusterSnapshot, config: Config, state: RoundState
) -> bool:
    load = state.load(host.name)
    return (
        host.az == source.az
        and host.name != source.name
        and host.enabled
        and host.up
        and is_fresh(host.last_report_at, snapshot.now, config.policy)
        and load.vcpus + vm.vcpus <= host.pcpus * host.cpu_allocation_ratio
        and load.ram_mib + vm.ram_mib <= host.ram_mib * host.ram_allocation_ratio
    )


def _move(
    vm: Vm, source: Host, target: TargetScore, config: Config, state: RoundState, rule: NaiveRule
) -> Move:
    shared = source.shared_storage
    cost = migration_cost(vm, rule.bandwidth_mib_s, shared, config.cost)
    gain = relief(vm, state.load(source.name).demand, source.pcpus)
    state.take_slot(source.name, target.host, source.az, rule.bandwidth_mib_s)
    state.apply_move(vm, target.host)
    return Move(
        vm_uuid=vm.uuid,
        vm_name=vm.name,
        source=source.name,
        target=target.host,
        az=source.az,
        bandwidth_mib_s=rule.bandwidth_mib_s,
        steal=vm.metrics.steal,
        load=vm.metrics.load,
        cost=cost,
        relief=gain,
        targets=(target,),
        reason=(
            f"naive rule: steal {vm.metrics.steal:.1%} >= {rule.steal_min:.0%} and load "
            f"{vm.metrics.load:.2f} >= {rule.load_min:.2f}; {target.host} has the least steal"
        ),
    )
