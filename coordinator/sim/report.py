"""The side-by-side report of a simulated day: table, JSON and PNG plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from coordinator.config import LimitsConfig
from coordinator.sim.figures import moved_again_within, network_capacity, saturated_minutes
from coordinator.sim.runner import DayResult


@dataclass(frozen=True, slots=True)
class Comparison:
    baseline: DayResult
    balanced: DayResult
    # Further policies run on the same world and seed (e.g. the naive rule), by name.
    others: tuple[tuple[str, DayResult], ...] = ()
    balanced_name: str = "stealbalancer"
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    @property
    def contention_reduction(self) -> float:
        before = self.baseline.contended_vm_minutes
        if before == 0:
            return 0.0
        return 1.0 - self.balanced.contended_vm_minutes / before

    @property
    def columns(self) -> tuple[tuple[str, DayResult], ...]:
        return (("none", self.baseline), (self.balanced_name, self.balanced), *self.others)

    def pain_reduction(self, result: DayResult) -> float:
        """The headline: pain VM-minutes (steal >= 10%, all VMs) removed vs nobody acting."""
        before = self.baseline.extra.get("pain_vm_minutes", 0.0)
        if before == 0:
            return 0.0
        return 1.0 - result.extra.get("pain_vm_minutes", 0.0) / before

    @property
    def migrations_per_vm(self) -> float:
        return len(self.balanced.migrations) / max(self.balanced.vm_count, 1)


def _row_values(result: DayResult, limits: LimitsConfig) -> dict[str, Any]:
    return {
        **{key: round(value, 4) for key, value in result.extra.items()},
        "vms_moved_again_within_1h": moved_again_within(result),
        "network_saturated_minutes": saturated_minutes(result, limits),
        "contended_vm_minutes": round(result.contended_vm_minutes, 1),
        "p95_steal_busy": round(result.p95_steal_busy, 4),
        "max_steal": round(result.max_steal, 4),
        "migrations": len(result.migrations),
        "migrations_helped": result.count("helped"),
        "migrations_failed": result.count("failed"),
        "migrations_did_not_help": result.count("did-not-help"),
        "gib_moved": round(result.gib_moved, 1),
        "peak_migration_bandwidth_mib_s": round(result.peak_bandwidth_mib_s, 1),
        "bandwidth_budget_mib_s": result.bandwidth_budget_mib_s,
        "planning_seconds": round(result.planning_seconds, 3),
        "wall_seconds": round(result.wall_seconds, 2),
    }


def _pain(result: DayResult, key: str, fmt: str) -> str:
    value = result.extra.get(key)
    return "n/a" if value is None else format(value, fmt)


def _rows(comparison: Comparison) -> list[tuple[str, Callable[[DayResult], str]]]:
    limits = comparison.limits
    fabric, _ = network_capacity(limits)
    return [
        ("pain VM-minutes (steal >= 10%, all VMs)", lambda r: _pain(r, "pain_vm_minutes", ",.0f")),
        ("contended VM-minutes (busy VMs)", lambda r: f"{r.contended_vm_minutes:,.0f}"),
        ("stolen vCPU-hours", lambda r: _pain(r, "stolen_vcpu_hours", ",.1f")),
        ("p95 steal (VM-minutes with any steal)", lambda r: _pain(r, "p95_steal", ".1%")),
        ("p95 steal (busy VMs)", lambda r: f"{r.p95_steal_busy:.1%}"),
        ("max steal", lambda r: f"{r.max_steal:.1%}"),
        (
            "migrations",
            lambda r: f"{len(r.migrations)} ({len(r.migrations) / max(r.vm_count, 1):.3f}/VM)",
        ),
        ("  failed", lambda r: str(r.count("failed"))),
        ("  did not help", lambda r: str(r.count("did-not-help"))),
        ("VMs moved again within 1 h", lambda r: str(moved_again_within(r))),
        ("GiB moved", lambda r: f"{r.gib_moved:,.0f}"),
        (
            "peak migration bandwidth",
            lambda r: f"{r.peak_bandwidth_mib_s:,.0f} of {fabric:,.0f} MiB/s",
        ),
        ("minutes network saturated", lambda r: str(saturated_minutes(r, limits))),
    ]


def print_table(comparison: Comparison, console: Console) -> None:
    base = comparison.baseline
    table = Table(title=f"Simulated day: {base.host_count} hypervisors, {base.vm_count} VMs")
    table.add_column("")
    for name, _ in comparison.columns:
        table.add_column("no balancing" if name == "none" else name, justify="right")
    for label, cell in _rows(comparison):
        table.add_row(label, *(cell(result) for _, result in comparison.columns))
    console.print(table)
    for name, result in comparison.columns[1:]:
        console.print(
            f"{name}: pain VM-minutes reduced by "
            f"[bold]{comparison.pain_reduction(result):.1%}[/bold] (busy VMs' contended "
            f"VM-minutes by {_reduction(base, result):.1%}); the controller's ticks took "
            f"{result.planning_seconds:.1f}s over the day"
        )


def _reduction(base: DayResult, result: DayResult) -> float:
    if base.contended_vm_minutes == 0:
        return 0.0
    return 1.0 - result.contended_vm_minutes / base.contended_vm_minutes


def to_json(comparison: Comparison, scenario_name: str) -> dict[str, Any]:
    bal = comparison.balanced
    return {
        "scenario": scenario_name,
        "hosts": bal.host_count,
        "vms": bal.vm_count,
        "step_s": bal.step_s,
        "no_balancing": _row_values(comparison.baseline, comparison.limits),
        "balancing": _row_values(bal, comparison.limits),
        "policies": {
            name: {
                **_row_values(result, comparison.limits),
                "pain_reduction": round(comparison.pain_reduction(result), 4),
            }
            for name, result in comparison.columns
        },
        "contention_reduction": round(comparison.contention_reduction, 4),
        "migrations_per_vm": round(comparison.migrations_per_vm, 4),
        "migrations": [
            {
                "vm": m.vm_name,
                "source": m.source,
                "target": m.target,
                "started_s": m.started_s,
                "finished_s": m.finished_s,
                "bandwidth_mib_s": m.bandwidth_mib_s,
                "gib": round(m.gib, 2),
                "outcome": m.outcome,
                "steal_before": round(m.steal_before, 4),
                "steal_after": None if m.steal_after is None else round(m.steal_after, 4),
            }
            for m in bal.migrations
        ],
    }


def write_json(comparison: Comparison, scenario_name: str, path: Path) -> None:
    path.write_text(json.dumps(to_json(comparison, scenario_name), indent=2) + "\n")


def write_plot(comparison: Comparison, path: Path) -> None:
    """Cluster steal over the day, both ways, with each migration marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    base, bal = comparison.baseline, comparison.balanced
    hours = [(i + 1) * base.step_s / 3600 for i in range(len(base.cluster_steal))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    top.plot(hours, [100 * s for s in base.cluster_steal], label="no balancing", color="tab:red")
    top.plot(hours, [100 * s for s in bal.cluster_steal], label="balancing", color="tab:blue")
    for name, other in comparison.others:
        top.plot(hours, [100 * s for s in other.cluster_steal], label=name, linewidth=0.8)
    top.set_ylabel("cluster steal (% of vCPU time)")
    top.legend(loc="upper left")
    bottom.plot(hours, base.contended_vms, label="no balancing", color="tab:red")
    bottom.plot(hours, bal.contended_vms, label="balancing", color="tab:blue")
    started = [m.started_s / 3600 for m in bal.migrations]
    bottom.vlines(
        started,
        0,
        max([*base.contended_vms, 1]) * 0.08,
        color="black",
        linewidth=0.6,
        label="migration started",
    )
    failed = [m.started_s / 3600 for m in bal.migrations if m.outcome == "failed"]
    if failed:
        bottom.plot(failed, [0] * len(failed), "rx", label="migration failed")
    bottom.set_ylabel("contended VMs")
    bottom.set_xlabel("hour of day")
    bottom.legend(loc="upper left")
    fig.suptitle(
        f"{bal.host_count} hypervisors, {bal.vm_count} VMs: contended VM-minutes "
        f"{base.contended_vm_minutes:,.0f} -> {bal.contended_vm_minutes:,.0f}, "
        f"{len(bal.migrations)} migrations"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
