"""Pain as the tenant feels it, counted from the World's true state every step.

The headline is every VM-minute with steal at or above 10% of vCPU time, whatever
the VM's demand: a VM that wants 45% of a vCPU and gets 35% loses a fifth of its
CPU, and its requests queue even though it is far from "busy". The same count for
busy VMs (demand above 60% per vCPU, the policy's old yardstick), the stolen
vCPU-hours and the p95 steal are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PAIN_STEAL = 0.10  # steal at or above this share of vCPU time is pain
BUSY_DEMAND = 0.60  # demand per vCPU above this makes a VM "busy"
# p95 from a histogram of 0.1%-wide bins: exact to a tenth of a percent, and a day
# of 1,000 VMs needs 1,001 counters instead of 1.4 million samples.
_BINS = 1000


@dataclass(slots=True)
class PainTally:
    """Running totals over a day (all VMs, every step)."""

    vm_minutes: float = 0.0  # VM-minutes with steal >= PAIN_STEAL
    busy_vm_minutes: float = 0.0  # ... of VMs whose demand is above BUSY_DEMAND
    stolen_vcpu_hours: float = 0.0
    histogram: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(_BINS + 1, dtype=np.int64)
    )

    def add(self, demand: FloatArray, steal: FloatArray, vcpus: FloatArray, dt_s: float) -> None:
        pain = steal >= PAIN_STEAL
        self.vm_minutes += float(pain.sum()) * dt_s / 60.0
        self.busy_vm_minutes += float((pain & (demand > BUSY_DEMAND)).sum()) * dt_s / 60.0
        self.stolen_vcpu_hours += float((steal * vcpus).sum()) * dt_s / 3600.0
        bins = np.clip((steal * _BINS).astype(np.int64), 0, _BINS)
        self.histogram += np.bincount(bins, minlength=_BINS + 1)

    @property
    def p95_steal(self) -> float:
        """p95 over the VM-minutes with any steal (0.1% or more): over all of them it
        is 0 on any cluster where fewer than one VM in twenty suffers."""
        with_steal = self.histogram[1:]
        total = int(with_steal.sum())
        if total == 0:
            return 0.0
        rank = int(np.searchsorted(np.cumsum(with_steal), 0.95 * total))
        return min(rank + 1, _BINS) / _BINS

    def summary(self) -> dict[str, float]:
        """The figures the report prints, keyed as in its JSON."""
        return {
            "pain_vm_minutes": self.vm_minutes,
            "busy_pain_vm_minutes": self.busy_vm_minutes,
            "stolen_vcpu_hours": self.stolen_vcpu_hours,
            "p95_steal": self.p95_steal,
        }
