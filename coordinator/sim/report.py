"""The side-by-side report of a simulated day: table, JSON and PNG plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from coordinator.sim.runner import DayResult


@dataclass(frozen=True, slots=True)
class Comparison:
    baseline: DayResult
    balanced: DayResult

    @property
    def contention_reduction(self) -> float:
        before = self.baseline.contended_vm_minutes
        if before == 0:
            return 0.0
        return 1.0 - self.balanced.contended_vm_minutes / before

    @property
    def migrations_per_vm(self) -> float:
        return len(self.balanced.migrations) / max(self.balanced.vm_count, 1)


def _row_values(result: DayResult) -> dict[str, Any]:
    return {
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


def print_table(comparison: Comparison, console: Console) -> None:
    base, bal = comparison.baseline, comparison.balanced
    table = Table(title=f"Simulated day: {base.host_count} hypervisors, {base.vm_count} VMs")
    table.add_column("")
    table.add_column("no balancing", justify="right")
    table.add_column("balancing", justify="right")
    rows = [
        (
            "contended VM-minutes",
            f"{base.contended_vm_minutes:,.0f}",
            f"{bal.contended_vm_minutes:,.0f}",
        ),
        ("p95 steal (busy VMs)", f"{base.p95_steal_busy:.1%}", f"{bal.p95_steal_busy:.1%}"),
        ("max steal", f"{base.max_steal:.1%}", f"{bal.max_steal:.1%}"),
        ("migrations", "0", f"{len(bal.migrations)} ({comparison.migrations_per_vm:.3f}/VM)"),
        ("  failed", "0", str(bal.count("failed"))),
        ("  did not help", "0", str(bal.count("did-not-help"))),
        ("GiB moved", "0", f"{bal.gib_moved:,.0f}"),
        (
            "peak migration bandwidth",
            "0 MiB/s",
            f"{bal.peak_bandwidth_mib_s:,.0f} of {bal.bandwidth_budget_mib_s:,.0f} MiB/s",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"contended VM-minutes reduced by [bold]{comparison.contention_reduction:.1%}[/bold]; "
        f"the controller's ticks took {bal.planning_seconds:.1f}s over the day"
    )


def to_json(comparison: Comparison, scenario_name: str) -> dict[str, Any]:
    bal = comparison.balanced
    return {
        "scenario": scenario_name,
        "hosts": bal.host_count,
        "vms": bal.vm_count,
        "step_s": bal.step_s,
        "no_balancing": _row_values(comparison.baseline),
        "balancing": _row_values(bal),
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
