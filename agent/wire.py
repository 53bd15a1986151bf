"""The only place that converts agent readings to and from the v1 protobuf contract."""

from __future__ import annotations

from collections.abc import Iterable

from agent import __version__
from agent.collector import Collection
from agent.sources.base import (
    DomainReading,
    HostReading,
    LoadOrigin,
    MigrationJobReading,
    StealOrigin,
)
from coordinator.api.v1 import agent_pb2 as pb

_STEAL = {
    StealOrigin.LIBVIRT_DELAY: pb.STEAL_SOURCE_LIBVIRT_DELAY,
    StealOrigin.SCHEDSTAT: pb.STEAL_SOURCE_SCHEDSTAT,
    StealOrigin.SIMULATED: pb.STEAL_SOURCE_SIMULATED,
}
_LOAD = {
    LoadOrigin.GUEST_AGENT: pb.LOAD_SOURCE_GUEST_AGENT,
    LoadOrigin.HOST_ESTIMATE: pb.LOAD_SOURCE_HOST_ESTIMATE,
    LoadOrigin.SIMULATED: pb.LOAD_SOURCE_SIMULATED,
}


def register_message(
    host: str, zone: str, reading: HostReading, interval_s: int, boot_id: str
) -> pb.AgentMessage:
    return pb.AgentMessage(
        register=pb.Register(
            host=host,
            availability_zone=zone,
            pcpus=reading.pcpus,
            memory_bytes=reading.memory_total_bytes,
            agent_version=__version__,
            report_interval_s=interval_s,
            boot_id=boot_id,
        )
    )


def host_report(collection: Collection, seq: int) -> pb.HostReport:
    """The report for one cycle; `dropped_reports` and `replayed` are set on sending.

    A domain libvirt gives no vCPU statistics for (vcpus=0: starting, paused, a driver
    without them) has nothing to measure and is left out rather than sent as zeros."""
    return pb.HostReport(
        seq=seq,
        monotonic_ns=collection.monotonic_ns,
        wall_time_unix_ns=collection.wall_time_unix_ns,
        host=host_counters(collection.host),
        vms=[vm_sample(domain) for domain in measurable(collection.domains)],
        collection_ns=collection.collection_ns,
    )


def measurable(domains: Iterable[DomainReading]) -> list[DomainReading]:
    """The domains a report can carry: those with vCPU statistics."""
    return [domain for domain in domains if domain.vcpus > 0]


def host_counters(reading: HostReading) -> pb.HostCounters:
    return pb.HostCounters(
        user_ns=reading.user_ns,
        system_ns=reading.system_ns,
        idle_ns=reading.idle_ns,
        iowait_ns=reading.iowait_ns,
        steal_ns=reading.steal_ns,
        total_ns=reading.total_ns,
        loadavg_1m=reading.loadavg_1m,
        memory_total_bytes=reading.memory_total_bytes,
        memory_available_bytes=reading.memory_available_bytes,
    )


def vm_sample(domain: DomainReading) -> pb.VmSample:
    sample = pb.VmSample(
        instance_uuid=domain.instance_uuid,
        name=domain.name,
        domain_uuid=domain.domain_uuid,
        domain_id=domain.domain_id,
        vcpus=domain.vcpus,
        cpu_time_ns=domain.cpu_time_ns,
        steal_ns=domain.steal_ns,
        steal_source=_STEAL[domain.steal_origin],
        vcpu_delay_ns=list(domain.vcpu_delay_ns),
        memory_bytes=domain.memory_bytes,
        disk_bytes=domain.disk_bytes,
        load_source=_LOAD[domain.load_origin],
        guest_load_1m=domain.guest_load_1m or 0.0,
        nova_metadata=domain.nova_metadata,
    )
    if domain.migration is not None:
        sample.migration.CopyFrom(migration_job(domain.migration))
    if domain.dirty_rate_mib_s is not None:
        sample.dirty_rate_mib_s = domain.dirty_rate_mib_s
    return sample


def migration_job(job: MigrationJobReading) -> pb.MigrationJob:
    return pb.MigrationJob(
        data_processed_bytes=job.data_processed_bytes,
        data_remaining_bytes=job.data_remaining_bytes,
        data_total_bytes=job.data_total_bytes,
        bandwidth_mib_s=job.bandwidth_mib_s,
        memory_dirty_rate_bytes_s=job.memory_dirty_rate_bytes_s,
        elapsed_ms=job.elapsed_ms,
    )
