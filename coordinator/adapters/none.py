"""The "none" Detacher: VMs no orchestrator schedules onto need no detach.

It still remembers who asked, in memory, so `detached_by` answers like every other
adapter; after a restart nothing is detached, which is exactly true for this kind.
"""

from __future__ import annotations

from coordinator.model import Vm


class NoDetacher:
    detach_timeout_s = 60.0

    def __init__(self) -> None:
        self._detached: dict[str, str] = {}

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        return ""  # never read

    def detach(self, vm: Vm, migration_id: str) -> bool:
        self._detached[vm.uuid] = migration_id
        return True

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        self._detached.pop(vm.uuid, None)
        return True

    def detached_by(self, vm: Vm) -> str | None:
        return self._detached.get(vm.uuid)
