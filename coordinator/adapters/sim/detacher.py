"""A simulated orchestrator: remembers which VMs are detached and by which migration,
can be told to refuse or fail, and keeps a log of calls for tests to assert on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from coordinator.errors import DetachError
from coordinator.model import Vm


@dataclass(slots=True)
class SimDetacher:
    detached: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    refuse_detach: DetachError | None = None
    refuse_reattach: DetachError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def detach(self, vm: Vm, migration_id: str) -> None:
        with self._lock:
            self.calls.append(("detach", vm.uuid, migration_id))
            if self.refuse_detach is not None:
                raise self.refuse_detach
            self.detached[vm.uuid] = migration_id

    def reattach(self, vm: Vm, migration_id: str) -> None:
        with self._lock:
            self.calls.append(("reattach", vm.uuid, migration_id))
            if self.refuse_reattach is not None:
                raise self.refuse_reattach
            self.detached.pop(vm.uuid, None)

    def detached_by(self, vm: Vm) -> str | None:
        with self._lock:
            return self.detached.get(vm.uuid)
