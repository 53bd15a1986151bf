"""Hostile telemetry never crashes ingest nor reaches the model unvalidated (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator import rpc
from coordinator.api.v1 import agent_pb2
from coordinator.state import TelemetryFolder

U64 = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=10**13)
counters = st.one_of(SMALL, U64)
LOAD_SOURCES = [agent_pb2.LOAD_SOURCE_GUEST_AGENT, agent_pb2.LOAD_SOURCE_HOST_ESTIMATE]
loads = st.floats(allow_nan=True, allow_infinity=True)

vm_samples = st.builds(
    agent_pb2.VmSample,
    instance_uuid=st.one_of(st.sampled_from(["vm-1", "vm-2"]), st.text(max_size=300)),
    name=st.text(max_size=50),
    domain_id=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    vcpus=st.one_of(st.integers(min_value=0, max_value=8), st.integers(0, 2**32 - 1)),
    cpu_time_ns=counters,
    steal_ns=counters,
    load_source=st.sampled_from(LOAD_SOURCES),
    guest_load_1m=loads,
    memory_bytes=U64,
    disk_bytes=U64,
)  # fmt: skip
reports = st.builds(
    agent_pb2.HostReport,
    seq=U64,
    monotonic_ns=st.one_of(SMALL, U64),
    vms=st.lists(vm_samples, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(reports, min_size=1, max_size=8))
def test_reports_are_rejected_or_fold_into_sane_metrics(
    messages: list[agent_pb2.HostReport],
) -> None:
    folder = TelemetryFolder()
    for i, message in enumerate(messages):
        try:
            parsed = rpc.report(message, at=1000.0 + i, max_vms=3)
        except rpc.Rejected as exc:
            assert exc.reason in {"too_many_vms", "bad_counter", "bad_vm", "duplicate_vm"}
            continue
        assert len(parsed.vms) <= 3
        for reading in parsed.vms:
            reading.sample.validate()  # what passed rpc is physically possible
            folded = folder.observe(reading.uuid, reading.sample)
            if folded is not None:
                assert 0.0 <= folded.steal <= 1.0
                assert math.isfinite(folded.load) and folded.load >= 0
                assert math.isfinite(folded.cpu_demand) and folded.cpu_demand >= 0


registers = st.builds(
    agent_pb2.Register,
    host=st.text(max_size=300),
    availability_zone=st.text(max_size=20),
    pcpus=st.integers(0, 2**32 - 1),
    memory_bytes=U64,
)


@given(registers)
def test_registration_accepts_only_plain_host_names(message: agent_pb2.Register) -> None:
    try:
        registration = rpc.registration(message)
    except rpc.Rejected:
        return
    assert registration.host == message.host
    assert registration.host.isprintable() and " " not in registration.host
    assert registration.pcpus > 0
