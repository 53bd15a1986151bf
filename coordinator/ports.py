"""The ports: every external system the coordinator touches, as a small Protocol.

Each port has a real adapter (coordinator/adapters/<system>.py) and a simulated one
(coordinator/adapters/sim/), and one contract test suite runs against both. The
methods are blocking; async callers run them in a thread (asyncio.to_thread).
Adapters raise only the errors of coordinator.errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from coordinator.model import ServerGroup, Vm


@dataclass(frozen=True, slots=True)
class HypervisorInfo:
    """A Nova hypervisor (compute service + resource provider)."""

    name: str
    az: str
    vcpus: int
    memory_mib: int
    enabled: bool
    up: bool
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A Nova server as the compute API reports it."""

    uuid: str
    name: str
    host: str
    az: str
    status: str  # ACTIVE, MIGRATING, ERROR, ...
    task_state: str | None
    vcpus: int
    ram_mib: int
    disk_gib: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    project_id: str = ""  # the project (tenant) that owns it; "" if the API did not say
    # Every IP address Nova lists for it (each network, fixed and floating), in the
    # canonical text form of `ipaddress`: what identifies its own Consul agent.
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MigrationInfo:
    """One Nova migration record of a server (os-migrations / servers/{id}/migrations)."""

    id: str
    server_uuid: str
    status: str  # queued, preparing, running, completed, error, failed, cancelled, ...
    source: str
    dest: str
    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    disk_total_bytes: int = 0
    disk_processed_bytes: int = 0


class Compute(Protocol):
    """Nova: inventory and live migration."""

    def list_hypervisors(self) -> list[HypervisorInfo]: ...

    def list_servers(self) -> list[ServerInfo]: ...

    def list_server_groups(self) -> list[ServerGroup]: ...

    def get_server(self, uuid: str) -> ServerInfo: ...

    def live_migrate(self, uuid: str, target_host: str) -> None:
        """Start a live migration (block_migration='auto'); returns once accepted."""

    def list_migrations(self, uuid: str) -> list[MigrationInfo]:
        """The server's migrations, newest first, finished ones included."""

    def abort_migration(self, uuid: str, migration_id: str) -> None: ...


class Hypervisor(Protocol):
    """The agent link: commands to the agent of one host."""

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        """Cap the domain's migration bandwidth; returns the cap read back (MiB/s)."""

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        """Whether the host's agent reported the domain in its latest report."""


class Detacher(Protocol):
    """Takes a VM out of its orchestrator before a move and puts it back after.

    One adapter per orchestrator tag (a registry: `coordinator.adapters.orchestrators`).
    Both calls are one short, idempotent pass that never waits: the controller calls
    them again on later ticks until they return True, and gives up after
    `detach_timeout_s`. A refusal (`DetachRefused`) means "do not go on".
    """

    @property
    def detach_timeout_s(self) -> float:
        """How long the controller lets `detach` take before it gives up (and reattaches)."""

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        """Why no call could ever act on this orchestrator_ref of a VM with these
        addresses (Nova's) — "" if one could —, with no I/O: the inventory join
        refuses such a VM, since a move of it would end reattaching a ref that nothing
        could release, for ever, or could only detach another VM's entry."""

    def detach(self, vm: Vm, migration_id: str) -> bool:
        """Take the next step out of rotation; True once the VM is out."""

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        """Release this migration's hold; True once the VM is back in rotation. A hold
        of another migration is not released, and not an error: False."""

    def detached_by(self, vm: Vm) -> str | None:
        """The migration id that left this VM detached, if it is detached."""
