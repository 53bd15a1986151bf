"""A coordinator that owns some availability zones sees and touches only those.

`AzScopedCompute` wraps the Compute port (Nova): listings keep only the hypervisors and
servers of the owned AZs, so inventory, snapshot and planning are scoped without the
controller knowing; and every action is checked against the AZs again, so a request
that names a server or target host outside them is refused (fail closed) rather than
sent to Nova. Live migrations never cross an AZ, so coordinators of disjoint AZ groups
never need each other's VMs.
"""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.errors import ComputeForbidden
from coordinator.model import ServerGroup
from coordinator.ports import Compute, HypervisorInfo, MigrationInfo, ServerInfo


class AzScopedCompute:
    def __init__(self, inner: Compute, azs: Iterable[str]) -> None:
        self._inner = inner
        self.azs = frozenset(azs)
        # Servers seen in our AZs: a server keeps its AZ (a live migration stays in
        # it), so polling a migration's progress costs no extra Nova call.
        self._ours: set[str] = set()

    def list_hypervisors(self) -> list[HypervisorInfo]:
        return [h for h in self._inner.list_hypervisors() if h.az in self.azs]

    def list_servers(self) -> list[ServerInfo]:
        servers = [s for s in self._inner.list_servers() if s.az in self.azs]
        self._ours = {s.uuid for s in servers}
        return servers

    def list_server_groups(self) -> list[ServerGroup]:
        # Groups may span AZs; members outside ours are simply never in the snapshot.
        return self._inner.list_server_groups()

    def get_server(self, uuid: str) -> ServerInfo:
        server = self._inner.get_server(uuid)
        self._check(server)
        return server

    def live_migrate(self, uuid: str, target_host: str) -> None:
        self.get_server(uuid)  # asked afresh before the one call that moves a VM
        targets = {h.name for h in self.list_hypervisors()}
        if target_host not in targets:
            raise ComputeForbidden(
                f"target {target_host!r} is not a hypervisor of this coordinator's AZs "
                f"({', '.join(sorted(self.azs))})"
            )
        self._inner.live_migrate(uuid, target_host)

    def list_migrations(self, uuid: str) -> list[MigrationInfo]:
        self._owned(uuid)
        return self._inner.list_migrations(uuid)

    def abort_migration(self, uuid: str, migration_id: str) -> None:
        self._owned(uuid)
        self._inner.abort_migration(uuid, migration_id)

    def _owned(self, uuid: str) -> None:
        if uuid not in self._ours:
            self.get_server(uuid)

    def _check(self, server: ServerInfo) -> None:
        if server.az not in self.azs:
            raise ComputeForbidden(
                f"server {server.uuid} is in AZ {server.az!r}, not one of this "
                f"coordinator's ({', '.join(sorted(self.azs))})"
            )
        self._ours.add(server.uuid)


def scoped(compute: Compute, azs: Iterable[str]) -> Compute:
    """`compute` limited to `azs`; unchanged when `azs` is empty (all AZs)."""
    owned = list(azs)
    return AzScopedCompute(compute, owned) if owned else compute
