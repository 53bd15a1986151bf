"""Benchmark: the whole reference day simulated (target: < 60 s on 2 cores).

    python -m tests.benchmarks.bench_day [--seed N]

Runs the reference day (80 hypervisors, ~1,000 VMs, 1,440 steps of 60 s) without and
with balancing, as `stealbalancer-coordinator simulate` does, and prints the wall time
(and CPU time) of each run, the share of the balanced run spent in `plan()`, and steps per second.
The no-balancing run is the baseline: the balanced run's extra time is what the
coordinator's side costs (folding every counter, building snapshots, planning).
"""

from __future__ import annotations

import argparse
import logging
import time

import structlog

from coordinator.sim.runner import Day
from coordinator.sim.scenario import reference_scenario


def main() -> None:
    # As `simulate` does: the controller's per-step logs would be most of the run.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scenario = reference_scenario(seed=args.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    baseline = Day(scenario, balancing=False).run()
    balanced = Day(scenario, balancing=True).run()
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    steps = scenario.steps
    print(
        f"reference day: {balanced.host_count} hosts, {balanced.vm_count} VMs, {steps} steps "
        f"of {scenario.step_s:g} s (seed {args.seed})"
    )
    for label, result in (("no balancing", baseline), ("balancing", balanced)):
        print(
            f"  {label:<13} {result.wall_seconds:6.2f} s  {steps / result.wall_seconds:7.0f} "
            f"steps/s"
        )
    coordinator_side = balanced.wall_seconds - baseline.wall_seconds
    print(
        f"  controller    {balanced.planning_seconds:6.2f} s  "
        f"({balanced.planning_seconds / balanced.wall_seconds:.0%} of the balanced run, "
        f"{balanced.planning_seconds / steps * 1000:.1f} ms per tick)"
    )
    print(
        f"  coordinator side (balanced - baseline) {coordinator_side:.2f} s; balanced run "
        f"{balanced.wall_seconds / baseline.wall_seconds:.1f}x the baseline"
    )
    verdict = "PASS" if total < 60 else "MISS"
    # CPU time too: on a shared machine wall time includes waiting for a core.
    print(f"  both runs     {total:6.2f} s wall, {cpu:.2f} s CPU  [{verdict} < 60 s]")


if __name__ == "__main__":
    main()
