"""The contention model and the simulated world."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.sim.world import World, fair_share
from tests.sim.scenarios import tiny


def _share(demand: list[float], vcpus: list[int], hosts: list[int], pcpus: list[int]) -> np.ndarray:
    return fair_share(
        np.array(demand, dtype=np.float64),
        np.array(vcpus, dtype=np.float64),
        np.array(hosts, dtype=np.int64),
        np.array(pcpus, dtype=np.float64),
    )


@pytest.mark.parametrize(
    ("demand", "vcpus", "hosts", "pcpus", "got"),
    [
        pytest.param([0.5, 0.5], [1, 1], [0, 0], [1], [0.5, 0.5], id="exactly-full"),
        pytest.param([1.0, 1.0], [1, 1], [0, 0], [1], [0.5, 0.5], id="two-want-one-pcpu"),
        pytest.param([0.2, 0.3], [2, 2], [0, 0], [4], [0.2, 0.3], id="under-capacity"),
        pytest.param([0.2, 1.0], [1, 1], [0, 0], [1], [0.2, 0.8], id="max-min-small-keeps"),
        pytest.param([1.0, 1.0], [1, 3], [0, 0], [2], [0.5, 0.5], id="per-thread-not-per-vm"),
        pytest.param(
            [1.0, 1.0, 0.1], [1, 1, 1], [0, 0, 1], [1, 1], [0.5, 0.5, 0.1], id="hosts-independent"
        ),
        pytest.param([0.0, 0.0], [4, 4], [0, 0], [1], [0.0, 0.0], id="idle"),
    ],
)
def test_fair_share_table(
    demand: list[float], vcpus: list[int], hosts: list[int], pcpus: list[int], got: list[float]
) -> None:
    assert _share(demand, vcpus, hosts, pcpus) == pytest.approx(got, abs=1e-6)


def test_two_one_vcpu_vms_on_one_pcpu_steal_half_each() -> None:
    demand = np.array([1.0, 1.0])
    got = _share([1.0, 1.0], [1, 1], [0, 0], [1])
    assert demand - got == pytest.approx([0.5, 0.5], abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    vms=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.integers(1, 8), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    ),
    pcpus=st.lists(st.integers(1, 16), min_size=4, max_size=4),
)
def test_fair_share_is_max_min_fair(vms: list[tuple[float, int, int]], pcpus: list[int]) -> None:
    demand = np.array([v[0] for v in vms])
    vcpus = np.array([float(v[1]) for v in vms])
    hosts = np.array([v[2] for v in vms], dtype=np.int64)
    got = fair_share(demand, vcpus, hosts, np.array(pcpus, dtype=np.float64))
    assert np.all(got >= 0)
    assert np.all(got <= demand + 1e-12)
    for h, capacity in enumerate(pcpus):
        on = hosts == h
        if not on.any():
            continue
        wanted = float((demand[on] * vcpus[on]).sum())
        used = float((got[on] * vcpus[on]).sum())
        if wanted <= capacity:
            assert got[on] == pytest.approx(demand[on])  # nobody waits
            continue
        assert used == pytest.approx(capacity, rel=1e-6)  # exactly full
        # Max-min: whoever waits got at least as much as anyone on the host.
        short = on & (got < demand - 1e-6)
        if short.any():
            assert got[short].min() >= got[on].max() - 1e-6


def test_world_is_deterministic_for_a_seed() -> None:
    a, b, c = World(tiny()), World(tiny()), World(tiny(seed=4))
    assert list(a.host_of) == list(b.host_of)
    for k in range(5):
        ta, tb = a.step(k * 60.0, 60.0), b.step(k * 60.0, 60.0)
        assert np.array_equal(ta.demand, tb.demand)
        assert np.array_equal(ta.steal, tb.steal)
    c.step(0.0, 60.0)
    assert not np.array_equal(c.last.demand, World(tiny()).step(0.0, 60.0).demand)


def test_counters_advance_and_restart_on_move() -> None:
    world = World(tiny())
    truth = world.step(0.0, 60.0)
    assert world.cpu_ns == pytest.approx(truth.got * world.vcpus * 60e9)
    assert world.steal_ns == pytest.approx(truth.steal * world.vcpus * 60e9)
    assert truth.got + truth.steal == pytest.approx(truth.demand)
    source = world.host_name(0)
    target = next(h.name for h in world.hosts if h.name != source)
    world.move(0, target)
    assert world.host_name(0) == target
    assert (world.cpu_ns[0], world.steal_ns[0], world.domain_id[0]) == (0.0, 0.0, 2)
    assert world.cpu_ns[1] > 0


def test_demand_follows_the_role_profile_peak() -> None:
    world = World(tiny(noise=0.0))
    peak, night = world.demand(3600.0), world.demand(6 * 3600.0)
    assert peak.mean() > 2 * night.mean()
    assert np.all((peak >= 0) & (peak <= 1))
