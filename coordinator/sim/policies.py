"""The policies a simulated day can run, by the name the CLI takes.

    none           nobody acts: the baseline every figure is measured against
    naive          the seed's rule (coordinator.policy.naive)
    stealbalancer  coordinator.policy.plan, the production policy

Each is a pure `(snapshot, config) -> Plan`; the runner calls it every tick.
"""

from __future__ import annotations

import time
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


class PolicyDay(Day):
    """A day with a chosen policy in place of `coordinator.policy.plan`.

    Overrides only the runner's planning call; once the runner takes the policy as a
    parameter this class goes away.
    """

    def __init__(self, scenario: Scenario, plan: PlanFn | None) -> None:
        super().__init__(scenario, balancing=plan is not None)
        self.plan = plan

    def _act(self, now: float) -> None:
        if self.plan is None:
            return
        self._finish_migrations(now)
        self._fold(now)
        self._verify(now)
        snapshot = self.snapshot(now)
        started = time.perf_counter()
        the_plan = self.plan(snapshot, self.config)
        self.planning_seconds += time.perf_counter() - started
        for move in the_plan.moves:
            self._start(move, now)


def run_day(
    scenario: Scenario, name: str, progress: Callable[[int], None] | None = None
) -> DayResult:
    """One day under the named policy, with the World's pain figures in `extra`."""
    day = PolicyDay(scenario, plan_fn(name))
    result = day.run(progress)
    result.extra.update(day.world.pain.summary())
    return result
