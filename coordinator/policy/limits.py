"""Caps on concurrent migrations and the bandwidth budget, in one place.

Purely computational, no side effects.
"""

from __future__ import annotations

from coordinator.config import LimitsConfig
from coordinator.policy.scratch import RoundState


def slot_blocker(source: str, az: str, state: RoundState, limits: LimitsConfig) -> str | None:
    """Why no further migration may start from `source` in `az` now."""
    if state.running >= limits.max_concurrent:
        return f"cluster-wide cap of {limits.max_concurrent} concurrent migrations reached"
    if state.by_source[source] >= limits.max_per_source:
        return f"source host {source} already has {limits.max_per_source} migration(s) running"
    if state.by_az[az] >= limits.max_per_az:
        return f"AZ {az} already has {limits.max_per_az} migration(s) running"
    return None


def grant_bandwidth(state: RoundState, limits: LimitsConfig) -> float | None:
    """The cap for one more migration, or None when the budget has too little left.

    The sum of all granted caps never exceeds the cluster budget.
    """
    available = limits.bandwidth_budget_mib_s - state.bandwidth_in_use
    grant = min(limits.max_bandwidth_per_migration_mib_s, available)
    if grant < limits.min_bandwidth_per_migration_mib_s:
        return None
    return grant
