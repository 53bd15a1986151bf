"""Pure arithmetic on two counter readings: what the agent computes locally.

Purely computational, no side effects, no clock: callers pass the readings and the
monotonic time between them. The coordinator computes its own rates from the raw
counters (coordinator/state.py, same definitions); the agent needs these only for
`--once --json` and for deciding when a migration cap must be re-applied.

    steal = Δ(sum of vCPU run delay) / (vCPUs × Δt)
    busy  = Δ(sum of vCPU run time)  / (vCPUs × Δt)
    load  = guest load average / vCPUs with a guest agent, else busy + steal
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.sources.base import DomainReading, LoadOrigin, StealOrigin


@dataclass(frozen=True)
class VmSteal:
    """One domain's rates over an interval (fractions of each vCPU)."""

    instance_uuid: str
    name: str
    vcpus: int
    steal: float
    busy: float
    load: float
    steal_origin: StealOrigin
    load_origin: LoadOrigin

    def as_dict(self) -> dict[str, object]:
        return {
            "instance_uuid": self.instance_uuid,
            "name": self.name,
            "vcpus": self.vcpus,
            "steal": round(self.steal, 4),
            "busy": round(self.busy, 4),
            "load": round(self.load, 4),
            "steal_source": self.steal_origin.value,
            "load_source": self.load_origin.value,
        }


def same_incarnation(old: DomainReading, new: DomainReading) -> bool:
    """False when counters restarted: a new domain id, other vCPUs, or a counter
    that went backwards (a migrated-in or restarted domain)."""
    return (
        old.domain_uuid == new.domain_uuid
        and old.domain_id == new.domain_id
        and old.vcpus == new.vcpus
        and new.cpu_time_ns >= old.cpu_time_ns
        and new.steal_ns >= old.steal_ns
    )


def vm_steal(old: DomainReading, new: DomainReading, elapsed_ns: int) -> VmSteal | None:
    """The domain's rates between two readings, or None when they cannot be compared."""
    if elapsed_ns <= 0 or new.vcpus <= 0 or not same_incarnation(old, new):
        return None
    capacity = new.vcpus * elapsed_ns
    steal = (new.steal_ns - old.steal_ns) / capacity
    busy = (new.cpu_time_ns - old.cpu_time_ns) / capacity
    load = new.guest_load_1m / new.vcpus if new.guest_load_1m is not None else busy + steal
    return VmSteal(
        instance_uuid=new.instance_uuid,
        name=new.name,
        vcpus=new.vcpus,
        steal=steal,
        busy=busy,
        load=load,
        steal_origin=new.steal_origin,
        load_origin=new.load_origin,
    )


def steal_table(
    old: Iterable[DomainReading], new: Iterable[DomainReading], elapsed_ns: int
) -> list[VmSteal]:
    """Rates for every domain present in both readings, by name."""
    before = {reading.domain_uuid: reading for reading in old}
    rows = [
        row
        for reading in new
        if reading.domain_uuid in before
        and (row := vm_steal(before[reading.domain_uuid], reading, elapsed_ns)) is not None
    ]
    return sorted(rows, key=lambda row: (row.name, row.instance_uuid))


def caps_to_check(
    wanted: Mapping[str, int], readings: Sequence[DomainReading]
) -> list[tuple[str, int]]:
    """(instance UUID, cap) for each domain now migrating that the coordinator capped:
    the job may run with another cap — Nova passes its own `live_migration_bandwidth`
    when it starts the job, which replaces ours — so the cap in force is read back."""
    return [
        (reading.instance_uuid, wanted[reading.instance_uuid])
        for reading in readings
        if reading.migration is not None and reading.instance_uuid in wanted
    ]


def forget_departed(wanted: Mapping[str, int], readings: Sequence[DomainReading]) -> dict[str, int]:
    """Caps of domains that are still here; a departed domain's cap goes with it."""
    present = {reading.instance_uuid for reading in readings}
    return {uuid: cap for uuid, cap in wanted.items() if uuid in present}
