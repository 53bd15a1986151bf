"""The main job: a simulated day, no balancing vs balancing, side by side."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from coordinator.config import Config, ConfigError, detection_warnings, parse_model
from coordinator.policy.limits import limit_warnings
from coordinator.sim import library
from coordinator.sim.policies import plan_fn, run_day
from coordinator.sim.replay import replay
from coordinator.sim.report import Comparison, print_table, write_json, write_plot
from coordinator.sim.runner import DayResult
from coordinator.sim.scenario import Scenario, reference_scenario


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    scenario: Path | str | None = None  # a file or a library name (coordinator.sim.library)
    config: Config | None = None
    seed: int | None = None
    hours: float | None = None
    out: Path = Path("out")
    plot: bool = True
    progress: bool = True
    # Policies to run beside "none" (nobody acting), by name (coordinator.sim.policies).
    policies: tuple[str, ...] = ("stealbalancer",)
    replay: Path | None = None  # a recording (service.record_reports) instead of a day


def resolve_scenario(options: SimulateOptions) -> tuple[Scenario, str]:
    if options.scenario is not None:
        scenario, name = library.resolve(options.scenario), str(options.scenario)
    else:
        scenario, name = reference_scenario(), "reference day"
    updates: dict[str, object] = {}
    if options.config is not None:
        updates["config"] = options.config
    if options.seed is not None:
        if options.seed < 0:
            raise ConfigError("--seed must not be negative")
        updates["seed"] = options.seed
    if options.hours is not None:
        if not math.isfinite(options.hours) or options.hours <= 0:
            raise ConfigError("--hours must be a positive number")
        updates["duration_h"] = options.hours
    if not updates:
        return scenario, name
    # model_copy(update=...) skips validation: re-validate so an override is held
    # to the same rules as the file (e.g. --hours above the 14-day maximum).
    merged = {**scenario.model_dump(exclude={"config"}), "config": scenario.config, **updates}
    return parse_model(Scenario, merged, "command-line options"), name


def run_both(
    scenario: Scenario, console: Console | None, policies: tuple[str, ...] = ("stealbalancer",)
) -> Comparison:
    """No balancing, then each named policy, on the same world and seed."""
    for name in policies:
        plan_fn(name)  # an unknown name fails before minutes of simulation
    names = ("none", *(p for p in policies if p != "none")) if policies else ("none",)
    results: list[DayResult] = []
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    ) as progress:
        for name in names:
            label = "no balancing" if name == "none" else name
            task = progress.add_task(label, total=scenario.steps)
            try:
                results.append(run_day(scenario, name, _advance(progress, task)))
            except ValueError as exc:  # e.g. a VM that fits on no host
                raise ConfigError(str(exc)) from None
    balanced = results[1] if len(results) > 1 else results[0]
    return Comparison(
        baseline=results[0],
        balanced=balanced,
        others=tuple(zip(names[2:], results[2:], strict=True)),
        balanced_name=names[1] if len(names) > 1 else "none",
        limits=scenario.config.limits,
    )


def _advance(progress: Progress, task: TaskID) -> Callable[[int], None]:
    def update(done: int) -> None:
        progress.update(task, completed=done)

    return update


def simulate(options: SimulateOptions) -> int:
    if options.replay is not None:
        return simulate_replay(options)
    console = Console()
    scenario, name = resolve_scenario(options)
    console.print(
        f"Simulating {name}{': ' + scenario.story if scenario.story else ''}\n"
        f"  {scenario.duration_h:g} h in {scenario.steps} steps of "
        f"{scenario.step_s:g} s (seed {scenario.seed})"
    )
    # Check the output directory before a minutes-long run, not after it.
    _writable(options.out)
    config = scenario.config
    for problem in [*limit_warnings(config.limits), *detection_warnings(config.policy)]:
        console.print(f"[yellow]warning:[/yellow] {problem}")
    comparison = run_both(scenario, console if options.progress else None, options.policies)
    print_table(comparison, console)
    json_path = options.out / "simulation.json"
    try:
        write_json(comparison, name, json_path)
        console.print(f"results: {json_path}")
        if options.plot:
            png_path = options.out / "simulation.png"
            write_plot(comparison, png_path)
            console.print(f"plot:    {png_path}")
    except OSError as exc:
        raise ConfigError(f"--out {options.out}: cannot write: {exc.strerror or exc}") from None
    return 0


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create: {exc.strerror or exc}") from None


def simulate_replay(options: SimulateOptions) -> int:
    """A recording of real agent reports through the policy: what it would have done."""
    console = Console()
    assert options.replay is not None
    config = options.config or Config()
    policy = options.policies[0] if options.policies else "stealbalancer"
    result = replay(options.replay, config, policy)
    share = result.pain_vm_intervals / max(result.vm_intervals, 1)
    console.print(
        f"Replayed {result.reports} reports ({result.rejected} rejected) of "
        f"{result.hosts} hosts and {result.vms} VMs through {policy}: {result.rounds} "
        f"planning rounds; {share:.1%} of VM-intervals had steal >= 10%"
    )
    if result.unreadable:
        lines = ", ".join(map(str, result.unreadable[:5]))
        more = ", ..." if len(result.unreadable) > 5 else ""
        console.print(
            f"{len(result.unreadable)} unreadable line(s) of {options.replay} skipped "
            f"(line {lines}{more}): a coordinator killed mid-write leaves one torn line"
        )
    table = Table(title=f"{len(result.first_moves)} VMs {policy} would have moved")
    for column in ("first proposed (s)", "VM", "from", "to", "why"):
        table.add_column(column)
    for at, move in sorted(result.first_moves.values(), key=lambda item: item[0])[:50]:
        table.add_row(f"{at:.0f}", move.vm_name, move.source, move.target, move.reason)
    console.print(table)
    for reason, count in result.skip_reasons.most_common(10):
        console.print(f"  not moved ({count} VM-rounds): {reason}")
    return 0
