"""A simulated hypervisor: counters that advance like a real host's, with no libvirt.

Other components' tests run simulated agents against a real coordinator with it:

    clock = FakeClock()
    host = SimHost("cmp-1", [SimVm("vm-a", vcpus=4, demand=0.9, steal=0.3)], clock=clock)
    clock.advance(10.0)   # every counter moves by 10 s worth of work

Per vCPU and per second of clock, a VM runs `demand × (1 − steal)` and waits
`demand × steal` on the run queue: `steal` is exactly the ratio the coordinator
should compute back from two reports. Demand and steal can be changed at any time;
counters accumulate piecewise, so a change only affects time after it.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.errors import DomainNotFound
from agent.sources.base import (
    DomainReading,
    HostReading,
    LoadOrigin,
    MigrationJobReading,
    StealOrigin,
)

_NS = 1_000_000_000


class FakeClock:
    """A monotonic clock that moves only when told to (seconds, as a float)."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self._now = start_s

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


@dataclass
class SimVm:
    """One simulated domain; `demand` and `steal` are fractions of each vCPU."""

    name: str
    vcpus: int = 2
    demand: float = 0.5
    steal: float = 0.0
    instance_uuid: str = ""
    memory_bytes: int = 2 * 1024**3
    disk_bytes: int = 20 * 1024**3
    migration: MigrationJobReading | None = None
    cpu_time_ns: float = field(default=0.0, repr=False)
    delay_ns: float = field(default=0.0, repr=False)
    max_speed_mib_s: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.instance_uuid:
            # Deterministic from the name, so tests can compute it.
            self.instance_uuid = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, self.name))


class SimHost:
    """DomainSource + HostSource over in-memory VMs driven by `clock` (seconds)."""

    def __init__(
        self,
        name: str,
        vms: Iterable[SimVm] = (),
        pcpus: int = 32,
        memory_bytes: int = 256 * 1024**3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.pcpus = pcpus
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._vms = {vm.instance_uuid: vm for vm in vms}
        self._last = clock()
        self._idle_ns = 0.0
        self._busy_ns = 0.0
        self._lock = threading.Lock()
        self.boot = str(uuidlib.uuid4())

    @property
    def vms(self) -> list[SimVm]:
        return list(self._vms.values())

    def add(self, vm: SimVm) -> None:
        with self._lock:
            self._advance()
            self._vms[vm.instance_uuid] = vm

    def remove(self, instance_uuid: str) -> SimVm:
        with self._lock:
            self._advance()
            return self._vms.pop(instance_uuid)

    def set_load(self, instance_uuid: str, demand: float, steal: float) -> None:
        with self._lock:
            self._advance()
            vm = self._vms[instance_uuid]
            vm.demand, vm.steal = demand, steal

    def domains(self) -> list[DomainReading]:
        with self._lock:
            self._advance()
            return [_reading(vm) for vm in self._vms.values()]

    def set_migration_speed(self, instance_uuid: str, bandwidth_mib_s: int) -> int:
        with self._lock:
            vm = self._vms.get(instance_uuid)
            if vm is None:
                raise DomainNotFound(f"unknown domain {instance_uuid}")
            vm.max_speed_mib_s = bandwidth_mib_s
            return vm.max_speed_mib_s

    def migration_speed(self, instance_uuid: str) -> int:
        with self._lock:
            vm = self._vms.get(instance_uuid)
            if vm is None:
                raise DomainNotFound(f"unknown domain {instance_uuid}")
            return vm.max_speed_mib_s

    def close(self) -> None:
        """Nothing to release."""

    def host(self) -> HostReading:
        with self._lock:
            self._advance()
            demand = sum(vm.vcpus * vm.demand * (1 - vm.steal) for vm in self._vms.values())
            return HostReading(
                user_ns=int(self._busy_ns),
                system_ns=0,
                idle_ns=int(self._idle_ns),
                iowait_ns=0,
                steal_ns=0,
                total_ns=int(self._busy_ns + self._idle_ns),
                loadavg_1m=demand,
                memory_total_bytes=self.memory_bytes,
                memory_available_bytes=max(0, self.memory_bytes - self._vm_memory()),
                pcpus=self.pcpus,
            )

    def boot_id(self) -> str:
        return self.boot

    def _vm_memory(self) -> int:
        return sum(vm.memory_bytes for vm in self._vms.values())

    def _advance(self) -> None:
        now = self._clock()
        elapsed_ns = max(0.0, now - self._last) * _NS
        self._last = now
        busy = 0.0
        for vm in self._vms.values():
            run = vm.vcpus * vm.demand * (1 - vm.steal) * elapsed_ns
            vm.cpu_time_ns += run
            vm.delay_ns += vm.vcpus * vm.demand * vm.steal * elapsed_ns
            busy += run
        capacity = self.pcpus * elapsed_ns
        self._busy_ns += min(busy, capacity)
        self._idle_ns += max(0.0, capacity - busy)


def _reading(vm: SimVm) -> DomainReading:
    per_vcpu = int(vm.delay_ns) // vm.vcpus if vm.vcpus else 0
    return DomainReading(
        instance_uuid=vm.instance_uuid,
        name=vm.name,
        domain_uuid=vm.instance_uuid,
        domain_id=1,
        vcpus=vm.vcpus,
        cpu_time_ns=int(vm.cpu_time_ns),
        vcpu_delay_ns=(per_vcpu,) * vm.vcpus,
        steal_origin=StealOrigin.SIMULATED,
        memory_bytes=vm.memory_bytes,
        disk_bytes=vm.disk_bytes,
        nova_metadata=True,
        load_origin=LoadOrigin.SIMULATED,
        migration=vm.migration,
    )
