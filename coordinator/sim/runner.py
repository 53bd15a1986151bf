"""Runs a simulated day through the real telemetry folding and the real policy.

Each step: the world advances (demand, contention, counters); with balancing on,
the counters go through `coordinator.state.TelemetryFolder` exactly as agent
reports would, a `ClusterSnapshot` is built, `coordinator.policy.plan` decides, and
a small simulated actuator carries the moves out (duration from RAM, dirty rate,
disk and the bandwidth cap; failures; cooldown; verification after the window).
Without balancing the same world runs with nobody acting: the baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from coordinator import policy
from coordinator.config import Config
from coordinator.model import ClusterSnapshot, InFlight, Move, Vm, VmMetrics
from coordinator.policy.cost import MIB_PER_GIB, precopy_mib
from coordinator.sim.scenario import Scenario
from coordinator.sim.world import World
from coordinator.state import CounterSample, FoldSettings, TelemetryFolder


@dataclass(slots=True)
class MigrationRecord:
    vm_uuid: str
    vm_name: str
    source: str
    target: str
    started_s: float
    ends_s: float
    bandwidth_mib_s: float
    gib: float
    succeeds: bool
    steal_before: float
    outcome: str = "running"  # running | done | helped | did-not-help | failed
    steal_after: float | None = None
    finished_s: float | None = None


@dataclass(slots=True)
class DayResult:
    balancing: bool
    step_s: float
    contended_vm_minutes: float
    p95_steal_busy: float  # p95 of steal over busy VM-steps (demand above busy_load)
    max_steal: float
    migrations: list[MigrationRecord]
    peak_bandwidth_mib_s: float
    bandwidth_budget_mib_s: float
    cluster_steal: list[float]  # vCPU-weighted mean steal per step
    contended_vms: list[int]  # per step
    planning_seconds: float = 0.0
    wall_seconds: float = 0.0
    vm_count: int = 0
    host_count: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def gib_moved(self) -> float:
        return sum(m.gib for m in self.migrations if m.outcome != "running")

    def count(self, *outcomes: str) -> int:
        return sum(1 for m in self.migrations if m.outcome in outcomes)


class Day:
    """One simulated day, with or without the balancer acting."""

    def __init__(self, scenario: Scenario, balancing: bool) -> None:
        self.scenario = scenario
        self.config: Config = scenario.config
        self.balancing = balancing
        self.world = World(scenario)
        self.dt = scenario.step_s
        # One simulation step is one agent report interval.
        self.folder = TelemetryFolder(FoldSettings.from_policy(self.config.policy, self.dt))
        n = len(self.world.vms)
        self.cooldown_until = np.zeros(n)
        self.quarantined_until = np.zeros(n)
        self.active: dict[int, MigrationRecord] = {}
        self.records: list[MigrationRecord] = []
        self.awaiting_verify: list[tuple[int, MigrationRecord]] = []
        self.traffic = np.zeros(int(scenario.steps * self.dt) + 1)
        self.planning_seconds = 0.0
        self.rng = np.random.default_rng(scenario.seed + 1)

    def run(self, progress: Callable[[int], None] | None = None) -> DayResult:
        started = time.perf_counter()
        busy_steal: list[np.ndarray] = []
        contended_minutes = 0.0
        cluster_steal: list[float] = []
        contended_vms: list[int] = []
        for k in range(self.scenario.steps):
            now = (k + 1) * self.dt
            truth = self.world.step(k * self.dt, self.dt)
            busy = truth.demand > self.scenario.busy_load
            contended = busy & (truth.steal > self.scenario.contended_steal)
            contended_minutes += float(contended.sum()) * self.dt / 60.0
            busy_steal.append(truth.steal[busy])
            cluster_steal.append(
                float((truth.steal * self.world.vcpus).sum() / self.world.vcpus.sum())
            )
            contended_vms.append(int(contended.sum()))
            if self.balancing:
                self._act(now)
            if progress is not None:
                progress(k + 1)
        steal_busy = np.concatenate(busy_steal) if busy_steal else np.zeros(1)
        return DayResult(
            balancing=self.balancing,
            step_s=self.dt,
            contended_vm_minutes=contended_minutes,
            p95_steal_busy=float(np.percentile(steal_busy, 95)) if steal_busy.size else 0.0,
            max_steal=float(steal_busy.max()) if steal_busy.size else 0.0,
            migrations=self.records,
            peak_bandwidth_mib_s=float(self.traffic.max()),
            bandwidth_budget_mib_s=self.config.limits.bandwidth_budget_mib_s,
            cluster_steal=cluster_steal,
            contended_vms=contended_vms,
            planning_seconds=self.planning_seconds,
            wall_seconds=time.perf_counter() - started,
            vm_count=len(self.world.vms),
            host_count=len(self.world.hosts),
        )

    # -- the coordinator's side -------------------------------------------------

    def _act(self, now: float) -> None:
        self._finish_migrations(now)
        self._fold(now)
        self._verify(now)
        snapshot = self.snapshot(now)
        started = time.perf_counter()
        the_plan = policy.plan(snapshot, self.config)
        self.planning_seconds += time.perf_counter() - started
        for move in the_plan.moves:
            self._start(move, now)

    def _fold(self, now: float) -> None:
        w = self.world
        monotonic_ns = int(now * 1e9)
        # Plain lists once per step: indexing numpy arrays element by element costs
        # more than the folding itself. astype truncates like int() did.
        cpu_ns = w.cpu_ns.astype(np.int64).tolist()
        steal_ns = w.steal_ns.astype(np.int64).tolist()
        domain_id = w.domain_id.tolist()
        observe = self.folder.observe
        for spec in w.vms:
            i = spec.index
            observe(
                spec.uuid,
                CounterSample(
                    at=now,
                    monotonic_ns=monotonic_ns,
                    vcpus=spec.vcpus,
                    cpu_time_ns=cpu_ns[i],
                    steal_ns=steal_ns[i],
                    domain_id=domain_id[i],
                ),
            )

    def snapshot(self, now: float) -> ClusterSnapshot:
        """What a coordinator would see now (telemetry is as fresh as the last step)."""
        w = self.world
        hosts = [replace(h, last_report_at=now) for h in w.hosts]
        empty = VmMetrics()
        host_names = [h.name for h in w.hosts]
        host_of = w.host_of.tolist()
        cooldown_until = self.cooldown_until.tolist()
        quarantined_until = self.quarantined_until.tolist()
        metrics = self.folder.metrics
        vms = [
            Vm(
                uuid=spec.uuid,
                name=spec.name,
                host=host_names[host_of[spec.index]],
                vcpus=spec.vcpus,
                ram_mib=spec.ram_mib,
                disk_gib=spec.disk_gib,
                role=spec.role,
                server_group=spec.server_group,
                orchestrator=spec.orchestrator,
                opt_out=spec.opt_out,
                metrics=metrics(spec.uuid) or empty,
                migrating=spec.index in self.active,
                cooldown_until=cooldown_until[spec.index],
                quarantined_until=quarantined_until[spec.index],
            )
            for spec in w.vms
        ]
        in_flight = tuple(
            InFlight(
                vm_uuid=r.vm_uuid,
                source=r.source,
                target=r.target,
                az=w.hosts[w.host_index[r.source]].az,
                bandwidth_mib_s=r.bandwidth_mib_s,
                started_at=r.started_s,
            )
            for r in self.active.values()
        )
        return ClusterSnapshot.build(now, hosts, vms, in_flight=in_flight)

    def _start(self, move: Move, now: float) -> None:
        """Reality decides how long the move really takes and whether it succeeds."""
        w = self.world
        index = int(move.vm_uuid.rsplit("-", 1)[1])
        spec = w.vms[index]
        cost_cfg = self.config.cost
        true_dirty = w.dirty_rate_mib_s(index) * float(self.rng.uniform(0.8, 1.25))
        ram_mib, converges = precopy_mib(spec.ram_mib, true_dirty, move.bandwidth_mib_s, cost_cfg)
        shared = w.hosts[w.host_index[move.source]].shared_storage
        disk_mib = 0.0 if shared else spec.disk_gib * MIB_PER_GIB
        seconds = (ram_mib + disk_mib) / move.bandwidth_mib_s
        fails = self.rng.random() < self.scenario.migration_failure_probability
        succeeds = converges and not fails and seconds <= cost_cfg.max_migration_s
        if not succeeds:
            # An abort after the time budget, or a failure part-way through.
            seconds = (
                cost_cfg.max_migration_s if not converges else seconds * self.rng.uniform(0.1, 1)
            )
        record = MigrationRecord(
            vm_uuid=move.vm_uuid,
            vm_name=move.vm_name,
            source=move.source,
            target=move.target,
            started_s=now,
            ends_s=now + seconds,
            bandwidth_mib_s=move.bandwidth_mib_s,
            gib=seconds * move.bandwidth_mib_s / MIB_PER_GIB,
            succeeds=succeeds,
            steal_before=move.steal,
        )
        self.active[index] = record
        self.records.append(record)
        first, last = int(now), min(int(np.ceil(record.ends_s)), len(self.traffic))
        self.traffic[first:last] += move.bandwidth_mib_s

    def _finish_migrations(self, now: float) -> None:
        policy_cfg = self.config.policy
        for index, record in list(self.active.items()):
            if record.ends_s > now:
                continue
            del self.active[index]
            record.finished_s = record.ends_s
            if record.succeeds:
                self.world.move(index, record.target)
                record.outcome = "done"
                self.cooldown_until[index] = now + policy_cfg.cooldown_s
                self.awaiting_verify.append((index, record))
            else:
                record.outcome = "failed"
                self.quarantined_until[index] = now + policy_cfg.quarantine_s

    def _verify(self, now: float) -> None:
        """After the window, did steal drop? If not, park the VM (quarantine)."""
        policy_cfg = self.config.policy
        still_waiting = []
        for index, record in self.awaiting_verify:
            assert record.finished_s is not None
            if now - record.finished_s < policy_cfg.verify_window_s:
                still_waiting.append((index, record))
                continue
            metrics = self.folder.metrics(record.vm_uuid)
            after = metrics.steal if metrics else 0.0
            record.steal_after = after
            helped = after < policy_cfg.steal_threshold or after < record.steal_before / 2
            record.outcome = "helped" if helped else "did-not-help"
            if not helped:
                self.quarantined_until[index] = now + policy_cfg.quarantine_s
        self.awaiting_verify = still_waiting
