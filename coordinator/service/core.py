"""The running coordinator: inventory refresh, the control loop, and the books.

Every `plan_interval_s` it builds a snapshot from the newest telemetry and the newest
Nova inventory (plus the journal's migrations, cooldowns and quarantines), plans,
and hands each move to the workflow, which runs it in a thread and re-checks it
against a fresh snapshot before acting. Blocking Nova calls run in threads too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace

import structlog

from coordinator.config import Config
from coordinator.errors import ComputeError
from coordinator.journal import Journal, MigrationRecord
from coordinator.leader import AlwaysLeader, Leadership
from coordinator.model import (
    ClusterSnapshot,
    InFlight,
    Move,
    Orchestrator,
    Skipped,
    Vm,
    VmMetrics,
    mean_steal,
)
from coordinator.policy import is_contended, plan, plan_one
from coordinator.ports import Compute, Detacher
from coordinator.service.agents import AgentHub
from coordinator.service.inventory import Bookkeeping, Inventory, join
from coordinator.service.metrics import Metrics
from coordinator.workflow import Clock, Ports, Refused, Workflow

log = structlog.get_logger("stealbalancer.coordinator")


@dataclass(frozen=True, slots=True)
class Pause:
    paused: bool
    reason: str = ""


class Coordinator:
    def __init__(
        self,
        config: Config,
        compute: Compute,
        journal: Journal,
        detachers: Mapping[Orchestrator, Detacher],
        clock: Clock,
        metrics: Metrics | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.config, self.compute, self.journal, self.clock = config, compute, journal, clock
        # Only the leader plans, acts, recovers or writes the journal; a follower keeps
        # its model warm (telemetry, inventory) so it can take over at once.
        self.leadership: Leadership = leadership or AlwaysLeader()
        self._recovered = False
        self.metrics = metrics or Metrics()
        self.agents = AgentHub(config, self.metrics, clock.now)
        self.agents.known_hosts = lambda: {h.name for h in self.inventory.hypervisors}
        self.inventory = Inventory()
        self.pause = Pause(
            config.service.start_paused, "start_paused" if config.service.start_paused else ""
        )
        self.workflow = Workflow(
            Ports(compute, self.agents, detachers), journal, config, self.snapshot, clock
        )
        self._tasks: set[asyncio.Task[object]] = set()
        self._tick_soon: asyncio.Task[object] | None = None
        self.agents.on_report.append(self._on_report)

    # -- snapshots --------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        now = self.clock.now()
        return join(now, self.inventory, self.agents.telemetry(), self.config.inventory,
                    self._books(now))  # fmt: skip

    def _books(self, now: float) -> Bookkeeping:
        open_ = self.journal.open_migrations()
        in_flight = tuple(
            InFlight(r.vm_uuid, r.source, r.target, r.az, r.bandwidth_mib_s, r.created_at)
            for r in open_
        )
        cooldown: dict[str, float] = {}
        cooldown_s = self.config.policy.cooldown_s
        for r in self.journal.done_since(now - cooldown_s):
            cooldown[r.vm_uuid] = max(cooldown.get(r.vm_uuid, 0.0), r.finished_at + cooldown_s)
        return Bookkeeping(
            in_flight=in_flight,
            cooldown_until=cooldown,
            quarantined_vms=self.journal.quarantined("vm", now),
            quarantined_targets=self.journal.quarantined("host", now),
        )

    # -- inventory --------------------------------------------------------------
    async def refresh_inventory(self) -> None:
        try:
            self.inventory = await asyncio.to_thread(self._fetch_inventory)
        except ComputeError as exc:
            self.metrics.inventory_errors.inc()
            log.warning("inventory refresh failed", error=str(exc))

    def _fetch_inventory(self) -> Inventory:
        return Inventory(
            hypervisors=tuple(self.compute.list_hypervisors()),
            servers=tuple(self.compute.list_servers()),
            groups=tuple(self.compute.list_server_groups()),
            fetched_at=self.clock.now(),
        )

    # -- the control loop ---------------------------------------------------------
    def _on_report(self, host: str) -> None:
        """Plan right away when a report shows a contended VM: reaction time is then
        bounded by detection (sustained samples), not by the planning interval."""
        if self.pause.paused or (self._tick_soon is not None and not self._tick_soon.done()):
            return
        if not self.leadership.is_leader():
            return
        telemetry = self.agents.host_telemetry(host)  # not telemetry(): that copies all
        if telemetry is None:
            return
        if not self.config.service.plan_on_contention:
            return
        if any(is_contended(_probe(host, vm.metrics), self.config.policy)
               for vm in telemetry.vms.values()):  # fmt: skip
            self._tick_soon = asyncio.get_running_loop().create_task(self.tick())

    async def tick(self) -> list[MigrationRecord]:
        """One planning round: assess finished moves, plan, start what the plan says."""
        with self.metrics.plan_seconds.time():
            snap = self.snapshot()
            self.metrics.contended.set(
                sum(1 for v in snap.vms.values() if is_contended(v, self.config.policy))
            )
            self._gauges(snap)
            if not self.leadership.is_leader():
                return []
            if not self._recovered:
                self.recover()  # a new leader first finishes what the last one left open
                return []
            self._assess(snap)
            if self.pause.paused:
                return []
            the_plan = plan(snap, self.config)
        started = []
        for move in the_plan.moves:
            record = self._start(move, manual=False)
            if record is not None:
                started.append(record)
        return started

    def _gauges(self, snap: ClusterSnapshot) -> None:
        self.metrics.cluster_steal.set(mean_steal(snap.vms.values()))
        self.metrics.bandwidth.set(snap.bandwidth_in_use)
        self.metrics.bandwidth_budget.set(self.config.limits.bandwidth_budget_mib_s)

    def migrate_now(self, vm_uuid: str, target: str | None) -> MigrationRecord | Skipped:
        if not self.leadership.is_leader():
            return Skipped(vm_uuid, "", "this replica is not the leader: ask the leader")
        outcome = plan_one(self.snapshot(), self.config, vm_uuid, target)
        if isinstance(outcome, Skipped):
            return outcome
        record = self._start(outcome, manual=True)
        if record is None:
            return Skipped(vm_uuid, outcome.vm_name, "refused by the workflow")
        return record

    def _start(self, move: Move, manual: bool) -> MigrationRecord | None:
        try:
            record = self.workflow.admit(move, manual=manual)
        except Refused as exc:
            log.info("move not started", vm=move.vm_uuid, reason=str(exc))
            return None
        log.info("migration admitted", migration=record.id, vm=move.vm_uuid, host=move.source,
                 target=move.target, bandwidth_mib_s=record.bandwidth_mib_s)  # fmt: skip
        self._spawn(record)
        return record

    def _spawn(self, record: MigrationRecord) -> None:
        self.metrics.running.inc()
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._drive(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, record: MigrationRecord) -> object:
        try:
            final = await asyncio.to_thread(self.workflow.run, record)
            self.metrics.migrations.labels(final.state.value).inc()
            return final
        finally:
            self.metrics.running.dec()

    def recover(self) -> None:
        """Continue every migration a previous process left open (in threads)."""
        self._recovered = True
        for record in self.journal.open_migrations():
            log.info("recovering migration", migration=record.id, vm=record.vm_uuid,
                     state=record.state.value)  # fmt: skip
            self._spawn(record)

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    # -- after the verify window -----------------------------------------------------
    def _assess(self, snap: ClusterSnapshot) -> None:
        window = self.config.policy.verify_window_s
        # Once its cooldown is over after the window the VM may have moved again, and its
        # steal no longer speaks for this move: a VM that stopped reporting is given up.
        for r in self.journal.done_since(snap.now - window - self.config.policy.cooldown_s):
            due = r.steal_after < 0 and snap.now >= r.finished_at + window
            vm = snap.vms.get(r.vm_uuid)
            if due and vm is not None and vm.metrics.sampled_at is not None:
                self._record_effect(r, vm.metrics.steal, snap.now)

    def _record_effect(self, r: MigrationRecord, steal_after: float, now: float) -> None:
        self.journal.update(replace(r, steal_after=steal_after))
        wanted = r.steal_before * (1 - self.config.workflow.min_steal_drop)
        if steal_after <= wanted:
            return
        until = now + self.config.policy.quarantine_s
        why = f"steal {r.steal_before:.1%} → {steal_after:.1%} after migration {r.id}"
        self.journal.quarantine("vm", r.vm_uuid, until, why)
        self.journal.quarantine("host", r.target, until, why)
        log.warning("move did not relieve steal", migration=r.id, vm=r.vm_uuid, host=r.target,
                    steal_before=r.steal_before, steal_after=steal_after)  # fmt: skip


def _probe(host: str, metrics: VmMetrics) -> Vm:
    """A VM carrying only metrics, to ask the policy's own detection rule."""
    return Vm(uuid="", name="", host=host, vcpus=0, ram_mib=0, metrics=metrics)
