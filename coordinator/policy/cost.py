"""The cost and the benefit of one live migration.

Cost: QEMU pre-copy. The first round copies all RAM; each later round copies what
the guest dirtied meanwhile, until the rest fits in the allowed downtime. With
dirty rate d and bandwidth b each round is d/b times the previous one, so it
converges only when d/b < 1 (and in practice well below: `max_dirty_to_bandwidth`).
Without shared storage the disk is copied too (block migration).

Benefit: the stolen CPU the move relieves, in vCPUs: the VM's own steal, or, when
the source host is over-committed, the part of the host's excess demand that leaves
with it (which relieves its neighbours as well).

Purely computational, no side effects.
"""

from __future__ import annotations

from coordinator.config import CostConfig
from coordinator.model import MoveCost, Vm

MIB_PER_GIB = 1024.0


def dirty_rate_mib_s(vm: Vm, config: CostConfig) -> float:
    measured = vm.metrics.dirty_rate_mib_s
    if measured > 0:
        return measured
    return config.dirty_mib_s_per_busy_vcpu * max(vm.metrics.cpu_demand, 0.0)


def migration_cost(
    vm: Vm, bandwidth_mib_s: float, shared_storage: bool, config: CostConfig
) -> MoveCost:
    """Bytes to copy and seconds at the capped bandwidth, and whether it converges."""
    disk_gib = 0.0 if shared_storage else vm.disk_gib
    dirty = dirty_rate_mib_s(vm, config)
    return transfer(vm.ram_mib, dirty, disk_gib, bandwidth_mib_s, config)


def transfer(
    ram_mib: float, dirty_mib_s: float, disk_gib: float, bandwidth_mib_s: float, config: CostConfig
) -> MoveCost:
    """The one migration-duration model: pre-copy of the RAM at the dirty rate plus the
    local disk (0 with shared storage), at the capped bandwidth. The cost estimate uses
    it with the measured or estimated dirty rate; the simulated Nova with the true one
    (a move that does not converge never completes there: the time budget aborts it)."""
    ram_sent, converges = precopy_mib(ram_mib, dirty_mib_s, bandwidth_mib_s, config)
    total_mib = ram_sent + disk_gib * MIB_PER_GIB
    seconds = total_mib / bandwidth_mib_s
    return MoveCost(
        gib_to_move=total_mib / MIB_PER_GIB,
        seconds=seconds,
        converges=converges and seconds <= config.max_migration_s,
    )


def precopy_mib(
    ram_mib: float, dirty_mib_s: float, bandwidth_mib_s: float, config: CostConfig
) -> tuple[float, bool]:
    """MiB sent by pre-copy plus the final stop-and-copy, and whether it converged."""
    if dirty_mib_s / bandwidth_mib_s > config.max_dirty_to_bandwidth:
        return ram_mib, False
    stop_copy_mib = bandwidth_mib_s * config.max_downtime_ms / 1000.0
    sent, remaining = 0.0, ram_mib
    for _ in range(config.max_precopy_rounds):
        sent += remaining
        remaining = dirty_mib_s * (remaining / bandwidth_mib_s)
        if remaining <= stop_copy_mib:
            return sent + remaining, True
    return sent + remaining, False


def relief(vm: Vm, source_demand: float, source_pcpus: int) -> float:
    """Stolen vCPUs the move relieves (see the module docstring)."""
    own = vm.metrics.steal * vm.vcpus
    excess = max(source_demand - source_pcpus, 0.0)
    return max(own, min(excess, vm.metrics.cpu_demand))
