"""Benchmark: every scenario of the library, no balancing vs the naive rule vs
stealbalancer, on the same world and seeds.

    python -m tests.benchmarks.bench_scenarios [--seeds 1 2 3] [--quick]
        [--scenario NAME|FILE] [--holdout] [--step-s 10]

Figures per scenario and policy (mean over the seeds): pain VM-minutes (steal >= 10%,
all VMs), busy pain (the same for VMs with demand > 60%), migrations, VMs moved again
within 1 h, GiB moved, minutes with the migration network saturated. Target (issue
11), per scenario: stealbalancer's pain at or below the naive rule's, at most half its
GiB, no VM moved again within 1 h, no saturated minute. Prints PASS/MISS per target,
and each policy's pain removed per GiB moved (VM-minutes of pain the moves took away,
per GiB they copied): the efficiency the GiB target stands for, which stays readable
where the naive rule moves little because it leaves the pain in place.
`--quick` runs one seed and 12 hours (from midnight, so the lunch peaks are in).
`--holdout` runs the shapes in `tests/benchmarks/holdout/` instead of the library:
clusters written after the defaults were chosen, never tuned on. `--step-s 10` reads
every VM's counters every 10 s, as the agents report, instead of the scenario's step
(60 s by default; a day then takes about six times as long).

It runs the days through the runner's public entry (`coordinator.sim.policies.run_day`):
every policy, the naive rule included, is carried out by the production controller.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import structlog

from coordinator.sim import library
from coordinator.sim.figures import moved_again_within, saturated_minutes
from coordinator.sim.policies import run_day
from coordinator.sim.scenario import Scenario

POLICIES = ("none", "naive", "stealbalancer")
HOLDOUT = Path(__file__).parent / "holdout"


@dataclass(frozen=True, slots=True)
class Figures:
    pain: float
    busy_pain: float
    migrations: float
    moved_again: float
    gib: float
    saturated: float


def measure(scenario: Scenario, policy: str) -> Figures:
    result = run_day(scenario, policy)
    limits = scenario.config.limits
    return Figures(
        pain=result.extra["pain_vm_minutes"],
        busy_pain=result.extra["busy_pain_vm_minutes"],
        migrations=len(result.migrations),
        moved_again=moved_again_within(result),
        gib=result.gib_moved,
        saturated=saturated_minutes(result, limits),
    )


def averaged(runs: list[Figures]) -> Figures:
    return Figures(*(mean(getattr(r, f) for r in runs) for f in Figures.__dataclass_fields__))


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def holdout_files() -> list[Path]:
    return sorted(HOLDOUT.glob("*.yaml"))


def pain_removed_per_gib(none: Figures, policy: Figures) -> float | None:
    """VM-minutes of pain the policy's moves took away per GiB they copied."""
    return (none.pain - policy.pain) / policy.gib if policy.gib > 0 else None


def bench(name: str, seeds: list[int], hours: float | None, step_s: float | None) -> bool:
    base = library.resolve(name)
    started = time.perf_counter()
    figures: dict[str, Figures] = {}
    for policy in POLICIES:
        runs = []
        for seed in seeds:
            update: dict[str, object] = {"seed": seed}
            if hours is not None:
                update["duration_h"] = hours
            if step_s is not None:
                update["step_s"] = step_s
            runs.append(measure(base.model_copy(update=update), policy))
        figures[policy] = averaged(runs)
    label = Path(name).stem if name.endswith(".yaml") else name
    print(f"\n## {label}: {base.story}  ({time.perf_counter() - started:.0f} s)")
    print(
        "| policy | pain VM-min | busy pain | migrations | moved again <1h | GiB moved "
        "| saturated min |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    none = figures["none"].pain or 1.0
    for policy, f in figures.items():
        print(
            f"| {policy} | {f.pain:,.0f} (-{1 - f.pain / none:.0%}) | {f.busy_pain:,.0f} | "
            f"{f.migrations:,.0f} | {f.moved_again:.1f} | {f.gib:,.0f} | {f.saturated:.1f} |"
        )
    naive, ours = figures["naive"], figures["stealbalancer"]
    efficiency = {
        p: pain_removed_per_gib(figures["none"], figures[p]) for p in ("naive", "stealbalancer")
    }
    print(
        "pain removed per GiB moved: "
        + ", ".join(f"{p} {'-' if e is None else f'{e:.1f}'}" for p, e in efficiency.items())
    )
    checks = {
        "pain <= naive": ours.pain <= naive.pain,
        "GiB <= half naive": ours.gib <= naive.gib / 2,
        "none moved again <1h": ours.moved_again == 0,
        "no saturated minute": ours.saturated == 0,
    }
    print("targets: " + ", ".join(f"{k} [{_mark(ok)}]" for k, ok in checks.items()))
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # As `simulate` does: the controller's per-step logs would be most of the run.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="one seed, 12 hours")
    parser.add_argument(
        "--scenario", action="append", help="only these, a library name or a file (repeatable)"
    )
    parser.add_argument(
        "--holdout", action="store_true", help="the hold-out shapes instead of the library"
    )
    parser.add_argument(
        "--step-s", type=float, help="seconds between readings (default: the scenario's)"
    )
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    hours = 12.0 if args.quick else None
    holdout = [str(path) for path in holdout_files()] if args.holdout else []
    names = (args.scenario or []) + holdout or library.names()
    step = f", readings every {args.step_s:g} s" if args.step_s else ""
    print(f"seeds {seeds}, {'12 h' if hours else 'full day'} per run{step}")
    passed = [bench(name, seeds, hours, args.step_s) for name in names]
    print(f"\n{sum(passed)} of {len(passed)} scenarios meet every target")


if __name__ == "__main__":
    main()
