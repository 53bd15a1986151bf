"""Figures of a simulated day beyond the runner's own: churn and network saturation.

Computed from the migration records alone, so they hold for any policy the runner
drives (the production one, the naive baseline).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from coordinator.config import LimitsConfig
from coordinator.sim.runner import DayResult

HOUR_S = 3600.0


def moved_again_within(result: DayResult, window_s: float = HOUR_S) -> int:
    """VMs that started a migration less than `window_s` after their previous one ended."""
    last_end: dict[str, float] = {}
    again: set[str] = set()
    for record in sorted(result.migrations, key=lambda m: m.started_s):
        previous = last_end.get(record.vm_uuid)
        if previous is not None and record.started_s - previous < window_s:
            again.add(record.vm_uuid)
        last_end[record.vm_uuid] = record.finished_s or record.ends_s
    return len(again)


def network_capacity(limits: LimitsConfig) -> tuple[float, float | None]:
    """(fabric, link) in MiB/s: what the operator stated, else the budget and unknown."""
    return limits.fabric_mib_s or limits.bandwidth_budget_mib_s, limits.link_mib_s


def saturated_minutes(result: DayResult, limits: LimitsConfig) -> int:
    """Minutes in which migrations filled the fabric or some host's migration link.

    Sampled at the middle of every minute: a minute counts when the caps of the
    migrations running then add up to the fabric's capacity, or those leaving or
    reaching one host add up to its link's.
    """
    fabric, link = network_capacity(limits)
    minutes = int(np.ceil(len(result.cluster_steal) * result.step_s / 60.0))
    saturated = 0
    for minute in range(minutes):
        t = minute * 60.0 + 30.0
        running = [m for m in result.migrations if m.started_s <= t < (m.finished_s or m.ends_s)]
        total = sum(m.bandwidth_mib_s for m in running)
        per_host: dict[str, float] = defaultdict(float)
        for m in running:
            per_host[m.source] += m.bandwidth_mib_s
            per_host[m.target] += m.bandwidth_mib_s
        busiest = max(per_host.values(), default=0.0)
        if total >= fabric - 1e-6 or (link is not None and busiest >= link - 1e-6):
            saturated += 1
    return saturated
