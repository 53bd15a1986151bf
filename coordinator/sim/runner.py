"""Runs a simulated day through the production coordinator on a virtual clock.

Each step (one agent report interval): the world advances (demand, contention,
counters); with balancing on, migrations the simulated Nova finished move their VMs in
the World, the counters go through `coordinator.state.TelemetryFolder` exactly as agent
reports would, and the production `Controller` ticks: the same journal (SQLite, in
memory), the same policy, the same steps, parking and after-move assessment as `serve`.
Below the ports stand the simulated Nova (`SimCompute`: each move lasts what
`policy.cost.transfer` says for the World's true dirty rate, may fail part-way with the
scenario's probability, and never completes when pre-copy cannot converge), the
simulated agent link and orchestrator. Without balancing the same world runs with
nobody acting: the baseline.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from coordinator import policy
from coordinator.adapters.sim.compute import SimCompute
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.adapters.sim.hypervisor import SimHypervisor
from coordinator.config import Config
from coordinator.controller import Controller, Planner, Ports
from coordinator.journal import MigrationRecord as Journaled
from coordinator.journal import SqliteJournal, State
from coordinator.model import Bookkeeping, ClusterSnapshot, Orchestrator, Vm, VmMetrics
from coordinator.policy.cost import MIB_PER_GIB, transfer
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

    def __init__(self, scenario: Scenario, balancing: bool, planner: Planner = policy.plan) -> None:
        """`planner`: the policy the controller runs (the production one by default)."""
        self.scenario = scenario
        self.config: Config = scenario.config
        self.balancing = balancing
        self.world = World(scenario)
        self.dt = scenario.step_s
        self.now = 0.0
        # One simulation step is one agent report interval.
        self.folder = TelemetryFolder(FoldSettings.from_policy(self.config.policy, self.dt))
        self.rng = np.random.default_rng(scenario.seed + 1)
        self.index = {vm.uuid: vm.index for vm in self.world.vms}
        self.compute = self._compute()
        self.agents = SimHypervisor()
        for vm in self.world.vms:
            self.agents.domains.setdefault(self.world.host_name(vm.index), set()).add(vm.uuid)
        self.journal = SqliteJournal(":memory:")
        detacher = SimDetacher()
        ports = Ports(self.compute, self.agents, {o.value: detacher for o in Orchestrator})
        ids = (f"sim-{n:06d}" for n in itertools.count(1))
        self.controller = Controller(ports, self.journal, self.config, self.snapshot,
                                     new_id=lambda: next(ids), planner=planner)  # fmt: skip
        self._last_duration_s = 0.0
        self.bandwidth: list[float] = []  # MiB/s of the migrations copying, per step
        self.planning_seconds = 0.0

    def _compute(self) -> SimCompute:
        compute = SimCompute(clock=lambda: self.now, duration_s=self._duration_s,
                             failure_s=self._failure_s)  # fmt: skip
        for host in self.world.hosts:
            compute.add_hypervisor(host.name, host.az, host.pcpus, host.ram_mib)
        for vm in self.world.vms:
            compute.add_server(vm.uuid, self.world.host_name(vm.index), vm.name, vm.vcpus,
                               vm.ram_mib)  # fmt: skip
        return compute

    def _duration_s(self, vm_uuid: str, target: str) -> float:
        """Reality: the World's true dirty rate (measured ones are off by up to 25%)."""
        i = self.index[vm_uuid]
        vm, w = self.world.vms[i], self.world
        dirty = w.dirty_rate_mib_s(i) * float(self.rng.uniform(0.8, 1.25))
        shared = w.hosts[int(w.host_of[i])].shared_storage
        cap = float(self.agents.caps.get(vm_uuid, self.config.limits.grant_mib_s))
        move = transfer(vm.ram_mib, dirty, 0.0 if shared else vm.disk_gib, cap, self.config.cost)
        # Pre-copy that cannot converge runs until the controller's time budget aborts it.
        self._last_duration_s = move.seconds if move.converges else float("inf")
        return self._last_duration_s

    def _failure_s(self, vm_uuid: str, target: str) -> float | None:
        if self.rng.random() >= self.scenario.migration_failure_probability:
            return None
        # A failure part-way through the move SimCompute is starting (timed just before).
        seconds = min(self._last_duration_s, self.config.cost.max_migration_s)
        return float(self.rng.uniform(0.1, 1.0)) * seconds

    def run(self, progress: Callable[[int], None] | None = None) -> DayResult:
        started = time.perf_counter()
        busy_steal: list[np.ndarray] = []
        contended_minutes = 0.0
        cluster_steal: list[float] = []
        contended_vms: list[int] = []
        for k in range(self.scenario.steps):
            self.now = (k + 1) * self.dt
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
                self._act()
            if progress is not None:
                progress(k + 1)
        steal_busy = np.concatenate(busy_steal) if busy_steal else np.zeros(1)
        return DayResult(
            balancing=self.balancing,
            step_s=self.dt,
            contended_vm_minutes=contended_minutes,
            p95_steal_busy=float(np.percentile(steal_busy, 95)) if steal_busy.size else 0.0,
            max_steal=float(steal_busy.max()) if steal_busy.size else 0.0,
            migrations=self.migrations(),
            peak_bandwidth_mib_s=max(self.bandwidth, default=0.0),
            bandwidth_budget_mib_s=self.config.limits.bandwidth_budget_mib_s,
            cluster_steal=cluster_steal,
            contended_vms=contended_vms,
            planning_seconds=self.planning_seconds,
            wall_seconds=time.perf_counter() - started,
            vm_count=len(self.world.vms),
            host_count=len(self.world.hosts),
        )

    # -- the coordinator's side -------------------------------------------------

    def _act(self) -> None:
        self._follow_nova()
        self._fold()
        started = time.perf_counter()
        self.controller.tick(self.now)
        self.planning_seconds += time.perf_counter() - started
        copying = [r for r in self.journal.open_migrations() if r.state is State.MIGRATING]
        self.bandwidth.append(sum(r.bandwidth_mib_s for r in copying))

    def _follow_nova(self) -> None:
        """Migrations the simulated Nova finished move their VM in the World."""
        if not self.journal.open_migrations():
            return
        for server in self.compute.list_servers():
            i = self.index[server.uuid]
            if server.host != self.world.host_name(i):
                self.world.move(i, server.host)
                self.agents.move(server.uuid, server.host)

    def _fold(self) -> None:
        w = self.world
        monotonic_ns = int(self.now * 1e9)
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
                    at=self.now,
                    monotonic_ns=monotonic_ns,
                    vcpus=spec.vcpus,
                    cpu_time_ns=cpu_ns[i],
                    steal_ns=steal_ns[i],
                    domain_id=domain_id[i],
                ),
            )

    def snapshot(self, now: float, books: Bookkeeping) -> ClusterSnapshot:
        """The controller's observer: what a coordinator would see now (telemetry is as
        fresh as the last step), joined with the journal's books."""
        w = self.world
        hosts = [replace(h, last_report_at=now) for h in w.hosts]
        empty = VmMetrics()
        host_names = [h.name for h in w.hosts]
        host_of = w.host_of.tolist()
        moving = {f.vm_uuid for f in books.in_flight}
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
                migrating=spec.uuid in moving,
                cooldown_until=books.cooldown_until.get(spec.uuid, 0.0),
                quarantined_until=books.quarantined_vms.get(spec.uuid, 0.0),
                parked_reason=books.park_reasons.get(spec.uuid, ""),
            )
            for spec in w.vms
        ]
        return ClusterSnapshot.build(now, hosts, vms, in_flight=books.in_flight,
                                     quarantined_targets=books.quarantined_targets,
                                     departed_at=books.departed_at)  # fmt: skip

    # -- the day's migrations, as the journal recorded them ------------------------

    def migrations(self) -> list[MigrationRecord]:
        return [self._summary(r) for r in reversed(self.journal.history())]

    def _summary(self, r: Journaled) -> MigrationRecord:
        copying_s = self._copying_seconds(r)
        finished = r.finished_at if r.state.terminal else None
        return MigrationRecord(
            vm_uuid=r.vm_uuid,
            vm_name=r.vm_name,
            source=r.source,
            target=r.target,
            started_s=r.created_at,
            ends_s=finished if finished is not None else self.now,
            bandwidth_mib_s=r.bandwidth_mib_s,
            gib=r.gib_to_move
            if r.state is State.DONE
            else copying_s * r.bandwidth_mib_s / MIB_PER_GIB,
            succeeds=r.state is State.DONE,
            steal_before=r.steal_before,
            outcome=self._outcome(r),
            steal_after=r.steal_after if r.steal_after >= 0 else None,
            finished_s=finished,
        )

    def _copying_seconds(self, r: Journaled) -> float:
        times = self.journal.transitions(r.id)
        start = next((at for at, state, _ in times if state is State.MIGRATING), None)
        if start is None:
            return 0.0
        end = next(
            (at for at, state, _ in times if at >= start and state not in (State.MIGRATING,)),
            self.now,
        )
        return max(end - start, 0.0)

    def _outcome(self, r: Journaled) -> str:
        if not r.state.terminal:
            return "running"
        if r.state is not State.DONE:
            return "failed"
        if r.steal_after < 0:
            return "done"
        wanted = r.steal_before * (1 - self.config.workflow.min_steal_drop)
        return "helped" if r.steal_after <= wanted else "did-not-help"
