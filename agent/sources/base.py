"""What every measurement source hands to the collector: raw counters, never rates.

A source is anything that implements `DomainSource` (per-VM counters and the
migration bandwidth cap) and/or `HostSource` (the host's /proc view). The libvirt
source, the procfs source and the simulated source all produce these same frozen
readings, so the collector, the wire conversion and the tests never care which one
ran.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class StealOrigin(enum.Enum):
    """Where a domain's per-vCPU run delay came from."""

    LIBVIRT_DELAY = "libvirt_delay"
    SCHEDSTAT = "schedstat"
    SIMULATED = "simulated"


class LoadOrigin(enum.Enum):
    """Where a domain's load figure came from."""

    GUEST_AGENT = "guest_agent"
    HOST_ESTIMATE = "host_estimate"
    SIMULATED = "simulated"


@dataclass(frozen=True)
class MigrationJobReading:
    """An outgoing migration job of a domain, as `virDomainGetJobStats` reports it."""

    data_processed_bytes: int
    data_remaining_bytes: int
    data_total_bytes: int
    bandwidth_mib_s: int
    memory_dirty_rate_bytes_s: int
    elapsed_ms: int


@dataclass(frozen=True)
class DomainReading:
    """One running domain's cumulative counters at one instant."""

    instance_uuid: str
    name: str
    domain_uuid: str
    domain_id: int
    vcpus: int
    cpu_time_ns: int
    """Sum of vcpu.<n>.time: what the guest actually ran."""
    vcpu_delay_ns: tuple[int, ...]
    """Per vCPU, time runnable but waiting for a host CPU (the guest's steal)."""
    steal_origin: StealOrigin
    memory_bytes: int = 0
    disk_bytes: int = 0
    nova_metadata: bool = False
    load_origin: LoadOrigin = LoadOrigin.HOST_ESTIMATE
    guest_load_1m: float | None = None
    migration: MigrationJobReading | None = None
    dirty_rate_mib_s: float | None = None
    """Guest memory dirtied per second, from libvirt's dirty-rate calculation; None
    until one has finished (or where the hypervisor has none)."""

    @property
    def steal_ns(self) -> int:
        return sum(self.vcpu_delay_ns)


@dataclass(frozen=True)
class HostReading:
    """The host's /proc/stat "cpu" line (ns), load average and memory."""

    user_ns: int
    system_ns: int
    idle_ns: int
    iowait_ns: int
    steal_ns: int
    total_ns: int
    loadavg_1m: float
    memory_total_bytes: int
    memory_available_bytes: int
    pcpus: int


class DomainSource(Protocol):
    """Per-domain counters and the one write the agent ever does: the migration cap."""

    def domains(self) -> list[DomainReading]:
        """Every running domain, from as few hypervisor calls as possible."""
        ...

    def set_migration_speed(self, instance_uuid: str, bandwidth_mib_s: int) -> int:
        """Apply the migration bandwidth cap and return the value read back (MiB/s).

        Raises DomainNotFound for an unknown domain, SourceError for anything else.
        """
        ...

    def migration_speed(self, instance_uuid: str) -> int:
        """The migration bandwidth cap in force (MiB/s), read back; may block for
        seconds while a migration runs, so it is never called on the collection path.

        Raises DomainNotFound for an unknown domain, SourceError for anything else.
        """
        ...

    def close(self) -> None: ...


class HostSource(Protocol):
    """The hypervisor's own counters."""

    def host(self) -> HostReading: ...

    def boot_id(self) -> str: ...
