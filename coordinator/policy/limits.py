"""Caps on concurrent migrations and the bandwidth budget, in one place.

Purely computational, no side effects.
"""

from __future__ import annotations

import math

from coordinator.config import LimitsConfig
from coordinator.policy.scratch import RoundState

# A cap of 0 forbids every move of its kind: said as such, not "already has 0 running".
_ZERO_CAPS = (
    ("max_concurrent", "no migration may run"),
    ("max_per_source", "no migration may leave any host"),
    ("max_per_az", "no migration may run in any AZ"),
    ("max_per_hour", "no migration may start in any hour"),
)
_ZERO_TARGET_CAP = ("max_per_target", "no host may receive a migration")


def _zero_cap(limits: LimitsConfig) -> str | None:
    for name, consequence in _ZERO_CAPS:
        if getattr(limits, name) == 0:
            return f"limits.{name} is 0: {consequence}"
    return None


def slot_blocker(source: str, az: str, state: RoundState, limits: LimitsConfig) -> str | None:
    """Why no further migration may start from `source` in `az` now."""
    zero = _zero_cap(limits)
    if zero is not None:
        return zero
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
    if state.started_last_hour >= limits.max_per_hour:
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
    warnings = [
        f"limits.{name} is 0: {consequence}"
        for name, consequence in (*_ZERO_CAPS, _ZERO_TARGET_CAP)
        if getattr(limits, name) == 0
    ]
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
    if 0 < parallel < FEW_MIGRATIONS:  # 0 is one of the zero caps above, named
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
