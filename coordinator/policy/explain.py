"""`explain`: why a VM would or would not be moved now, in words an operator reads.

Purely computational, no side effects.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.config import Config
from coordinator.model import ClusterSnapshot, Move, TargetScore, Vm
from coordinator.policy.detect import (
    clog_ratio,
    ineligibility,
    is_contended,
    steal_predates_departure,
)
from coordinator.policy.plan import plan


@dataclass(frozen=True, slots=True)
class Explanation:
    verdict: str
    reasons: tuple[str, ...]
    move: Move | None = None


def explain(snapshot: ClusterSnapshot, config: Config, vm_uuid: str) -> Explanation:
    vm = snapshot.vms.get(vm_uuid)
    if vm is None:
        return Explanation(verdict="unknown VM", reasons=(f"no VM {vm_uuid!r} in the snapshot",))
    reasons = [_detection_line(vm, config)]
    blocker = ineligibility(vm, snapshot, config.policy)
    if blocker:
        reasons.append(f"not movable: {blocker}")
    the_plan = plan(snapshot, config)
    move = next((m for m in the_plan.moves if m.vm_uuid == vm_uuid), None)
    if move is not None:
        reasons.append(move.reason)
        reasons.extend(_target_lines(move))
        return Explanation(
            verdict=f"would move to {move.target}", reasons=tuple(reasons), move=move
        )
    relieving = [m.vm_name for m in the_plan.moves if m.source == vm.host]
    if relieving:
        reasons.append(f"its host {vm.host} is relieved by moving {', '.join(relieving)}")
    if not is_contended(vm, config.policy):
        return Explanation(
            verdict=f"stays: not contended ({_not_clogged_because(vm, config)})",
            reasons=tuple(reasons),
        )
    if steal_predates_departure(vm, snapshot, config.policy):
        return Explanation(verdict=f"stays: {_predates_because(vm, snapshot, config)}",
                           reasons=tuple(reasons))  # fmt: skip
    skip = next((s for s in the_plan.skipped if s.vm_uuid == vm_uuid), None)
    why = skip.reason if skip else "not selected in this round"
    if not blocker:
        reasons.append(why)
    return Explanation(verdict=f"stays: {why}", reasons=tuple(reasons))


def _detection_line(vm: Vm, config: Config) -> str:
    m, p = vm.metrics, config.policy
    gate = f", busy gate {p.load_threshold:.2f}" if p.load_threshold > 0 else ""
    return (
        f"steal {m.steal:.1%} (threshold {p.steal_threshold:.0%}), waited for "
        f"{clog_ratio(vm):.0%} of the CPU it wanted (clog threshold {p.clog_threshold:.0%}), "
        f"load {m.load:.2f}/vCPU{gate}, contended for {m.contended_s:.0f} s of the "
        f"{p.sustained_s:.0f} s required"
    )


def _not_clogged_because(vm: Vm, config: Config) -> str:
    """The first detection clause the VM fails, in an operator's words."""
    m, p = vm.metrics, config.policy
    if m.steal <= p.steal_threshold:
        return f"steal {m.steal:.1%} not above {p.steal_threshold:.0%}"
    if clog_ratio(vm) <= p.clog_threshold:
        return (
            f"its work is barely held up: it waited for {clog_ratio(vm):.0%} of the CPU it "
            f"wanted, not above {p.clog_threshold:.0%}"
        )
    if p.load_threshold > 0 and m.load <= p.load_threshold:
        return f"load {m.load:.2f}/vCPU not above the busy gate {p.load_threshold:.2f}"
    return f"contended for {m.contended_s:.0f} s of the {p.sustained_s:.0f} s required"


def _predates_because(vm: Vm, snapshot: ClusterSnapshot, config: Config) -> str:
    departed = snapshot.departed_at[vm.host]
    return (
        f"its steal was read before a migration left {vm.host} "
        f"{snapshot.now - departed:.0f} s ago, taking that excess with it: it counts "
        f"again after {config.policy.sustained_s:.0f} s of readings taken since"
    )


def _at_peaks(s: TargetScore) -> str:
    if s.peak_headroom_cpus < 0:
        return f"over by {-s.peak_headroom_cpus:.1f} pCPUs at its VMs' recent peaks"
    return f"{s.peak_headroom_cpus:.1f} spare at its VMs' recent peaks"


def _target_lines(move: Move) -> list[str]:
    return [
        f"target {s.host}: "
        + (
            f"chosen (steal {s.steal:.1%}, {s.same_role_vms} same-role, "
            f"{s.headroom_cpus:.1f} spare pCPUs, {_at_peaks(s)})"
            if s.host == move.target
            else (
                f"eligible, ranked lower (steal {s.steal:.1%}, {s.same_role_vms} same-role, "
                f"{_at_peaks(s)})"
                if s.eligible
                else f"rejected: {s.rejected_because}"
            )
        )
        for s in move.targets
    ]
