"""Caps on concurrent migrations and the bandwidth budget, in one place.

Purely computational, no side effects.
"""

from __future__ import annotations

import math

from coordinator.config import LimitsConfig
from coordinator.policy.scratch import RoundState


def slot_blocker(source: str, az: str, state: RoundState, limits: LimitsConfig) -> str | None:
    """Why no further migration may start from `source` in `az` now."""
    if state.running >= limits.max_concurrent:
        return f"cluster-wide cap of {limits.max_concurrent} concurrent migrations reached"
    if state.by_source[source] >= limits.max_per_source:
        return f"source host {source} already has {limits.max_per_source} migration(s) running"
    if state.by_target[source] > 0:
        # Its steal is not settled until the arrival is in (the receiving QEMU burns
        # CPU too), and sending while receiving is what fills one host's link.
        return f"source host {source} is still receiving a migration"
    if state.by_az[az] >= limits.max_per_az:
        return f"AZ {az} already has {limits.max_per_az} migration(s) running"
    if state.finished_last_hour + state.running >= limits.max_per_hour:
        return (
            f"{limits.max_per_hour} migrations started within the last hour "
            "(limits.max_per_hour): waiting, so a crowded AZ is not churned"
        )
    return None


def grant_bandwidth(state: RoundState, limits: LimitsConfig) -> float | None:
    """The cap for one more migration, or None when the budget has too little left.

    The sum of all granted caps never exceeds the cluster budget.
    """
    available = limits.bandwidth_budget_mib_s - state.bandwidth_in_use
    grant = min(limits.grant_mib_s, available)
    if grant < limits.min_bandwidth_per_migration_mib_s:
        return None
    return grant


# Fewer parallel migrations than this and one slow move (a large local disk) holds
# up every other relief for its whole duration.
FEW_MIGRATIONS = 3


def limit_warnings(limits: LimitsConfig) -> list[str]:
    """What an operator should hear at start-up about these limits (empty = fine).

    Called by `serve` and `simulate` before they start; never fatal, since a small
    cluster may want exactly one migration at a time.
    """
    warnings: list[str] = []
    grant = limits.grant_mib_s
    by_bandwidth = math.ceil(
        limits.bandwidth_budget_mib_s / limits.max_bandwidth_per_migration_mib_s
    )
    if grant < limits.min_bandwidth_per_migration_mib_s:
        warnings.append(
            f"limits: each migration would get {grant:.0f} MiB/s, below "
            f"min_bandwidth_per_migration_mib_s {limits.min_bandwidth_per_migration_mib_s:.0f}"
            ": no migration can ever start"
        )
        return warnings
    parallel = min(by_bandwidth, limits.max_concurrent, limits.max_per_az)
    if parallel < FEW_MIGRATIONS:
        warnings.append(
            f"limits: at most {parallel} migration(s) can ever run at once (budget "
            f"{limits.bandwidth_budget_mib_s:.0f} MiB/s in grants of {grant:.0f}, "
            f"max_concurrent {limits.max_concurrent}, max_per_az {limits.max_per_az}); "
            "one slow move will hold up all relief"
        )
    if limits.fabric_mib_s is not None and limits.bandwidth_budget_mib_s > limits.fabric_mib_s:
        warnings.append(
            f"limits: bandwidth_budget_mib_s {limits.bandwidth_budget_mib_s:.0f} exceeds the "
            f"fabric's {limits.fabric_mib_s:.0f} MiB/s: migrations can saturate it"
        )
    if limits.link_mib_s is not None and grant * limits.max_per_source > limits.link_mib_s:
        warnings.append(
            f"limits: {limits.max_per_source} migrations of {grant:.0f} MiB/s leaving one "
            f"host exceed its {limits.link_mib_s:.0f} MiB/s link"
        )
    return warnings
