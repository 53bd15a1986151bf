"""The libvirt source: pure parsing of real records, and the test:/// driver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest

from agent.errors import DomainNotFound, SourceError
from agent.sources.base import StealOrigin
from agent.sources.libvirt import (
    LibvirtSource,
    StealMode,
    parse_domain_stats,
    parse_guest_load,
    parse_job_stats,
    parse_nova_metadata,
    vcpu_threads_from_qmp,
)

# A record as libvirt 9.0 returned it for a 2-vCPU QEMU guest here.
REAL_RECORD: dict[str, Any] = {
    "state.state": 1,
    "state.reason": 1,
    "cpu.time": 18815448000,
    "vcpu.current": 2,
    "vcpu.maximum": 2,
    "vcpu.0.state": 1,
    "vcpu.0.time": 17990000000,
    "vcpu.0.wait": 0,
    "vcpu.0.delay": 2122905101,
    "vcpu.1.state": 1,
    "vcpu.1.time": 7990000000,
    "vcpu.1.wait": 0,
    "vcpu.1.delay": 1000,
    "balloon.current": 131072,
    "balloon.maximum": 131072,
    "block.count": 2,
    "block.0.capacity": 10737418240,
    "block.1.capacity": 1048576,
}


@pytest.mark.parametrize(
    ("record", "delays", "memory", "disk"),
    [
        pytest.param(REAL_RECORD, (2122905101, 1000), 128 * 1024**2, 10738466816, id="qemu"),
        pytest.param(
            {k: v for k, v in REAL_RECORD.items() if not k.endswith(".delay")},
            None,
            128 * 1024**2,
            10738466816,
            id="old-libvirt-no-delay",
        ),
        pytest.param({"state.state": 1}, None, 0, 0, id="test-driver"),
    ],
)
def test_parse_domain_stats(
    record: dict[str, Any], delays: tuple[int, ...] | None, memory: int, disk: int
) -> None:
    parsed = parse_domain_stats(record)
    assert parsed.vcpu_delay_ns == delays
    assert parsed.memory_bytes == memory and parsed.disk_bytes == disk
    if "vcpu.current" in record:
        assert parsed.vcpu_time_ns == (17990000000, 7990000000)


@pytest.mark.parametrize(
    ("xml", "name"),
    [
        pytest.param(
            '<nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">'
            "<nova:package version='27.1.0'/><nova:name>web-1</nova:name></nova:instance>",
            "web-1",
            id="prefixed",
        ),
        pytest.param("<instance><name> db-2 </name></instance>", "db-2", id="as-libvirt-returns"),
        pytest.param("<instance><flavor name='m1'/></instance>", None, id="no-name"),
        pytest.param("<instance", None, id="broken"),
    ],
)
def test_parse_nova_metadata(xml: str, name: str | None) -> None:
    assert parse_nova_metadata(xml) == name


def test_parse_job_stats() -> None:
    assert parse_job_stats({"type": libvirt.VIR_DOMAIN_JOB_NONE}, 10) is None
    job = parse_job_stats(
        {
            "type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            "data_processed": 100,
            "data_remaining": 50,
            "data_total": 150,
            "memory_dirty_rate": 10,
            "memory_page_size": 4096,
            "time_elapsed": 1234,
        },
        200,
    )
    assert job is not None
    assert (job.data_processed_bytes, job.data_remaining_bytes, job.data_total_bytes) == (
        100,
        50,
        150,
    )
    assert job.bandwidth_mib_s == 200 and job.memory_dirty_rate_bytes_s == 40960
    assert job.elapsed_ms == 1234


def test_vcpu_threads_come_back_in_vcpu_order() -> None:
    reply = (
        '{"return": [{"cpu-index": 1, "thread-id": 902, "qom-path": "/machine/peripheral/c1"},'
        ' {"cpu-index": 0, "thread-id": 901}], "id": "libvirt-1"}'
    )
    assert vcpu_threads_from_qmp(reply) == (901, 902)


NODE_XML = """<node>
<domain type='test'>
  <name>nova-vm</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory>1048576</memory><vcpu>4</vcpu>
  <metadata><nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'>
    <nova:name>web-1</nova:name></nova:instance></metadata>
  <os><type>hvm</type></os>
</domain>
<domain type='test'>
  <name>plain-vm</name><uuid>66666666-2222-3333-4444-555555555555</uuid>
  <memory>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>
</domain>
</node>"""


@pytest.fixture
def node(tmp_path: Path) -> str:
    path = tmp_path / "node.xml"
    path.write_text(NODE_XML)
    return f"test://{path}"


def test_identity_from_nova_metadata_else_libvirt(node: str) -> None:
    source = LibvirtSource(node, StealMode.AUTO)
    try:
        by_uuid = {d.domain_uuid: d for d in source.domains()}
    finally:
        source.close()
    nova = by_uuid["11111111-2222-3333-4444-555555555555"]
    plain = by_uuid["66666666-2222-3333-4444-555555555555"]
    assert (nova.name, nova.nova_metadata, nova.instance_uuid) == ("web-1", True, nova.domain_uuid)
    assert (plain.name, plain.nova_metadata) == ("plain-vm", False)
    assert plain.instance_uuid == plain.domain_uuid
    assert nova.migration is None  # the test driver has no jobs: None, not a crash


def test_default_driver_lists_its_domain() -> None:
    source = LibvirtSource("test:///default")
    try:
        [reading] = source.domains()
    finally:
        source.close()
    assert reading.name == "test" and reading.domain_id == 1
    # The test driver reports no vCPU stats: nothing measured, nothing invented.
    assert (reading.vcpus, reading.vcpu_delay_ns, reading.cpu_time_ns) == (0, (), 0)
    assert reading.steal_origin is StealOrigin.SCHEDSTAT


@pytest.mark.parametrize(
    ("uuid", "error"),
    [
        pytest.param("11111111-2222-3333-4444-555555555555", SourceError, id="driver-refuses"),
        pytest.param("00000000-0000-0000-0000-000000000000", DomainNotFound, id="unknown"),
    ],
)
def test_set_speed_errors_are_wrapped(node: str, uuid: str, error: type[Exception]) -> None:
    source = LibvirtSource(node)
    try:
        with pytest.raises(error):
            source.set_migration_speed(uuid, 100)
    finally:
        source.close()


def test_reconnects_after_the_connection_dies(node: str) -> None:
    opened: list[libvirt.virConnect] = []

    def opener(uri: str) -> libvirt.virConnect:
        opened.append(libvirt.open(uri))
        return opened[-1]

    source = LibvirtSource(node, opener=opener)
    assert len(source.domains()) == 2
    opened[0].close()  # what a libvirtd restart looks like from here
    with pytest.raises(SourceError):
        source.domains()
    assert len(source.domains()) == 2
    assert len(opened) == 2
    source.close()


def test_unreachable_libvirt_is_a_source_error() -> None:
    source = LibvirtSource("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(SourceError, match="cannot connect"):
        source.domains()


@pytest.mark.parametrize(
    ("reply", "load"),
    [
        pytest.param('{"return": {"load1m": 3.5, "load5m": 2.0, "load15m": 1.0}}', 3.5, id="ok"),
        pytest.param('{"error": {"class": "CommandNotFound"}}', None, id="old-agent"),
        pytest.param('{"return": {"load1m": -1}}', None, id="nonsense"),
        # From inside the tenant's VM; json.loads reads these as inf and nan.
        pytest.param('{"return": {"load1m": Infinity}}', None, id="infinity"),
        pytest.param('{"return": {"load1m": 1e400}}', None, id="overflows-to-inf"),
        pytest.param('{"return": {"load1m": NaN}}', None, id="nan"),
        pytest.param('{"return": {"load1m": 0}}', 0.0, id="idle"),
        pytest.param("not json", None, id="garbage"),
    ],
)
def test_parse_guest_load(reply: str, load: float | None) -> None:
    assert parse_guest_load(reply) == load
