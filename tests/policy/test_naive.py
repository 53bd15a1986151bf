"""The seed's naive rule, the baseline the policy is measured against."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.policy.naive import NAIVE, plan
from tests.policy.builders import NOW, config, flight, host, metrics, snapshot, vm

DEFAULT = config()


def _hot(uuid: str, on: str, **fields: Any) -> Any:
    values = {"steal": 0.05, "load": 0.5, "cpu_demand": 1.0}
    values.update(fields)
    return vm(uuid, on, metrics=metrics(**values))


@pytest.mark.parametrize(
    ("fields", "moves"),
    [
        pytest.param({}, True, id="at-both-thresholds"),
        pytest.param({"steal": 0.049}, False, id="steal-below-5pct"),
        pytest.param({"load": 0.49}, False, id="load-below-50pct"),
    ],
)
def test_trigger(fields: dict[str, float], moves: bool) -> None:
    snap = snapshot([host("h1"), host("h2")], [_hot("a", "h1", **fields)])
    assert bool(plan(snap, DEFAULT).moves) is moves


def test_least_steal_same_az_host_then_fewest_same_role() -> None:
    snap = snapshot(
        [host("h1"), host("calm"), host("busy"), host("other", az="az2"), host("roled")],
        [
            vm("a", "h1", role="web", metrics=metrics(steal=0.2, load=0.9)),
            vm("x", "busy", metrics=metrics(steal=0.04)),
            vm("r", "roled", role="web"),
            vm("c", "calm", role="db"),
        ],
    )
    (move,) = plan(snap, DEFAULT).moves
    assert move.target == "calm"  # least steal, and no other web VM there
    assert move.bandwidth_mib_s == NAIVE.bandwidth_mib_s == 400.0


def test_ten_concurrent_including_those_in_flight() -> None:
    hosts = [host(f"h{i}") for i in range(30)]
    vms = [_hot(f"v{i}", f"h{i}", steal=0.3, load=0.9) for i in range(15)]
    assert len(plan(snapshot(hosts, vms), DEFAULT).moves) == 10
    flights = tuple(flight(f"f{i}", "h20", "h21") for i in range(7))
    assert len(plan(snapshot(hosts, vms, in_flight=flights), DEFAULT).moves) == 3


@pytest.mark.parametrize(
    ("finished_ago", "moves"),
    [
        pytest.param(1800.0, False, id="moved-30-min-ago"),
        pytest.param(3700.0, True, id="moved-over-an-hour-ago"),
    ],
)
def test_one_hour_cooldown(finished_ago: float, moves: bool) -> None:
    # The actuator stamps cooldown_until = finished + policy.cooldown_s (6 h).
    until = NOW - finished_ago + DEFAULT.policy.cooldown_s
    hot_vm = vm("a", "h1", metrics=metrics(steal=0.2, load=0.9), cooldown_until=until)
    assert bool(plan(snapshot([host("h1"), host("h2")], [hot_vm]), DEFAULT).moves) is moves


def test_never_across_az_nor_onto_a_full_host() -> None:
    snap = snapshot(
        [host("h1"), host("h2", az="az2"), host("full", ram_mib=4096)],
        [_hot("a", "h1", steal=0.2, load=0.9), vm("big", "full", ram_mib=4096)],
    )
    result = plan(snap, DEFAULT)
    assert result.moves == ()
    assert result.skipped[0].reason == "no host of the AZ fits it"
