"""Pain counted from the World's true state, churn and network saturation figures."""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.config import LimitsConfig
from coordinator.sim.figures import moved_again_within, saturated_minutes
from coordinator.sim.pain import PainTally
from coordinator.sim.policies import run_day
from coordinator.sim.runner import DayResult, MigrationRecord
from tests.sim.scenarios import tiny


def test_pain_counts_every_vm_minute_at_or_above_ten_percent() -> None:
    tally = PainTally()
    demand = np.array([0.45, 0.9, 0.3, 0.0])
    steal = np.array([0.10, 0.2, 0.05, 0.0])
    vcpus = np.array([2.0, 4.0, 1.0, 8.0])
    tally.add(demand, steal, vcpus, 60.0)
    tally.add(demand, steal, vcpus, 60.0)
    assert tally.vm_minutes == 4.0  # the 45%-demand VM counts: it lost a fifth of its CPU
    assert tally.busy_vm_minutes == 2.0
    assert tally.stolen_vcpu_hours == pytest.approx(2 * (0.2 + 0.8 + 0.05) / 60)
    assert tally.p95_steal == pytest.approx(0.2)


def test_a_day_reports_pain_beside_the_busy_yardstick() -> None:
    result = run_day(tiny(), "none")
    pain = result.extra
    assert pain["pain_vm_minutes"] >= pain["busy_pain_vm_minutes"] > 0
    assert pain["busy_pain_vm_minutes"] == pytest.approx(result.contended_vm_minutes, rel=0.05)
    assert 0 < pain["p95_steal"] <= 1


def _record(vm: str, start: float, end: float, src: str = "a", dst: str = "b") -> MigrationRecord:
    return MigrationRecord(
        vm_uuid=vm,
        vm_name=vm,
        source=src,
        target=dst,
        started_s=start,
        ends_s=end,
        bandwidth_mib_s=400.0,
        gib=1.0,
        succeeds=True,
        steal_before=0.2,
        outcome="done",
        finished_s=end,
    )


def _day(*records: MigrationRecord) -> DayResult:
    return DayResult(
        balancing=True,
        step_s=60.0,
        contended_vm_minutes=0.0,
        p95_steal_busy=0.0,
        max_steal=0.0,
        migrations=list(records),
        peak_bandwidth_mib_s=0.0,
        bandwidth_budget_mib_s=2000.0,
        cluster_steal=[0.0] * 120,
        contended_vms=[0] * 120,
    )


def test_moved_again_within_an_hour_counts_vms_not_moves() -> None:
    day = _day(
        _record("x", 0, 100),
        _record("x", 3000, 3100),  # 48 min after the first ended
        _record("x", 5000, 5100),
        _record("y", 0, 100),
        _record("y", 3800, 3900),  # 62 min later: fine
    )
    assert moved_again_within(day) == 1


def test_saturated_minutes_by_fabric_and_by_link() -> None:
    limits = LimitsConfig(fabric_mib_s=1000.0, link_mib_s=900.0)
    # Two moves of 400 on different hosts: 800 < 1000 on the fabric, 400 per link.
    apart = _day(_record("x", 0, 600, "a", "b"), _record("y", 0, 600, "c", "d"))
    assert saturated_minutes(apart, limits) == 0
    # Three at once: 1200 >= 1000 on the fabric for the 5 minutes they overlap.
    crowd = _day(*(_record(v, 0, 300, v + "s", v + "t") for v in "xyz"))
    assert saturated_minutes(crowd, limits) == 5
    # Three leaving one host: 1200 on its 900 MiB/s link even though the fabric is fine.
    fabric_ok = LimitsConfig(fabric_mib_s=5000.0, link_mib_s=900.0)
    one_source = _day(*(_record(v, 0, 120, "a", v + "t") for v in "xyz"))
    assert saturated_minutes(one_source, fabric_ok) == 2
