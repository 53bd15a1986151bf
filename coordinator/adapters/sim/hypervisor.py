"""Simulated agent links: per-host sets of reported domains and applied caps."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from coordinator.errors import AgentCommandFailed, AgentNotConnected


@dataclass(slots=True)
class SimHypervisor:
    domains: dict[str, set[str]] = field(default_factory=dict)  # host -> VM uuids
    caps: dict[str, int] = field(default_factory=dict)  # VM uuid -> MiB/s
    cap_log: list[tuple[str, str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        with self._lock:
            if host not in self.domains:
                raise AgentNotConnected(f"no agent stream from {host}")
            if vm_uuid not in self.domains[host]:
                raise AgentCommandFailed(f"{host}: unknown domain {vm_uuid}")
            self.caps[vm_uuid] = mib_s
            self.cap_log.append((host, vm_uuid, mib_s))
            return mib_s

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        with self._lock:
            return vm_uuid in self.domains.get(host, set())

    def move(self, vm_uuid: str, target: str) -> None:
        """What the agents would report after a migration."""
        with self._lock:
            for vms in self.domains.values():
                vms.discard(vm_uuid)
            self.domains.setdefault(target, set()).add(vm_uuid)
