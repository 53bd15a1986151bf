"""The policies a simulated day can run, by the name the CLI takes.

    none           nobody acts: the baseline every figure is measured against
    naive          the seed's rule (coordinator.policy.naive)
    stealbalancer  coordinator.policy.plan, the production policy

Each is a pure `(snapshot, config) -> Plan`: the production controller runs it every
tick in place of `coordinator.policy.plan`, so every policy gets the same actuator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from coordinator import policy
from coordinator.config import Config, ConfigError
from coordinator.model import ClusterSnapshot, Plan
from coordinator.policy import naive
from coordinator.sim.runner import Day, DayResult
from coordinator.sim.scenario import Scenario

PlanFn = Callable[[ClusterSnapshot, Config], Plan]

POLICIES: Mapping[str, PlanFn | None] = MappingProxyType(
    {"none": None, "naive": naive.plan, "stealbalancer": policy.plan}
)


def plan_fn(name: str) -> PlanFn | None:
    try:
        return POLICIES[name]
    except KeyError:
        known = ", ".join(POLICIES)
        raise ConfigError(f"--policy {name!r}: unknown policy (known: {known})") from None


def run_day(
    scenario: Scenario, name: str, progress: Callable[[int], None] | None = None
) -> DayResult:
    """One day under the named policy, with the World's pain figures in `extra`."""
    plan = plan_fn(name)
    day = Day(scenario, balancing=plan is not None, planner=plan or policy.plan)
    result = day.run(progress)
    result.extra.update(day.world.pain.summary())
    return result
