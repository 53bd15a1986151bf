"""Detection: which VMs are contended, and which of those may be moved at all.

Purely computational, no side effects.
"""

from __future__ import annotations

from coordinator.config import PolicyConfig
from coordinator.model import ClusterSnapshot, GroupPolicy, Vm


def is_contended(vm: Vm, config: PolicyConfig) -> bool:
    """Clogged: steal above its threshold, the work held up (`clog_ratio`), and any
    busy gate met, sustained for N consecutive samples."""
    m = vm.metrics
    # Cheapest and most often false first: this runs for every VM of every round.
    return (
        m.contended_s >= config.sustained_s
        and m.steal > config.steal_threshold
        and clog_ratio(vm) > config.clog_threshold
        and (config.load_threshold <= 0 or m.load > config.load_threshold)
    )


def steal_predates_departure(vm: Vm, snapshot: ClusterSnapshot, config: PolicyConfig) -> bool:
    """A migration left the VM's host since its contended streak began, and too little
    of the streak comes after: the steal it shows was the excess that left with it.

    Without this, the round a relieving move ends (and stops counting as leaving) moves
    the host's clogged VMs on steal measured before the relief landed.
    """
    departed = snapshot.departed_at.get(vm.host)
    sampled = vm.metrics.sampled_at
    return departed is not None and sampled is not None and sampled - departed < config.sustained_s


def clog_ratio(vm: Vm) -> float:
    """The share of the CPU the VM wanted that it waited for: steal / (steal + run).

    "Wanted" is the runnable demand per vCPU (the load: what the host saw the VM run
    and wait for, raised to the guest's own run queue when its agent reports a longer
    one, never lowered by it — coordinator.state), never less than the steal itself.
    """
    m = vm.metrics
    wanted = max(m.load, m.steal)
    return m.steal / wanted if wanted > 0 else 0.0


def is_fresh(sampled_at: float | None, now: float, config: PolicyConfig) -> bool:
    return sampled_at is not None and now - sampled_at <= config.freshness_s


def ineligibility(vm: Vm, snapshot: ClusterSnapshot, config: PolicyConfig) -> str | None:
    """Why this VM may not be moved right now, or None if it may.

    Shared by automatic planning and `explain`; manual moves skip the cooldown.
    """
    return _hard_blocker(vm, snapshot, config) or _cooldown_blocker(vm, snapshot.now)


def manual_ineligibility(vm: Vm, snapshot: ClusterSnapshot, config: PolicyConfig) -> str | None:
    """Like `ineligibility` but an operator's explicit request overrides the cooldown."""
    return _hard_blocker(vm, snapshot, config)


def _hard_blocker(vm: Vm, snapshot: ClusterSnapshot, config: PolicyConfig) -> str | None:
    host = snapshot.hosts.get(vm.host)
    group = snapshot.server_groups.get(vm.server_group) if vm.server_group else None
    checks: tuple[tuple[bool, str], ...] = (
        (bool(vm.refusal), vm.refusal),
        (vm.opt_out, "opted out of automatic migration"),
        (not vm.known_to_nova, "not known to Nova (reported by an agent only)"),
        (not vm.reported_by_agent, "no agent reports this VM"),
        (
            bool(vm.telemetry_from_wrong_host),
            f"reported by agents on hosts Nova does not place it on: "
            f"{', '.join(vm.telemetry_from_wrong_host)}",
        ),
        (vm.migrating, "already migrating"),
        (host is None, f"source host {vm.host!r} is not in the inventory"),
        (
            host is not None and not is_fresh(host.last_report_at, snapshot.now, config),
            "source host's telemetry is stale",
        ),
        (not is_fresh(vm.metrics.sampled_at, snapshot.now, config), "telemetry is stale"),
        (
            group is not None and group.policy is GroupPolicy.AFFINITY,
            "in an affinity server group: moving it alone would break the group",
        ),
        (
            snapshot.now < vm.quarantined_until,
            f"quarantined for {vm.quarantined_until - snapshot.now:.0f}s more"
            + (f": {vm.parked_reason}" if vm.parked_reason else ""),
        ),
    )
    return next((reason for blocked, reason in checks if blocked), None)


def _cooldown_blocker(vm: Vm, now: float) -> str | None:
    if now < vm.cooldown_until:
        return f"in cooldown for {vm.cooldown_until - now:.0f}s more"
    return None
