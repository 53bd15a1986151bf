"""The dirty-rate fields of a getAllDomainStats record, and their way to the policy."""

from __future__ import annotations

import math

import pytest

from agent.sources.libvirt import parse_domain_stats
from coordinator.api.v1 import agent_pb2
from coordinator.rpc import report
from coordinator.state import TelemetryFolder

BASE = {"vcpu.current": 1, "vcpu.0.time": 10, "vcpu.0.delay": 1}


@pytest.mark.parametrize(
    ("fields", "rate", "measuring"),
    [
        pytest.param({}, None, False, id="libvirt-without-dirtyrate"),
        pytest.param({"dirtyrate.calc_status": 0}, None, False, id="never-started"),
        pytest.param(
            {"dirtyrate.calc_status": 1, "dirtyrate.megabytes_per_second": 9},
            None,
            True,
            id="measuring-reports-nothing-yet",
        ),
        pytest.param(
            {"dirtyrate.calc_status": 2, "dirtyrate.megabytes_per_second": 37},
            37.0,
            False,
            id="measured",
        ),
    ],
)
def test_parse(fields: dict[str, int], rate: float | None, measuring: bool) -> None:
    parsed = parse_domain_stats({**BASE, **fields})
    assert parsed.dirty_rate_mib_s == rate
    assert parsed.dirty_rate_measuring is measuring


def _sample(**fields: object) -> agent_pb2.VmSample:
    return agent_pb2.VmSample(
        instance_uuid="00000000-0000-4000-8000-000000000001",
        name="vm",
        vcpus=2,
        cpu_time_ns=10**9,
        steal_ns=10**8,
        **fields,  # type: ignore[arg-type]  # protobuf's generated kwargs are loose
    )


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan], ids=["negative", "inf", "nan"])
def test_the_coordinator_rejects_impossible_dirty_rates(bad: float) -> None:
    """The sample is dropped with its reason; the rest of the host's report counts."""
    message = agent_pb2.HostReport(monotonic_ns=10**10, vms=[_sample(dirty_rate_mib_s=bad)])
    parsed = report(message, at=1.0, max_vms=10)
    assert parsed.vms == () and parsed.dropped == ("bad_counter",)


def test_the_last_measured_rate_stands_until_the_next() -> None:
    folder = TelemetryFolder()
    uuid = "00000000-0000-4000-8000-000000000001"
    rates = [12.5, None, None, 3.0]
    seen = []
    for step, rate in enumerate(rates, start=1):
        fields = {} if rate is None else {"dirty_rate_mib_s": rate}
        sample = agent_pb2.VmSample(
            instance_uuid=uuid,
            name="vm",
            vcpus=2,
            cpu_time_ns=step * 10**9,
            steal_ns=step * 10**8,
            **fields,  # type: ignore[arg-type]  # protobuf's generated kwargs are loose
        )
        message = agent_pb2.HostReport(monotonic_ns=step * 10**10, vms=[sample])
        (reading,) = report(message, at=10.0 * step, max_vms=10).vms
        metrics = folder.observe(reading.uuid, reading.sample)
        seen.append(None if metrics is None else metrics.dirty_rate_mib_s)
    # The first measurement came with the baseline reading: it still counts.
    assert seen == [None, 12.5, 12.5, 3.0]
