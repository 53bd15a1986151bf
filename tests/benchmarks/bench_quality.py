"""Benchmark: policy quality on the reference day, for 3 seeds.

    python -m tests.benchmarks.bench_quality [--seeds 1 2 3]

Targets (issue 2): contended VM-minutes reduced by >= 90% against no balancing (the
baseline, the same world and seed with nobody acting), <= 0.3 migrations per VM per
day, and migration traffic never above the bandwidth budget. Prints the figures and
PASS/MISS per target and seed.
"""

from __future__ import annotations

import argparse
import logging

import structlog

from coordinator.sim.report import Comparison
from coordinator.sim.runner import Day
from coordinator.sim.scenario import reference_scenario

REDUCTION_TARGET = 0.90
MIGRATIONS_PER_VM_TARGET = 0.3


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def evaluate(seed: int) -> bool:
    scenario = reference_scenario(seed=seed)
    result = Comparison(
        baseline=Day(scenario, balancing=False).run(),
        balanced=Day(scenario, balancing=True).run(),
    )
    base, bal = result.baseline, result.balanced
    per_vm_day = result.migrations_per_vm * 24.0 / scenario.duration_h
    checks = (
        result.contention_reduction >= REDUCTION_TARGET,
        per_vm_day <= MIGRATIONS_PER_VM_TARGET,
        bal.peak_bandwidth_mib_s <= bal.bandwidth_budget_mib_s,
    )
    print(
        f"seed {seed}: contended VM-minutes {base.contended_vm_minutes:,.0f} -> "
        f"{bal.contended_vm_minutes:,.0f} (-{result.contention_reduction:.1%}) "
        f"[{_mark(checks[0])} >= {REDUCTION_TARGET:.0%}]\n"
        f"  migrations {len(bal.migrations)} = {per_vm_day:.3f}/VM/day "
        f"[{_mark(checks[1])} <= {MIGRATIONS_PER_VM_TARGET}] "
        f"(helped {bal.count('helped')}, did not help {bal.count('did-not-help')}, "
        f"failed {bal.count('failed')}), {bal.gib_moved:,.0f} GiB moved\n"
        f"  peak migration traffic {bal.peak_bandwidth_mib_s:,.0f} of "
        f"{bal.bandwidth_budget_mib_s:,.0f} MiB/s [{_mark(checks[2])}]\n"
        f"  p95 steal of busy VMs {base.p95_steal_busy:.1%} -> {bal.p95_steal_busy:.1%}, "
        f"max {base.max_steal:.1%} -> {bal.max_steal:.1%}"
    )
    return all(checks)


def main() -> None:
    # As `simulate` does: the controller's per-step logs would be most of the run.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    passed = [evaluate(seed) for seed in args.seeds]
    print(f"all targets met for {sum(passed)} of {len(passed)} seeds")


if __name__ == "__main__":
    main()
