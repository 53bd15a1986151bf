"""Hypothesis strategies: random but valid cluster snapshots and configs.

Hypothesis picks a seed and a chaos level; the cluster is then drawn from a
`random.Random` with realistic proportions (a few hot hosts, many calm targets).
Drawing every field through Hypothesis directly skews towards its edge values
(all VMs on the first host, every flag set), which left most plans empty and the
properties vacuous; a failing example is still reproduced exactly from its seed.
"""

from __future__ import annotations

import random
from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from hypothesis import strategies as st

from coordinator.config import Config
from coordinator.model import (
    ClusterSnapshot,
    GroupPolicy,
    Host,
    InFlight,
    ServerGroup,
    Vm,
    VmMetrics,
)
from tests.policy.builders import NOW, config

_T = TypeVar("_T")


class _Dice:
    """`usual` unless this example is chaotic and the dice say otherwise."""

    def __init__(self, rng: random.Random, chaos: float) -> None:
        self.rng = rng
        self.chaos = chaos

    def pick(self, usual: _T, *odd: _T) -> _T:
        return self.rng.choice(odd) if odd and self.rng.random() < self.chaos else usual


def _metrics(rng: random.Random, dice: _Dice, vcpus: int, hot_host: bool) -> VmMetrics:
    if hot_host and rng.random() < 0.6:
        steal, load, samples = rng.uniform(0.05, 0.6), rng.uniform(0.6, 1.2), rng.randint(1, 5)
    else:
        steal = rng.choice([0.0, 0.0, 0.0, 0.005, 0.02, 0.04])
        load, samples = rng.uniform(0.0, 0.7), rng.randint(0, 1)
    return VmMetrics(
        steal=steal,
        load=load,
        cpu_demand=min(load, 1.0) * vcpus,
        dirty_rate_mib_s=rng.choice([0.0, 5.0, 50.0, 400.0]),
        contended_s=10.0 * samples,
        sampled_at=dice.pick(NOW, NOW - 10, NOW - 100, None),
        demand_trend=rng.choice([0.0, 0.0, 0.005, -0.005]),
    )


def build_snapshot(
    seed: int, chaos: float, max_hosts: int = 12, max_vms: int = 40
) -> ClusterSnapshot:
    rng = random.Random(seed)
    dice = _Dice(rng, chaos)
    azs = [f"az{i}" for i in range(rng.randint(1, 3))]
    hosts = [
        Host(
            name=f"h{i:02d}",
            az=azs[i % len(azs)],
            pcpus=rng.choice([4, 8, 16]),
            ram_mib=rng.choice([16, 64, 128]) * 1024,
            cpu_allocation_ratio=rng.choice([1.0, 2.0, 4.0]),
            ram_allocation_ratio=rng.choice([1.0, 1.5]),
            enabled=dice.pick(True, False),
            up=dice.pick(True, False),
            last_report_at=dice.pick(NOW, NOW - 10, NOW - 100, None),
            shared_storage=rng.random() < 0.3,
        )
        for i in range(rng.randint(len(azs), max_hosts))
    ]
    hot = {h.name for h in hosts if rng.random() < 0.35}
    groups = [
        ServerGroup(id=f"g{i}", name=f"group{i}", policy=rng.choice(list(GroupPolicy)))
        for i in range(rng.randint(0, 4))
    ]
    vms = []
    for i in range(rng.randint(0, max_vms)):
        vcpus = rng.choice([1, 2, 4, 8])
        on = rng.choice(hosts)
        vms.append(
            Vm(
                uuid=f"vm-{i:03d}",
                name=f"vm{i}",
                host=on.name,
                vcpus=vcpus,
                ram_mib=rng.choice([1024, 4096, 16384]),
                disk_gib=rng.choice([0.0, 20.0, 20.0, 200.0, 2000.0]),
                role=rng.choice(["", "web", "db"]),
                server_group=rng.choice(["", "", *(g.id for g in groups)]),
                opt_out=dice.pick(False, True),
                metrics=_metrics(rng, dice, vcpus, on.name in hot),
                migrating=dice.pick(False, True),
                cooldown_until=dice.pick(0.0, NOW - 1, NOW, NOW + 100),
                quarantined_until=dice.pick(0.0, NOW + 100),
                known_to_nova=dice.pick(True, False),
            )
        )
    groups = [
        replace(g, members=frozenset(v.uuid for v in vms if v.server_group == g.id)) for g in groups
    ]
    in_flight = tuple(
        InFlight(
            vm_uuid=f"elsewhere-{k}",
            source=source.name,
            target=rng.choice(hosts).name,
            az=source.az,
            bandwidth_mib_s=rng.choice([100.0, 250.0, 500.0]),
            started_at=NOW - 30,
        )
        for k, source in enumerate(rng.choices(hosts, k=rng.randint(0, 2 + int(4 * chaos))))
    )
    quarantined = {h.name: NOW + 60 for h in hosts if dice.pick(False, True)}
    snap = ClusterSnapshot.build(NOW, hosts, vms, groups, in_flight, quarantined)
    # What earlier rounds found pressed: recently, long ago, or never.
    pressed = {h.name: at for h in hosts if (at := dice.pick(None, NOW - 60, NOW - 90_000))}
    # When a move last left the host: just now (its steal predates it), or long ago.
    departed = {h.name: at for h in hosts if (at := dice.pick(None, NOW - 5, NOW - 3_600))}
    return replace(
        snap, pressed_at=MappingProxyType(pressed), departed_at=MappingProxyType(departed)
    )


def build_config(seed: int, chaos: float) -> Config:
    """Random thresholds; the caps are the defaults or, with chaos, anything valid."""
    rng = random.Random(seed)
    dice = _Dice(rng, chaos)
    low_bw = dice.pick(100.0, 50.0, 200.0)
    return config(
        policy={
            "steal_threshold": rng.choice([0.05, 0.02, 0.2]),
            "load_threshold": rng.choice([0.6, 0.3]),
            "sustained_s": 10.0 * rng.randint(1, 3),
            "target_steal_max": rng.choice([0.05, 0.03, 0.5]),
            "target_cpu_fill_max": rng.choice([0.8, 1.2, 0.5]),
            "steal_tie_band": rng.choice([0.01, 0.0, 0.1]),
        },
        limits={
            "max_concurrent": dice.pick(8, 3, 1, 0),
            "max_per_source": dice.pick(2, 1, 3, 0),
            "max_per_target": dice.pick(1, 2, 3, 0),
            "max_per_az": dice.pick(4, 2, 1, 0),
            "bandwidth_budget_mib_s": dice.pick(2000.0, 800.0, 150.0),
            "max_bandwidth_per_migration_mib_s": dice.pick(500.0, 300.0, low_bw),
            "min_bandwidth_per_migration_mib_s": low_bw,
        },
        cost={"min_relief_per_gib": dice.pick(0.0, 0.05)},
    )


_SEEDS = st.integers(0, 2**32 - 1)
_CHAOS = st.sampled_from([0.0, 0.02, 0.08, 0.2])


def snapshots() -> st.SearchStrategy[ClusterSnapshot]:
    return st.builds(build_snapshot, _SEEDS, _CHAOS)


def configs() -> st.SearchStrategy[Config]:
    return st.builds(build_config, _SEEDS, _CHAOS)
