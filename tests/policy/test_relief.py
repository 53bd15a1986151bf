"""Issue 11: clogging not busyness, host-level relief, an AZ beyond rescue, and what
`explain` says about a suffering VM that is not moved."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from coordinator.model import ClusterSnapshot, Skipped, Vm
from coordinator.policy import explain, plan, plan_one
from tests.policy.builders import NOW, config, filler, flight, host, hot, metrics, snapshot, vm

DEFAULT = config()


def _sufferers(on: str, count: int, load: float, steal: float, prefix: str = "s") -> list[Vm]:
    """2-vCPU VMs wanting `load` of each vCPU, `steal` of it stolen, sustained."""
    return [
        vm(
            f"{prefix}{i}",
            on,
            metrics=metrics(steal=steal, load=load, cpu_demand=2 * load, contended_s=50.0),
        )
        for i in range(count)
    ]


def test_a_host_full_of_sufferers_under_the_busy_gate_gets_a_move() -> None:
    # 16 VMs wanting 55% of 2 vCPUs = 17.6 vCPUs on 16 pCPUs: each loses 10 points.
    snap = snapshot([host("h1"), host("h2")], _sufferers("h1", 16, load=0.55, steal=0.10))
    assert plan(snap, config(policy={"load_threshold": 0.60})).empty  # the old gate
    moves = plan(snap, DEFAULT).moves
    assert moves
    assert {m.target for m in moves} == {"h2"}


def test_barely_held_up_busy_vm_is_not_moved() -> None:
    # Steal 8% of a fully busy VM: it waits for 8% of what it wants (threshold 10%).
    busy = vm("b", "h1", metrics=metrics(steal=0.08, load=1.0, cpu_demand=2.0, contended_s=50.0))
    snap = snapshot([host("h1"), host("h2")], [busy])
    assert plan(snap, DEFAULT).empty
    answer = explain(snap, DEFAULT, "b")
    assert answer.verdict.startswith("stays: not contended (its work is barely held up")


def _pressed_host_with_a_cheap_neighbour() -> list[Vm]:
    """h1: 16 pCPUs, 17.2 wanted: a flagged database with a 500 GiB disk and a small,
    unflagged web VM whose departure frees the host."""
    db = vm(
        "db",
        "h1",
        vcpus=8,
        ram_mib=64 * 1024,
        disk_gib=500.0,
        metrics=metrics(steal=0.12, load=0.8, cpu_demand=6.4, contended_s=50.0),
    )
    web = vm("web", "h1", vcpus=4, metrics=metrics(steal=0.04, load=0.9, cpu_demand=3.6))
    rest = [
        vm(f"r{i}", "h1", opt_out=True, metrics=metrics(steal=0.04, load=0.6, cpu_demand=0.9))
        for i in range(8)
    ]
    return [db, web, *rest]


def test_the_cheapest_neighbour_relieves_the_host_instead_of_the_flagged_vm() -> None:
    snap = snapshot([host("h1"), host("h2")], _pressed_host_with_a_cheap_neighbour())
    result = plan(snap, DEFAULT)
    assert [m.vm_uuid for m in result.moves] == ["web"]
    assert "relieves its host h1" in result.moves[0].reason
    skip = next(s for s in result.skipped if s.vm_uuid == "db")
    assert "predicted to be relieved by moving vm-web" in skip.reason
    answer = explain(snap, DEFAULT, "db")
    assert "its host h1 is relieved by moving vm-web" in answer.reasons


def test_no_neighbour_moves_when_nobody_on_the_host_is_clogged() -> None:
    vms = _pressed_host_with_a_cheap_neighbour()
    calm_db = replace(vms[0], metrics=metrics(cpu_demand=6.4))
    snap = snapshot([host("h1"), host("h2")], [calm_db, *vms[1:]])
    assert plan(snap, DEFAULT).empty


def _crowded_az(target_demand: float) -> list[Vm]:
    """h1 over-committed (18 of 16 pCPUs wanted); h2 and h3 busy at `target_demand`."""
    vms = _sufferers("h1", 9, load=1.0, steal=0.12)
    for name in ("h2", "h3"):
        vms += [
            vm(f"{name}-f{i}", name, opt_out=True, metrics=metrics(cpu_demand=target_demand / 4))
            for i in range(4)
        ]
    return vms


def test_an_az_beyond_rescue_still_spreads_the_excess_below_contention() -> None:
    # Targets at 12.8 of 16 pCPUs: with a VM wanting 2 more they would be at 92.5%,
    # above the 80% target fill but under the 95% rescue fill.
    snap = snapshot([host("h1"), host("h2"), host("h3")], _crowded_az(12.8))
    moves = plan(snap, DEFAULT).moves
    assert moves
    for move in moves:
        assert move.target in {"h2", "h3"}
    assert plan(snap, config(policy={"rescue_fill_max": 0.80})).empty


def test_beyond_rescue_says_so_when_no_host_can_take_load() -> None:
    snap = snapshot([host("h1"), host("h2"), host("h3")], _crowded_az(15.5))
    result = plan(snap, DEFAULT)
    assert result.empty
    assert all("AZ az1 is beyond rescue" in s.reason for s in result.skipped)
    assert "beyond rescue" in explain(snap, DEFAULT, "s0").verdict


def test_migrations_per_hour_are_bounded() -> None:
    cooldown = DEFAULT.policy.cooldown_s
    # 80 moves finished ten minutes ago (their cooldowns say so).
    moved = [
        vm(f"m{i}", "h3", cooldown_until=NOW - 600 + cooldown, opt_out=True) for i in range(80)
    ]
    hot_vm = _sufferers("h1", 1, load=0.9, steal=0.3, prefix="hot")
    snap = snapshot([host("h1"), host("h2"), host("h3", ram_mib=1024 * 1024)], hot_vm + moved)
    result = plan(snap, DEFAULT)
    assert result.empty
    assert "80 migrations started within the last hour" in result.skipped[0].reason
    earlier = [replace(v, cooldown_until=NOW - 4000 + cooldown) for v in moved]
    older = snapshot([host("h1"), host("h2"), host("h3", ram_mib=1024 * 1024)], hot_vm + earlier)
    assert plan(older, DEFAULT).moves


def test_a_pinned_target_is_kept_even_when_the_az_is_beyond_rescue() -> None:
    # An operator's `migrate --to` its own host: the rescue must not pick another.
    snap = snapshot([host("h1"), host("h2"), host("h3")], _crowded_az(12.8))
    outcome = plan_one(snap, DEFAULT, "s0", "h1")
    assert isinstance(outcome, Skipped), outcome
    assert "no eligible target" in outcome.reason


def _flickering_host(pressed_at: float | None) -> ClusterSnapshot:
    """h1 as in the cheap-neighbour case, but the database's evidence flickered: this
    reading is under the threshold, so nothing on h1 is clogged right now."""
    vms = _pressed_host_with_a_cheap_neighbour()
    flickered = replace(vms[0], metrics=replace(vms[0].metrics, contended_s=0.0))
    snap = snapshot([host("h1"), host("h2")], [flickered, *vms[1:]])
    memory = {} if pressed_at is None else {"h1": pressed_at}
    return replace(snap, pressed_at=MappingProxyType(memory))


def test_relief_goes_on_while_a_host_found_pressed_stays_over() -> None:
    assert plan(_flickering_host(None), DEFAULT).empty  # no evidence, no move
    recent = _flickering_host(NOW - 300)
    result = plan(recent, DEFAULT)
    assert [m.vm_uuid for m in result.moves] == ["web"]
    assert "clogged VMs there recently, demand still over" in result.moves[0].reason
    assert result.pressed == ()  # memory is refreshed by evidence only, never by itself
    expired = _flickering_host(NOW - DEFAULT.policy.relief_memory_s - 1)
    assert plan(expired, DEFAULT).empty


def test_a_remembered_host_under_its_relief_fill_is_left_alone() -> None:
    snap = _flickering_host(NOW - 60)
    calmer = [replace(v, metrics=replace(v.metrics, cpu_demand=0.5)) for v in snap.vms.values()]
    assert plan(replace(snap, vms=MappingProxyType({v.uuid: v for v in calmer})), DEFAULT).empty


def test_the_plan_names_the_hosts_it_found_pressed() -> None:
    snap = snapshot([host("h1"), host("h2")], _pressed_host_with_a_cheap_neighbour())
    assert plan(snap, DEFAULT).pressed == ("h1",)


def test_relief_plans_for_the_demand_a_rising_host_is_heading_to() -> None:
    # h1 wants 14.2 of 16 pCPUs (under the 90% relief fill) but rises 0.038 vCPU/s:
    # in the three minutes a move takes it will want 21. One VM is clogged already.
    clogged = metrics(steal=0.12, load=0.9, cpu_demand=1.8, contended_s=50.0)
    hot_one = vm("hot", "h1", metrics=replace(clogged, demand_trend=0.002))
    rising = metrics(steal=0.02, load=0.5, cpu_demand=1.0 + 0.2 / 6, demand_trend=0.003)
    rising_vms = [vm(f"r{i}", "h1", metrics=rising) for i in range(12)]
    snap = snapshot([host("h1"), host("h2"), host("h3")], [hot_one, *rising_vms])
    now_only = plan(snap, config(policy={"relief_lookahead_s": 0}))
    assert now_only.empty and now_only.pressed == ()  # not over yet: the hot VM alone
    ahead = plan(snap, DEFAULT)  # is not worth its GiB; the host heading over is
    assert ahead.pressed == ("h1",)
    assert ahead.moves and all(m.source == "h1" for m in ahead.moves)


def _h1_at(demand: float) -> list[Vm]:
    """The cheap-neighbour host, its unmovable residents scaled so h1 wants `demand`."""
    db, web, *rest = _pressed_host_with_a_cheap_neighbour()
    each = (demand - db.metrics.cpu_demand - web.metrics.cpu_demand) / len(rest)
    return [db, web, *(replace(v, metrics=replace(v.metrics, cpu_demand=each)) for v in rest)]


def test_a_host_within_its_pcpus_is_not_found_pressed() -> None:
    # 15.2 of 16 pCPUs wanted: over the 90% relief fill, but the steal is not the
    # host's excess (it has none): no host relief, and no memory to keep it going.
    result = plan(snapshot([host("h1"), host("h2")], _h1_at(15.2)), DEFAULT)
    assert result.pressed == ()
    assert result.empty
    over = plan(snapshot([host("h1"), host("h2")], _h1_at(16.4)), DEFAULT)
    assert over.pressed == ("h1",)
    assert [m.vm_uuid for m in over.moves] == ["web"]


def _leaving(left_behind: float) -> ClusterSnapshot:
    """h1 with a 4-vCPU VM of an earlier round's migration still leaving it, and a
    clogged VM whose steal was read with it still there; `left_behind`: the demand
    the rest of h1 wants."""
    gone = vm("gone", "h1", vcpus=4, migrating=True, metrics=metrics(cpu_demand=3.8))
    hot_vm = vm("hot", "h1", metrics=hot())
    each = (left_behind - hot_vm.metrics.cpu_demand) / 8
    rest = filler("r", "h1", 8, each, steal=0.2)
    hosts = [host("h1"), host("h2"), host("h3")]
    return snapshot(hosts, [gone, hot_vm, *rest], in_flight=(flight("gone", "h1", "h2"),))


def test_a_clogged_vm_waits_while_an_earlier_move_takes_its_hosts_excess() -> None:
    waits = plan(_leaving(15.0), DEFAULT)  # 15 of 16 once it has gone: no excess left
    assert waits.empty
    skip = next(s for s in waits.skipped if s.vm_uuid == "hot")
    assert "predicted to be relieved by moving vm-gone" in skip.reason
    still_over = plan(_leaving(17.0), DEFAULT)  # over its pCPUs even without it
    assert [m.vm_uuid for m in still_over.moves] == ["hot"]


def test_steal_read_before_a_move_left_the_host_does_not_count() -> None:
    snap = snapshot([host("h1"), host("h2")], [vm("hot", "h1", metrics=hot())])
    assert [m.vm_uuid for m in plan(snap, DEFAULT).moves] == ["hot"]
    sustained = DEFAULT.policy.sustained_s
    landed = replace(snap, departed_at=MappingProxyType({"h1": NOW - sustained / 3}))
    assert plan(landed, DEFAULT).empty
    answer = explain(landed, DEFAULT, "hot")
    assert answer.verdict.startswith("stays: its steal was read before a migration left h1")
    settled = replace(snap, departed_at=MappingProxyType({"h1": NOW - sustained}))
    assert [m.vm_uuid for m in plan(settled, DEFAULT).moves] == ["hot"]
