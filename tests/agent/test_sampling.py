"""Pure rates from two readings, cap re-application, and the sim source's contract."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.commands import CommandExecutor
from agent.sampling import caps_to_check, forget_departed, steal_table, vm_steal
from agent.sources.base import DomainReading, MigrationJobReading, StealOrigin
from agent.sources.sim import FakeClock, SimHost, SimVm
from coordinator.api.v1 import agent_pb2 as pb

S = 1_000_000_000


def _reading(**over: object) -> DomainReading:
    base = DomainReading(
        instance_uuid="u1",
        name="vm",
        domain_uuid="u1",
        domain_id=3,
        vcpus=2,
        cpu_time_ns=0,
        vcpu_delay_ns=(0, 0),
        steal_origin=StealOrigin.LIBVIRT_DELAY,
    )
    return replace(base, **over)  # type: ignore[arg-type]  # test helper: fields by name


@pytest.mark.parametrize(
    ("new", "steal", "busy"),
    [
        pytest.param(_reading(cpu_time_ns=S, vcpu_delay_ns=(S // 2, S // 2)), 0.5, 0.5, id="half"),
        pytest.param(_reading(cpu_time_ns=2 * S, vcpu_delay_ns=(0, 0)), 0.0, 1.0, id="no-wait"),
        pytest.param(_reading(domain_id=4, cpu_time_ns=S), None, None, id="restarted"),
        pytest.param(_reading(vcpus=4, vcpu_delay_ns=(0,) * 4), None, None, id="resized"),
    ],
)
def test_vm_steal(new: DomainReading, steal: float | None, busy: float | None) -> None:
    row = vm_steal(_reading(), new, elapsed_ns=S)
    if steal is None:
        assert row is None
    else:
        assert row is not None and (row.steal, row.busy) == (steal, busy)
        assert row.load == row.busy + row.steal


def test_guest_agent_load_wins_over_host_estimate() -> None:
    new = _reading(cpu_time_ns=S, guest_load_1m=3.0)
    row = vm_steal(_reading(), new, S)
    assert row is not None and row.load == 1.5


@given(
    vcpus=st.integers(1, 64),
    demand=st.floats(0, 1),
    steal=st.floats(0, 1),
    seconds=st.floats(0.5, 3600),
)
def test_sim_counters_give_back_the_configured_steal(
    vcpus: int, demand: float, steal: float, seconds: float
) -> None:
    clock = FakeClock()
    host = SimHost("h", [SimVm("a", vcpus=vcpus, demand=demand, steal=steal)], clock=clock)
    first = host.domains()
    clock.advance(seconds)
    [row] = steal_table(first, host.domains(), int(seconds * S))
    assert row.steal == pytest.approx(demand * steal, abs=1e-6)
    assert row.busy == pytest.approx(demand * (1 - steal), abs=1e-6)
    assert -1e-6 <= row.steal <= 1 + 1e-6 and -1e-6 <= row.busy <= 1 + 1e-6


@given(old=st.integers(0, 10**15), delta=st.integers(-(10**12), 10**12), dt=st.integers(1, 10**12))
def test_never_a_negative_rate(old: int, delta: int, dt: int) -> None:
    new = max(0, old + delta)
    row = vm_steal(
        _reading(cpu_time_ns=old, vcpu_delay_ns=(old, 0)),
        _reading(cpu_time_ns=new, vcpu_delay_ns=(new, 0)),
        dt,
    )
    assert row is None or (row.steal >= 0 and row.busy >= 0)


JOB = MigrationJobReading(1, 2, 3, bandwidth_mib_s=8796093022207, memory_dirty_rate_bytes_s=0,
                          elapsed_ms=5)  # fmt: skip  # libvirt's "unlimited" when Nova set none


@pytest.mark.parametrize(
    ("readings", "due"),
    [
        pytest.param([_reading()], [], id="no-job"),
        pytest.param([_reading(migration=JOB)], [("u1", 100)], id="job-of-a-capped-domain"),
        pytest.param(
            [_reading(migration=replace(JOB, bandwidth_mib_s=100))], [("u1", 100)],
            id="job-seemingly-at-our-cap-is-read-back-anyway",
        ),
        pytest.param([_reading(instance_uuid="u2", migration=JOB)], [], id="not-ours"),
    ],
)  # fmt: skip
def test_caps_to_check(readings: list[DomainReading], due: list[tuple[str, int]]) -> None:
    assert caps_to_check({"u1": 100}, readings) == due


def test_departed_domains_lose_their_cap() -> None:
    assert forget_departed({"u1": 1, "u2": 2}, [_reading()]) == {"u1": 1}


def test_executor_reapplies_when_a_job_starts_with_another_cap() -> None:
    vm = SimVm("a")
    host = SimHost("h", [vm])
    executor = CommandExecutor(host)
    command = pb.Command(
        id="1", set_migration_speed=pb.SetMigrationSpeed(instance_uuid=vm.instance_uuid,
                                                         bandwidth_mib_s=300)
    )  # fmt: skip
    assert executor.execute(command).applied_bandwidth_mib_s == 300
    # Nova starts the job with its own bandwidth, replacing ours.
    vm.max_speed_mib_s = 0
    vm.migration = replace(JOB, bandwidth_mib_s=0)
    assert executor.reapply(host.domains()) == [vm.instance_uuid]
    assert vm.max_speed_mib_s == 300
    # Read back at our cap: nothing to re-apply.
    assert executor.reapply(host.domains()) == []
    host.remove(vm.instance_uuid)
    executor.reapply(host.domains())
    assert executor.wanted_caps == {}
