"""The model's small derived values."""

from __future__ import annotations

import pytest

from coordinator.model import mean_steal
from tests.policy.builders import flight, metrics, snapshot, vm


@pytest.mark.parametrize(
    ("steals_and_vcpus", "expected"),
    [
        pytest.param([], 0.0, id="no-vms"),
        pytest.param([(0.2, 2)], 0.2, id="one-vm"),
        pytest.param([(0.4, 1), (0.0, 3)], 0.1, id="weighted-by-vcpus"),
    ],
)
def test_mean_steal_is_vcpu_weighted(
    steals_and_vcpus: list[tuple[float, int]], expected: float
) -> None:
    vms = [
        vm(f"v{i}", "h1", vcpus=vcpus, metrics=metrics(steal=steal))
        for i, (steal, vcpus) in enumerate(steals_and_vcpus)
    ]
    assert mean_steal(vms) == pytest.approx(expected)


def test_bandwidth_in_use_sums_the_in_flight_caps() -> None:
    flights = (flight("a", "h1", "h2", bw=300.0), flight("b", "h3", "h4", bw=200.0))
    assert snapshot([], [], in_flight=flights).bandwidth_in_use == 500.0
    assert snapshot([], []).bandwidth_in_use == 0.0
