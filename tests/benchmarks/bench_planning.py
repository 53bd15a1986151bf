"""Benchmark: one planning round for the reference cluster and for 10,000 hosts /
400,000 VMs (target: < 1 s per round).

    python -m tests.benchmarks.bench_planning [--rounds N] [--skip-large]

Snapshots are realistic: hosts at a typical over-commit, a few hot hosts (~4%) whose
busy VMs are contended (~1.5% of all VMs), roles, server groups and a few migrations
already in flight. Prints the snapshot build time separately from `plan()`, and two
baselines measured in the same run: the reference cluster (scaling ratio against the
size ratio) and the floor of touching every VM once in Python (what any policy that
reads the whole snapshot pays).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from coordinator.config import Config
from coordinator.model import (
    ClusterSnapshot,
    GroupPolicy,
    Host,
    InFlight,
    ServerGroup,
    Vm,
    VmMetrics,
)
from coordinator.policy import is_contended, plan

NOW = 1_000_000.0
ROLES = ("web", "api", "batch", "stream", "db", "cache")


def build_snapshot(
    hosts_per_az: int, azs: int, vms_per_host: int, seed: int, busy: float = 0.5
) -> ClusterSnapshot:
    """A cluster where ~4% of hosts are over-committed and their busy VMs suffer;
    the others are `busy` (share of pCPUs in demand, on average)."""
    rng = np.random.default_rng(seed)
    n_hosts = hosts_per_az * azs
    hosts = [
        Host(
            name=f"az{a}-hv-{i:05d}",
            az=f"az{a}",
            pcpus=96,
            ram_mib=1024 * 1024,
            last_report_at=NOW - 5,
        )
        for a in range(azs)
        for i in range(hosts_per_az)
    ]
    hot_hosts = rng.random(n_hosts) < 0.04
    n_vms = n_hosts * vms_per_host
    vcpus = rng.choice(np.array([2, 4, 4, 8]), size=n_vms)
    host_of = np.repeat(np.arange(n_hosts), vms_per_host)
    # Mean VM size is 4.5 vCPUs: scale calm load so hosts sit at `busy` on average.
    mean_load = busy * 96 / (vms_per_host * 4.5)
    load = rng.uniform(0.1 * mean_load, 1.9 * mean_load, size=n_vms)
    hot_vm = hot_hosts[host_of] & (rng.random(n_vms) < 0.45)
    load = np.where(hot_vm, rng.uniform(0.75, 1.0, size=n_vms), load)
    steal = np.where(hot_hosts[host_of], rng.uniform(0.05, 0.35, size=n_vms), 0.0)
    steal = np.where(hot_vm, steal, np.minimum(steal, 0.02))
    samples = np.where(hot_vm, rng.integers(2, 8, size=n_vms), 0)
    ram = rng.choice(np.array([4096, 8192, 16384, 32768]), size=n_vms)
    disk = rng.choice(np.array([20.0, 40.0, 80.0, 500.0]), size=n_vms)
    role = rng.integers(0, len(ROLES), size=n_vms)
    n_groups = max(n_vms // 200, 1)
    grouped = rng.random(n_vms) < 0.05
    group_of = rng.integers(0, n_groups, size=n_vms)
    groups = [
        ServerGroup(
            id=f"sg-{g}",
            name=f"sg-{g}",
            policy=GroupPolicy.ANTI_AFFINITY if g % 2 else GroupPolicy.SOFT_ANTI_AFFINITY,
        )
        for g in range(n_groups)
    ]
    vms = [
        Vm(
            uuid=f"vm-{i:07d}",
            name=f"{ROLES[role[i]]}-{i}",
            host=hosts[host_of[i]].name,
            vcpus=int(vcpus[i]),
            ram_mib=int(ram[i]),
            disk_gib=float(disk[i]),
            role=ROLES[role[i]],
            server_group=f"sg-{group_of[i]}" if grouped[i] else "",
            metrics=VmMetrics(
                steal=float(steal[i]),
                load=float(load[i]),
                cpu_demand=float(load[i] * vcpus[i]),
                contended_s=10.0 * float(samples[i]),
                sampled_at=NOW - 5,
            ),
        )
        for i in range(n_vms)
    ]
    in_flight = tuple(
        InFlight(
            vm_uuid=vms[i].uuid,
            source=vms[i].host,
            target=hosts[(host_of[i] + 1) % n_hosts].name,
            az=hosts[host_of[i]].az,
            bandwidth_mib_s=250.0,
            started_at=NOW - 60,
        )
        for i in (0, 1)
    )
    return ClusterSnapshot.build(NOW, hosts, vms, groups, in_flight)


def touch_every_vm(snapshot: ClusterSnapshot) -> int:
    """The floor: one Python pass reading each VM's metrics."""
    return sum(1 for vm in snapshot.vms.values() if vm.metrics.steal > 0.05)


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    """Median CPU seconds of `rounds` calls: on a shared 2-core machine wall time
    mostly measures the neighbours (the wall time is printed alongside)."""
    times, result = [], None
    for _ in range(rounds):
        started = time.process_time()
        result = fn()
        times.append(time.process_time() - started)
    return statistics.median(times), result


def measure(
    label: str, hosts_per_az: int, azs: int, per_host: int, rounds: int, busy: float = 0.5
) -> float:
    config = Config()
    started = time.perf_counter()
    snap = build_snapshot(hosts_per_az, azs, per_host, seed=7, busy=busy)
    build_s = time.perf_counter() - started
    contended = sum(1 for vm in snap.vms.values() if is_contended(vm, config.policy))
    wall = time.perf_counter()
    plan_s, result = timed(lambda: plan(snap, config), rounds)
    wall_s = (time.perf_counter() - wall) / rounds
    floor_s, _ = timed(lambda: touch_every_vm(snap), rounds)
    moves = len(result.moves) if hasattr(result, "moves") else 0
    verdict = "PASS" if plan_s < 1.0 else "MISS"
    print(
        f"{label}: {len(snap.hosts):,} hosts, {len(snap.vms):,} VMs, {contended:,} contended "
        f"({contended / len(snap.vms):.1%})\n"
        f"  snapshot build {build_s:.2f} s | plan() median of {rounds}: {plan_s * 1000:.0f} ms "
        f"CPU, {wall_s * 1000:.0f} ms wall ({moves} moves) [{verdict} < 1 s]\n"
        f"  floor (touch every VM once) {floor_s * 1000:.0f} ms -> plan/floor "
        f"{plan_s / max(floor_s, 1e-9):.1f}x"
    )
    return plan_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    small = measure("reference cluster", 40, 2, 13, max(args.rounds, 5))
    if args.skip_large:
        return
    large = measure("large cluster", 2_000, 5, 40, args.rounds)
    print(
        f"scaling: 400x the VMs costs {large / max(small, 1e-9):.0f}x the reference "
        f"round ({large / max(small, 1e-9) / 400:.2f} of linear)"
    )
    # The worst case: every host too full to take anyone, so each contended VM ranks
    # its whole AZ and finds nothing (O(contended x hosts per AZ)).
    measure("large cluster, no room anywhere", 2_000, 5, 40, args.rounds, busy=1.3)


if __name__ == "__main__":
    main()
