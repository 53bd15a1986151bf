"""Benchmark: one whole controller tick at 10,000 hosts / 400,000 VMs.

    python -m tests.benchmarks.bench_round [--rounds N] [--hosts-per-az N] [--azs N]

A tick is what `serve` does every planning interval: the journal's books, ONE join of
Nova's inventory with the agents' telemetry (the service's own `inventory.join`), every
open migration advanced by its steps (simulated Nova, agents and orchestrator; a real
SQLite journal on disk), then `plan()` and the admission of its moves. The cluster is
bench_planning's (4% hot hosts). Before measuring, a few ticks run so that migrations
are open in every state. Printed beside it, measured in the same run: the join alone and
`plan()` alone, the parts a tick cannot avoid, so the ratio shows what the controller
adds on top. Then an admin read's snapshot (status, listings): reused from the newest
tick, against one built fresh as those reads did before.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import structlog

from coordinator.adapters.sim.compute import SimCompute
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.adapters.sim.hypervisor import SimHypervisor
from coordinator.config import Config
from coordinator.controller import Controller, Ports
from coordinator.journal import SqliteJournal
from coordinator.model import Bookkeeping, ClusterSnapshot
from coordinator.policy import plan
from coordinator.ports import HypervisorInfo, ServerInfo
from coordinator.service.inventory import HostTelemetry, Inventory, ReportedVm, join
from tests.benchmarks.bench_planning import NOW, build_snapshot


def inventory_and_telemetry(
    snap: ClusterSnapshot,
) -> tuple[Inventory, dict[str, HostTelemetry]]:
    """What Nova and the agents would say about `snap`'s cluster."""
    hypervisors = tuple(
        HypervisorInfo(h.name, h.az, h.pcpus, h.ram_mib, True, True) for h in snap.hosts.values()
    )
    servers = tuple(
        ServerInfo(vm.uuid, vm.name, vm.host, snap.hosts[vm.host].az, "ACTIVE", None, vm.vcpus,
                   vm.ram_mib, vm.disk_gib, {"role": vm.role})
        for vm in snap.vms.values()
    )  # fmt: skip
    by_host: dict[str, dict[str, ReportedVm]] = {h: {} for h in snap.hosts}
    for vm in snap.vms.values():
        by_host[vm.host][vm.uuid] = ReportedVm(vm.uuid, vm.name, vm.vcpus, vm.ram_mib,
                                               vm.disk_gib, vm.metrics)  # fmt: skip
    telemetry = {
        h.name: HostTelemetry(h.name, h.az, h.pcpus, h.ram_mib, NOW - 5, by_host[h.name])
        for h in snap.hosts.values()
    }
    return Inventory(hypervisors, servers, tuple(snap.server_groups.values()), NOW), telemetry


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts-per-az", type=int, default=2500)
    parser.add_argument("--azs", type=int, default=4)
    parser.add_argument("--vms-per-host", type=int, default=40)
    args = parser.parse_args()
    config = Config()
    snap = build_snapshot(args.hosts_per_az, args.azs, args.vms_per_host, seed=7)
    inventory, telemetry = inventory_and_telemetry(snap)
    compute = SimCompute(clock=lambda: clock[0], migration_s=120.0)
    for h in inventory.hypervisors:
        compute.add_hypervisor(h.name, h.az, h.vcpus, h.memory_mib)
    compute.servers = {s.uuid: s for s in inventory.servers}
    agents = SimHypervisor(domains={h: set(t.vms) for h, t in telemetry.items()})
    clock = [NOW]

    def observe(now: float, books: Bookkeeping) -> ClusterSnapshot:
        return join(now, inventory, telemetry, config.inventory, books)

    with tempfile.TemporaryDirectory() as tmp:
        journal = SqliteJournal(Path(tmp) / "journal.sqlite")
        ports = Ports(compute, agents, {"none": SimDetacher()})
        controller = Controller(ports, journal, config, observe)
        for _ in range(3):  # migrations open in every state before measuring
            controller.tick(clock[0])
            clock[0] += 30.0
        states = Counter(r.state.value for r in journal.open_migrations())
        ticks, joins, plans = [], [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            controller.tick(clock[0])
            ticks.append(time.perf_counter() - started)
            started = time.perf_counter()
            joined = observe(clock[0], controller.books(clock[0])[0])
            joins.append(time.perf_counter() - started)
            started = time.perf_counter()
            plan(joined, config)
            plans.append(time.perf_counter() - started)
            clock[0] += 30.0
        reads = _admin_reads(controller, clock[0], config.service.plan_interval_s, args.rounds)
    tick, joined_s, planned_s = (statistics.median(x) for x in (ticks, joins, plans))
    print(f"{len(snap.hosts):,} hosts, {len(snap.vms):,} VMs; open migrations when measured: "
          f"{dict(states)}")  # fmt: skip
    print(f"  whole tick (books, one join, advance all, plan, admit): {tick:6.2f} s (median of "
          f"{args.rounds})")  # fmt: skip
    print(f"  baseline: the join alone {joined_s:6.2f} s, plan() alone {planned_s:6.2f} s")
    ratio = tick / (joined_s + planned_s)
    print(f"  tick / (join + plan) = {ratio:.2f}: what the controller adds on top of both")
    fresh_s, reused_s = reads
    print(f"  an admin read's snapshot (status, listings): reusing the newest {reused_s * 1e3:.2f}"
          f" ms; baseline, a fresh one (books and join) {fresh_s:.2f} s")  # fmt: skip


def _admin_reads(
    controller: Controller, now: float, max_age_s: float, rounds: int
) -> tuple[float, float]:
    """Median seconds of the snapshot an admin read takes: built fresh, and reused
    from a tick that started no move (a follower's tick here: it joins, writes nothing)."""
    fresh, reused = [], []
    for _ in range(rounds):
        controller.tick(now, act=False)
        started = time.perf_counter()
        controller.recent_snapshot(now + 1.0, max_age_s)
        reused.append(time.perf_counter() - started)
        started = time.perf_counter()
        controller.snapshot(now + 1.0)
        fresh.append(time.perf_counter() - started)
        now += 30.0
    return statistics.median(fresh), statistics.median(reused)


if __name__ == "__main__":
    main()
