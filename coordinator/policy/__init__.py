"""The scheduling policy: pure functions of an immutable ClusterSnapshot.

    plan(snapshot, config) -> Plan                 what to migrate now, with reasons
    plan_one(snapshot, config, vm, target) -> Move | Skipped   an operator's move
    explain(snapshot, config, vm) -> Explanation   why a VM would or would not move
    is_contended(vm, policy_config) -> bool

No I/O, no logging, no clock: time comes from the snapshot.
"""

from coordinator.policy.detect import is_contended
from coordinator.policy.explain import Explanation, explain
from coordinator.policy.plan import plan, plan_one

__all__ = ["Explanation", "explain", "is_contended", "plan", "plan_one"]
