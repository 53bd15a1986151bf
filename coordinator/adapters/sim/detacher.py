"""A simulated orchestrator: remembers which VMs are detached and by which migration,
can be told to refuse, fail or be slow, and keeps a log of calls for tests to assert on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from coordinator.errors import DetachError
from coordinator.model import Vm


@dataclass(slots=True)
class SimDetacher:
    detached: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    refuse_detach: Exception | None = None  # raised by every detach while set
    refuse_reattach: Exception | None = None  # raised by every reattach while set
    passes_to_detach: int = 1  # detach calls until the VM is out of rotation
    detach_timeout_s: float = 60.0
    _passes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        return ""  # any ref names a simulated node

    def detach(self, vm: Vm, migration_id: str) -> bool:
        with self._lock:
            self.calls.append(("detach", vm.uuid, migration_id))
            if self.refuse_detach is not None:
                raise self.refuse_detach
            holder = self.detached.get(vm.uuid)
            if holder is not None and holder != migration_id:
                raise DetachError(f"{vm.uuid} is detached by migration {holder}")
            self.detached[vm.uuid] = migration_id
            self._passes[vm.uuid] = self._passes.get(vm.uuid, 0) + 1
            return self._passes[vm.uuid] >= self.passes_to_detach

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        with self._lock:
            self.calls.append(("reattach", vm.uuid, migration_id))
            if self.refuse_reattach is not None:
                raise self.refuse_reattach
            if self.detached.get(vm.uuid) == migration_id:
                del self.detached[vm.uuid]
            self._passes.pop(vm.uuid, None)
            return True

    def detached_by(self, vm: Vm) -> str | None:
        with self._lock:
            return self.detached.get(vm.uuid)
