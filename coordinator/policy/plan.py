"""The planner: a pure function from a snapshot and the config to a Plan.

Candidates (contended, movable VMs) are taken best relief per GiB first; each gets
the best target its AZ offers under the caps and the bandwidth budget still free,
and the chosen move is applied to the round's scratch state before the next choice.

Purely computational, no side effects: no I/O, no logging, no clock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import replace

from coordinator.config import Config
from coordinator.model import ClusterSnapshot, Host, Move, MoveCost, Plan, Skipped, Vm
from coordinator.policy.azindex import MIN_HOSTS, AzIndexes
from coordinator.policy.cost import migration_cost, relief
from coordinator.policy.detect import (
    ineligibility,
    is_contended,
    manual_ineligibility,
    steal_predates_departure,
)
from coordinator.policy.limits import grant_bandwidth, slot_blocker
from coordinator.policy.scratch import HostLoad, RoundState
from coordinator.policy.targets import TargetChoice, choose_target, has_eligible_target


def plan(snapshot: ClusterSnapshot, config: Config) -> Plan:
    """What to migrate now, in the order to start it, and why the rest is not moved."""
    return plan_with(snapshot, config, MIN_HOSTS)


def plan_with(snapshot: ClusterSnapshot, config: Config, index_min_hosts: int) -> Plan:
    """`plan`, using the array index for AZs of at least `index_min_hosts` hosts
    (tests pass 0 and a huge number to check both paths give the same plan)."""
    state = RoundState.of(snapshot, config.policy.cooldown_s)
    by_az = hosts_by_az(snapshot)
    indexes = AzIndexes(by_az, snapshot, config, state, index_min_hosts)
    clogged = {
        uuid
        for uuid, vm in snapshot.vms.items()
        if is_contended(vm, config.policy)
        and not steal_predates_departure(vm, snapshot, config.policy)
    }
    confirmed = _pressed_hosts(snapshot, config, state, clogged)
    pressed = confirmed | _still_pressed(snapshot, config, state)
    clogged_on = Counter(snapshot.vms[uuid].host for uuid in clogged)
    candidates = [snapshot.vms[uuid] for uuid in clogged]
    candidates += _neighbours(snapshot, config, pressed, clogged)
    candidates.sort(key=lambda vm: (-_priority(vm, snapshot, config, state), vm.uuid))
    # Hosts a migration already leaves (in flight or chosen this round), and which VMs.
    leaving: dict[str, list[str]] = defaultdict(list)
    for flight in snapshot.in_flight:
        leaving[flight.source].append(_name(snapshot, flight.vm_uuid))
    departing = frozenset(leaving)  # left by migrations of earlier rounds
    moves: list[Move] = []
    skipped: list[Skipped] = []
    for vm in candidates:
        flagged = vm.uuid in clogged
        if not flagged and _cluster_full(state, config):
            continue  # an unflagged neighbour is never reported: skipping it is free
        relieved = _relieved_already(
            vm, snapshot, config, state, leaving, flagged, pressed, departing
        )
        outcome: Move | Skipped = relieved or try_move(
            vm, snapshot, config, state, by_az, None, False, indexes
        )
        if isinstance(outcome, Move):
            if not flagged:
                reason = _neighbour_reason(outcome, clogged_on[outcome.source])
                outcome = replace(outcome, reason=reason)
            moves.append(outcome)
            leaving[outcome.source].append(vm.name)
            indexes.refresh(outcome.source, outcome.target)
        elif flagged:
            skipped.append(outcome)
    return Plan(
        now=snapshot.now,
        moves=tuple(moves),
        skipped=tuple(skipped),
        pressed=tuple(sorted(confirmed)),
    )


def _cluster_full(state: RoundState, config: Config) -> bool:
    """No further migration can start anywhere this round."""
    limits = config.limits
    return (
        state.running >= limits.max_concurrent
        or state.started_last_hour >= limits.max_per_hour
        or grant_bandwidth(state, limits) is None
    )


def _over(host: Host, state: RoundState, config: Config) -> bool:
    """Whether the host's predicted demand still needs relief."""
    return _demand_ahead(host, state, config) > config.policy.source_relief_fill * host.pcpus


def _demand_ahead(host: Host, state: RoundState, config: Config) -> float:
    return state.load(host.name).demand_ahead(config.policy.relief_lookahead_s)


def _pressed_hosts(
    snapshot: ClusterSnapshot, config: Config, state: RoundState, clogged: set[str]
) -> set[str]:
    """Hosts with clogged VMs whose VMs want more CPU than the host has: their steal
    is the host's excess, and any VM leaving relieves all of them.

    A host whose demand is within its pCPUs is not pressed even over its relief fill:
    its VMs' steal is not its excess (noise around the reading, or a cause no move of a
    neighbour removes), so it must not keep the relief memory alive either.
    """
    return {
        host.name
        for uuid in clogged
        if (host := snapshot.hosts.get(snapshot.vms[uuid].host)) is not None
        and _demand_ahead(host, state, config) > host.pcpus
    }


def _still_pressed(snapshot: ClusterSnapshot, config: Config, state: RoundState) -> set[str]:
    """Hosts an earlier round found pressed, within `relief_memory_s`, still over."""
    since = snapshot.now - config.policy.relief_memory_s
    return {
        name
        for name, at in snapshot.pressed_at.items()
        if at >= since
        and (host := snapshot.hosts.get(name)) is not None
        and _over(host, state, config)
    }


def _neighbours(
    snapshot: ClusterSnapshot, config: Config, pressed: set[str], clogged: set[str]
) -> list[Vm]:
    """Unflagged, movable VMs on pressed hosts: moving one of them may relieve the
    host at a fraction of the flagged VMs' cost."""
    return [
        vm
        for vm in snapshot.vms.values()
        if vm.host in pressed
        and vm.uuid not in clogged
        and vm.metrics.cpu_demand > 0
        and ineligibility(vm, snapshot, config.policy) is None
    ]


def _relieved_already(
    vm: Vm,
    snapshot: ClusterSnapshot,
    config: Config,
    state: RoundState,
    leaving: Mapping[str, list[str]],
    flagged: bool,
    pressed: set[str],
    departing: frozenset[str],
) -> Skipped | None:
    """A skip when a move already leaving the VM's host is predicted to relieve it
    (an unflagged neighbour is a candidate only while its host is over)."""
    source = snapshot.hosts.get(vm.host)
    if source is None:
        return None
    over = _over(source, state, config)
    settled = bool(leaving.get(vm.host)) and _settled(
        source, over, config, state, pressed, departing
    )
    if not flagged:
        if vm.host in pressed and over and not settled:
            return None
        return _skip(vm, "its host no longer needs relief")
    if not settled:
        return None
    names = ", ".join(leaving[vm.host])
    return _skip(
        vm,
        f"its host {vm.host} is predicted to be relieved by moving {names} "
        f"(demand {_demand_ahead(source, state, config):.1f} of {source.pcpus} pCPUs "
        f"after the move{_rising(state.load(vm.host), config)})",
    )


def _settled(
    source: Host,
    over: bool,
    config: Config,
    state: RoundState,
    pressed: set[str],
    departing: frozenset[str],
) -> bool:
    """Whether the moves leaving `source` are predicted to end its VMs' steal.

    A pressed host is settled at its relief fill. A host that migrations of earlier
    rounds are still leaving is settled once the demand left fits its pCPUs: the
    readings that show its VMs' steal were taken with those VMs still there, so the
    steal is the excess they take away, and moving another VM for it would relieve
    the same excess twice (once they have landed, `steal_predates_departure` keeps
    that steal from counting until readings taken after show it again). `over` is
    `_over(source, ...)`, which the caller has already worked out.
    """
    if source.name in pressed and not over:
        return True
    return source.name in departing and _demand_ahead(source, state, config) <= source.pcpus


def _rising(load: HostLoad, config: Config) -> str:
    if load.demand_trend <= 0 or config.policy.relief_lookahead_s <= 0:
        return ""
    return f", {config.policy.relief_lookahead_s:.0f} s ahead at its present rise"


def _neighbour_reason(move: Move, clogged_there: int) -> str:
    why = (
        f"{clogged_there} clogged VM(s) there"
        if clogged_there
        else "clogged VMs there recently, demand still over"
    )
    return (
        f"relieves its host {move.source} ({why}): "
        f"{move.relief:.1f} stolen vCPUs freed for {move.cost.gib_to_move:.1f} GiB, the "
        f"cheapest relief there; " + move.reason.split("; ", 1)[-1]
    )


def _name(snapshot: ClusterSnapshot, uuid: str) -> str:
    vm = snapshot.vms.get(uuid)
    return vm.name if vm is not None else uuid


def plan_one(
    snapshot: ClusterSnapshot, config: Config, vm_uuid: str, target: str | None = None
) -> Move | Skipped:
    """An operator's manual move: the same filters and caps, but no cooldown, and the
    VM need not be contended. `target` pins the host; None lets the policy choose."""
    vm = snapshot.vms.get(vm_uuid)
    if vm is None:
        return Skipped(vm_uuid=vm_uuid, vm_name="", reason="unknown VM")
    state = RoundState.of(snapshot)
    return try_move(vm, snapshot, config, state, hosts_by_az(snapshot), target, manual=True)


def hosts_by_az(snapshot: ClusterSnapshot) -> Mapping[str, list[Host]]:
    grouped: dict[str, list[Host]] = defaultdict(list)
    for host in snapshot.hosts.values():
        grouped[host.az].append(host)
    return grouped


def try_move(
    vm: Vm,
    snapshot: ClusterSnapshot,
    config: Config,
    state: RoundState,
    by_az: Mapping[str, list[Host]],
    target: str | None,
    manual: bool,
    indexes: AzIndexes | None = None,
) -> Move | Skipped:
    """Plan one VM's move against the round state; on success the state records it."""
    source = snapshot.hosts.get(vm.host)
    check = manual_ineligibility if manual else ineligibility
    blocker = check(vm, snapshot, config.policy)
    if blocker is None and source is not None:
        blocker = slot_blocker(vm.host, source.az, state, config.limits)
    bandwidth = grant_bandwidth(state, config.limits)
    if blocker is None and bandwidth is None:
        blocker = "cluster migration bandwidth budget exhausted"
    if blocker is not None or source is None or bandwidth is None:
        return _skip(vm, blocker or "source host unknown")
    candidates = _target_candidates(snapshot, by_az, source, target)
    if isinstance(candidates, str):
        return _skip(vm, candidates)
    # Without shared storage at the source the cost cannot depend on the target, so a
    # move that cannot be worth it is known before ranking the whole AZ. Ranking it
    # anyway would say nothing new and costs O(hosts) per candidate (seconds at 10k
    # hosts); only when some target is eligible is that the reason given, so the
    # reasons are exactly those of the full path.
    index = indexes.get(source.az) if indexes is not None and target is None else None
    eligible = None if index is None else bool(index.eligible(vm).any())
    if not source.shared_storage:
        _, _, veto = _cost_veto(vm, source, False, bandwidth, config, state, manual)
        if veto is not None and (
            eligible
            if eligible is not None
            else has_eligible_target(vm, candidates, snapshot, config, state)
        ):
            return _skip(vm, veto)
    if index is not None and not eligible:
        choice = index.nobody(vm)  # same answer as choose_target, without the O(hosts) loop
    else:
        choice = choose_target(vm, candidates, snapshot, config, state)
    return _finish(vm, source, choice, candidates, bandwidth, snapshot, config, state, manual)


def _target_candidates(
    snapshot: ClusterSnapshot,
    by_az: Mapping[str, list[Host]],
    source: Host,
    target: str | None,
) -> list[Host] | str:
    if target is None:
        return by_az.get(source.az, [])
    host = snapshot.hosts.get(target)
    if host is None:
        return f"target host {target!r} is not in the inventory"
    if host.az != source.az:
        return f"target host {target} is in AZ {host.az}, the VM is in {source.az}"
    return [host]


def _finish(
    vm: Vm,
    source: Host,
    choice: TargetChoice,
    candidates: list[Host],
    bandwidth: float,
    snapshot: ClusterSnapshot,
    config: Config,
    state: RoundState,
    manual: bool = False,
) -> Move | Skipped:
    if choice.chosen is None:
        choice = _rescue_target(vm, source, choice, candidates, snapshot, config, state)
    if choice.chosen is None:
        if state.load(source.name).demand > source.pcpus:
            return _skip(
                vm,
                f"AZ {source.az} is beyond rescue: no host takes it and stays under "
                f"{config.policy.rescue_fill_max:.0%} of its pCPUs ({_no_target_reason(choice)})",
            )
        return _skip(vm, _no_target_reason(choice))
    target = snapshot.hosts[choice.chosen.host]
    shared = source.shared_storage and target.shared_storage
    cost, gain, veto = _cost_veto(vm, source, shared, bandwidth, config, state, manual)
    if veto is not None:
        return _skip(vm, veto)
    state.take_slot(source.name, target.name, source.az, bandwidth)
    state.apply_move(vm, target.name)
    return Move(
        vm_uuid=vm.uuid,
        vm_name=vm.name,
        source=source.name,
        target=target.name,
        az=source.az,
        bandwidth_mib_s=bandwidth,
        steal=vm.metrics.steal,
        load=vm.metrics.load,
        cost=cost,
        relief=gain,
        targets=choice.considered,
        reason=(
            f"steal {vm.metrics.steal:.1%} with load {vm.metrics.load:.2f}/vCPU for "
            f"{vm.metrics.contended_s:.0f} s; {target.name} has steal "
            f"{choice.chosen.steal:.1%}, {choice.chosen.same_role_vms} same-role VMs, "
            f"{choice.chosen.headroom_cpus:.1f} spare pCPUs after the move "
            f"({choice.chosen.peak_headroom_cpus:.1f} at its VMs' recent peaks)"
        ),
    )


def _rescue_target(
    vm: Vm,
    source: Host,
    choice: TargetChoice,
    candidates: list[Host],
    snapshot: ClusterSnapshot,
    config: Config,
    state: RoundState,
) -> TargetChoice:
    """An AZ beyond rescue: no host stays under `target_cpu_fill_max` with the VM.
    If the source is over-committed, a host that stays under `rescue_fill_max`
    still takes its excess without contention of its own, so fewer VMs suffer."""
    policy = config.policy
    if (
        policy.rescue_fill_max <= policy.target_cpu_fill_max
        or state.load(source.name).demand <= source.pcpus
    ):
        return choice
    relaxed = config.model_copy(
        update={"policy": policy.model_copy(update={"target_cpu_fill_max": policy.rescue_fill_max})}
    )
    rescue = choose_target(vm, candidates, snapshot, relaxed, state)
    return rescue if rescue.chosen is not None else choice


def _cost_veto(
    vm: Vm,
    source: Host,
    shared: bool,
    bandwidth: float,
    config: Config,
    state: RoundState,
    manual: bool = False,
) -> tuple[MoveCost, float, str | None]:
    """The move's cost and relief, and why it is not worth starting (None if it is).
    An operator's manual move is never "not worth it": they may move a calm VM."""
    cost = migration_cost(vm, bandwidth, shared, config.cost)
    # The excess the move relieves is the one it lands into (see relief_lookahead_s).
    gain = relief(vm, _demand_ahead(source, state, config), source.pcpus)
    if not cost.converges:
        return (
            cost,
            gain,
            f"predicted not to converge: {cost.gib_to_move:.1f} GiB in {cost.seconds:.0f}s "
            f"at {bandwidth:.0f} MiB/s",
        )
    if not manual and gain / max(cost.gib_to_move, 1e-9) < config.cost.min_relief_per_gib:
        return cost, gain, f"not worth it: {gain:.2f} vCPU relief for {cost.gib_to_move:.1f} GiB"
    return cost, gain, None


def _no_target_reason(choice: TargetChoice) -> str:
    if not choice.considered:
        return "no eligible target: no other host in the AZ"
    reasons = sorted({s.rejected_because for s in choice.considered})
    return "no eligible target: " + "; ".join(reasons)


def _skip(vm: Vm, reason: str) -> Skipped:
    return Skipped(vm_uuid=vm.uuid, vm_name=vm.name, reason=reason)


def _priority(vm: Vm, snapshot: ClusterSnapshot, config: Config, state: RoundState) -> float:
    """Relief per GiB at the largest per-migration bandwidth: best value first."""
    source = snapshot.hosts.get(vm.host)
    if source is None:
        return 0.0
    bandwidth = config.limits.grant_mib_s
    cost = migration_cost(vm, bandwidth, source.shared_storage, config.cost)
    demand = _demand_ahead(source, state, config)
    gain = relief(vm, demand, source.pcpus)
    # On a pressed host, what counts is how much of the way back to the relief fill
    # the move goes: one VM that covers it beats several small ones that each
    # relieve a sliver while demand keeps rising (each would be a migration).
    needed = demand - config.policy.source_relief_fill * source.pcpus
    if needed > 0:
        gain = max(gain, min(vm.metrics.cpu_demand, needed))
    return gain / max(cost.gib_to_move, 1e-9)
