"""An in-memory Nova with the semantics the contract tests pin on the real one.

    same host, another AZ, a full target or an anti-affinity clash → 400 NoValidHost
        (Nova records the attempt as a migration in status "error")
    unknown host                    → 400 NoValidHost (no migration record)
    a second migrate while one runs → 409 TaskStateConflict
    a migration                     → MIGRATING for `migration_s` (or `duration_s(...)`), then
                                      ACTIVE on the target
    abort                           → the server stays on the source, migration "cancelled"

Time comes from an injected clock and migrations advance lazily whenever the
simulated Nova is read, so tests can run on a fake clock or on real time.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from coordinator.errors import (
    ComputeUnavailable,
    NoValidHost,
    ServerNotFound,
    TaskStateConflict,
)
from coordinator.model import GroupPolicy, ServerGroup
from coordinator.ports import HypervisorInfo, MigrationInfo, ServerInfo

# Every server belongs to a project in Nova; the simulated ones to this one unless told.
SIM_PROJECT = "sim-project"


def _nth_address(n: int) -> str:
    """A distinct address in 10.0.0.0/8 for the n-th server (16 million before a repeat)."""
    return str(ipaddress.IPv4Address(0x0A000001 + n % 0xFFFFFE))


@dataclass(slots=True)
class _Migration:
    info: MigrationInfo
    ends_at: float  # inf: never converges, runs until aborted
    fails: bool = False  # ends in "error" at ends_at, the server stays on the source


@dataclass(slots=True)
class SimCompute:
    """Compute port over plain dictionaries; `fail_next` injects one error."""

    clock: Callable[[], float]
    migration_s: float = 5.0
    # How long moving this server to that host takes; `migration_s` for every move if unset.
    duration_s: Callable[[str, str], float] | None = None
    # After how many seconds that move fails part-way (None: it does not fail).
    failure_s: Callable[[str, str], float | None] | None = None
    hypervisors: dict[str, HypervisorInfo] = field(default_factory=dict)
    servers: dict[str, ServerInfo] = field(default_factory=dict)
    groups: dict[str, ServerGroup] = field(default_factory=dict)
    migrations: list[_Migration] = field(default_factory=list)
    fail_next: Exception | None = None
    failing: Exception | None = None  # raised by every call while set (an outage)
    # Raised by the next live_migrate instead of accepting it (403, 409, 5xx, ...).
    refuse_next_migrate: Exception | None = None
    # Raised by the next live_migrate *after* Nova accepted it (a lost 202: timeout).
    lose_next_accept: Exception | None = None
    live_migrate_calls: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- building the world -------------------------------------------------
    def add_hypervisor(self, name: str, az: str, vcpus: int = 64, memory_mib: int = 262144) -> None:
        self.hypervisors[name] = HypervisorInfo(
            name=name, az=az, vcpus=vcpus, memory_mib=memory_mib, enabled=True, up=True
        )

    def add_server(
        self,
        uuid: str,
        host: str,
        name: str = "",
        vcpus: int = 2,
        ram_mib: int = 2048,
        metadata: Mapping[str, str] | None = None,
        group: str = "",
        project_id: str = SIM_PROJECT,
        addresses: tuple[str, ...] | None = None,
    ) -> None:
        """`addresses`: the server's IPs; by default one fixed address of its own, as
        a server Nova booted on one network has."""
        if addresses is None:
            addresses = (_nth_address(len(self.servers)),)
        self.servers[uuid] = ServerInfo(
            uuid=uuid,
            name=name or uuid[:8],
            host=host,
            az=self.hypervisors[host].az,
            status="ACTIVE",
            task_state=None,
            vcpus=vcpus,
            ram_mib=ram_mib,
            disk_gib=0.0,
            metadata=dict(metadata or {}),
            project_id=project_id,
            addresses=addresses,
        )
        if group:
            g = self.groups[group]
            self.groups[group] = replace(g, members=g.members | {uuid})

    def add_group(self, group_id: str, policy: GroupPolicy, name: str = "") -> None:
        self.groups[group_id] = ServerGroup(id=group_id, name=name or group_id, policy=policy)

    # -- the port -----------------------------------------------------------
    def list_hypervisors(self) -> list[HypervisorInfo]:
        self._check()
        return list(self.hypervisors.values())

    def list_servers(self) -> list[ServerInfo]:
        with self._lock:
            self._check()
            self._advance()
            return list(self.servers.values())

    def list_server_groups(self) -> list[ServerGroup]:
        self._check()
        return list(self.groups.values())

    def get_server(self, uuid: str) -> ServerInfo:
        with self._lock:
            self._check()
            self._advance()
            return self._server(uuid)

    def live_migrate(self, uuid: str, target_host: str) -> None:
        with self._lock:
            self._check()
            self._advance()
            self.live_migrate_calls.append((uuid, target_host))
            refused, self.refuse_next_migrate = self.refuse_next_migrate, None
            if refused is not None:
                raise refused
            server = self._server(uuid)
            if server.status != "ACTIVE" or server.task_state is not None:
                raise TaskStateConflict(
                    f"Nova 409: Cannot 'os-migrateLive' instance {uuid} while it is in "
                    f"task_state {server.task_state}"
                )
            if target_host not in self.hypervisors:
                raise NoValidHost(f"Nova 400: Compute host {target_host} could not be found.")
            why = self._unschedulable(server, target_host)
            if why:
                self._record(server, "", "error", ends_at=self.clock())
                raise NoValidHost(f"Nova 400: No valid host was found. {why}")
            seconds = self.duration_s(uuid, target_host) if self.duration_s else self.migration_s
            fails_after = self.failure_s(uuid, target_host) if self.failure_s else None
            if fails_after is not None:
                seconds = fails_after
            self._record(server, target_host, "running", ends_at=self.clock() + seconds)
            self.migrations[-1].fails = fails_after is not None
            self.servers[uuid] = replace(server, status="MIGRATING", task_state="migrating")
            lost, self.lose_next_accept = self.lose_next_accept, None
            if lost is not None:
                raise lost

    def list_migrations(self, uuid: str) -> list[MigrationInfo]:
        with self._lock:
            self._check()
            self._advance()
            self._server(uuid)
            mine = [m.info for m in self.migrations if m.info.server_uuid == uuid]
            return sorted(mine, key=lambda m: int(m.id), reverse=True)

    def abort_migration(self, uuid: str, migration_id: str) -> None:
        with self._lock:
            self._check()
            self._advance()
            for m in self.migrations:
                if m.info.id == migration_id and m.info.server_uuid == uuid:
                    if m.info.status != "running":
                        raise TaskStateConflict(
                            f"Nova 409: migration {migration_id} is {m.info.status}"
                        )
                    m.info = replace(m.info, status="cancelled")
                    self.servers[uuid] = replace(
                        self.servers[uuid], status="ACTIVE", task_state=None
                    )
                    return
            raise ServerNotFound(f"Nova 404: no migration {migration_id} of {uuid}")

    # -- internals ----------------------------------------------------------
    def _check(self) -> None:
        if self.failing is not None:
            raise self.failing
        error, self.fail_next = self.fail_next, None
        if error is not None:
            raise error

    def _server(self, uuid: str) -> ServerInfo:
        server = self.servers.get(uuid)
        if server is None:
            raise ServerNotFound(f"Nova 404: Instance {uuid} could not be found.")
        return server

    def _unschedulable(self, server: ServerInfo, target: str) -> str:
        host = self.hypervisors[target]
        if target == server.host:
            return "the server is already on that host"
        if host.az != server.az or not (host.enabled and host.up):
            return "the target is in another AZ or is down"
        for group in self.groups.values():
            if server.uuid in group.members and group.policy is GroupPolicy.ANTI_AFFINITY:
                others = group.members - {server.uuid}
                if any(self.servers[o].host == target for o in others if o in self.servers):
                    return "anti-affinity"
        return ""

    def _record(self, server: ServerInfo, dest: str, status: str, ends_at: float) -> None:
        info = MigrationInfo(
            id=str(len(self.migrations) + 1),
            server_uuid=server.uuid,
            status=status,
            source=server.host,
            dest=dest,
        )
        self.migrations.append(_Migration(info, ends_at))

    def _advance(self) -> None:
        now = self.clock()
        for m in self.migrations:
            if m.info.status == "running" and now >= m.ends_at:
                m.info = replace(m.info, status="error" if m.fails else "completed")
                server = self.servers[m.info.server_uuid]
                host = server.host if m.fails else m.info.dest
                self.servers[server.uuid] = replace(
                    server, host=host, status="ACTIVE", task_state=None
                )


def unavailable() -> ComputeUnavailable:
    """The error a dead Nova API gives (for `fail_next`)."""
    return ComputeUnavailable("Nova unavailable: connection refused")
