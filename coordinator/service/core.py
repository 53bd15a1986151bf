"""The running coordinator: inventory refresh, the tick loop, and the operator's actions.

The migration controller (`coordinator.controller`) does the work; this module feeds it.
Its observer joins the newest Nova inventory with the agents' newest telemetry and the
journal's books. The loop ticks every `workflow.poll_s` while migrations are open (to
follow them) and plans every `service.plan_interval_s`, and early when a live report
shows a contended VM Nova places on the reporting host, at most once per quarter of the
planning interval. Ticks run in a thread (ports block) and never overlap. A replica
that is not the leader only observes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

import structlog

from coordinator.config import Config
from coordinator.controller import Clock, Controller, Ports, Tick
from coordinator.errors import ComputeError
from coordinator.journal import Journal, MigrationRecord, PauseState
from coordinator.leader import AlwaysLeader, Leadership
from coordinator.model import Bookkeeping, ClusterSnapshot, Skipped, Vm, VmMetrics
from coordinator.policy import is_contended
from coordinator.ports import Compute, Detacher
from coordinator.service.agents import AgentHub
from coordinator.service.inventory import Inventory, join, ref_checker
from coordinator.service.metrics import Metrics

log = structlog.get_logger("stealbalancer.coordinator")
# An early round (on a contended report) comes at least this share of a planning
# interval after the last round: reaction stays well under an interval, and no agent's
# report rate (a flood, a burst) sets the planning rate.
EARLY_ROUND_SPACING = 0.25


class Coordinator:
    def __init__(
        self,
        config: Config,
        compute: Compute,
        journal: Journal,
        detachers: Mapping[str, Detacher],
        clock: Clock,
        metrics: Metrics | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self.config, self.compute, self.journal, self.clock = config, compute, journal, clock
        # Only the leader plans, acts or writes the journal; a follower keeps its model
        # warm (telemetry, inventory) so it can take over at once.
        self.leadership: Leadership = leadership or AlwaysLeader()
        self.metrics = metrics or Metrics()
        self.agents = AgentHub(config, self.metrics, clock.now)
        self.agents.known_hosts = self._listed_hosts
        self.inventory = Inventory()
        self.inventory_ready = False
        # Host → the VMs Nova places on it, as of the inventory (for _on_report).
        self._servers_on: dict[str, frozenset[str]] = {}
        self._orchestrators = frozenset(detachers)
        self._ref_problem = ref_checker(detachers)
        self.controller = Controller(
            Ports(compute, self.agents, detachers), journal, config, self._observe, self.metrics,
            is_leader=self.leadership.is_leader,
        )  # fmt: skip
        self._tick_lock: asyncio.Lock | None = None
        self._tick_soon: asyncio.Task[object] | None = None
        # The first round comes one plan interval after start (or on contention), when
        # the agents have reported; open migrations are followed from the first step.
        self._last_plan_at = clock.now()
        self.agents.on_report.append(self._on_report)

    # -- what the controller sees ------------------------------------------------------
    def _observe(self, now: float, books: Bookkeeping) -> ClusterSnapshot:
        # A move that finished after Nova's inventory was read: the target's agent speaks
        # for the VM until the next refresh shows it there too.
        moved = self.journal.done_since(self.inventory.fetched_at)
        books = replace(books, moved_to={r.vm_uuid: r.target for r in moved})
        return join(now, self.inventory, self.agents.telemetry(), self.config.inventory, books,
                    orchestrators=self._orchestrators,
                    ref_problem=self._ref_problem)  # fmt: skip

    def snapshot(self) -> ClusterSnapshot:
        return self.controller.snapshot(self.clock.now())

    def recent_snapshot(self) -> ClusterSnapshot:
        """For reads that may be a little old (status, listings, finding a VM by name):
        the newest snapshot, built anew once it is older than a planning interval or an
        agent interval, whichever is shorter (no older than the reports it shows)."""
        service = self.config.service
        max_age_s = min(service.plan_interval_s, service.agent_interval_s)
        return self.controller.recent_snapshot(self.clock.now(), max_age_s)

    @property
    def pause(self) -> PauseState:
        return self.journal.pause_state()

    def apply_start_paused(self) -> None:
        """`service.start_paused`: a fresh install moves nothing until an operator resumes.

        Only a journal that never recorded a pause state is paused (`at == 0.0`: no pause
        row was ever written), so a restart after `coordctl resume` stays resumed.
        Not gated on leadership: this runs right after the elector thread starts, before
        it can have won the Lease, so a leader check would skip it on the very replica
        about to lead. A follower writing it is safe: only while nobody ever paused or
        resumed, every replica writes the same "paused", and the one race (a resume in
        the same instant on a fresh install) errs towards paused, which status shows.
        """
        if self.config.service.start_paused and self.pause.at == 0.0:
            self.set_pause(PauseState(True, "start_paused", "configuration", self.clock.now()))

    def set_pause(self, state: PauseState) -> None:
        self.controller.set_pause(state)

    # -- inventory --------------------------------------------------------------------------
    async def refresh_inventory(self) -> None:
        try:
            self.inventory = await asyncio.to_thread(self._fetch_inventory)
            self.inventory_ready = True
            self._servers_on = _servers_by_host(self.inventory)
        except ComputeError as exc:
            self.metrics.inventory_errors.inc()
            log.warning("inventory refresh failed", error=str(exc))
        # Also after a failed refresh: silent hosts still expire (on the last listing).
        self.agents.forget_hosts(self._listed_hosts())

    def _listed_hosts(self) -> set[str] | None:
        """The hypervisors Nova lists; None until its inventory first loaded."""
        if not self.inventory_ready:
            return None
        return {h.name for h in self.inventory.hypervisors}

    def _fetch_inventory(self) -> Inventory:
        return Inventory(
            hypervisors=tuple(self.compute.list_hypervisors()),
            servers=tuple(self.compute.list_servers()),
            groups=tuple(self.compute.list_server_groups()),
            fetched_at=self.clock.now(),
        )

    # -- the loop -------------------------------------------------------------------------------
    async def loop_step(self) -> Tick | None:
        """Called every `workflow.poll_s`: plan when a round is due, else follow."""
        now = self.clock.now()
        due = now - self._last_plan_at >= self.config.service.plan_interval_s
        return await self.tick(plan=due)

    def _on_report(self, host: str) -> None:
        """Plan early when a live report shows a contended VM that Nova places on the
        reporting host: reaction time is then bounded by detection (sustained samples)
        and `EARLY_ROUND_SPACING`, not by the planning interval.

        Only VMs Nova places there count: any other (a VM Nova does not know, one on
        another host) can never be moved on this host's word, so it must not buy a
        round either. Reports themselves are not rate-limited: legitimate ones arrive
        in bursts far faster than the interval (an agent's buffer after a blip), each
        costs one fold of at most `max_vms_per_report` VMs, and what made a flood
        expensive, a planning round per report, is bounded here."""
        if not self.config.service.plan_on_contention:
            return
        if self._tick_soon is not None and not self._tick_soon.done():
            return
        spacing_s = self.config.service.plan_interval_s * EARLY_ROUND_SPACING
        if self.clock.now() - self._last_plan_at < spacing_s:
            return
        if not self.leadership.is_leader():
            return
        if self._shows_contention(host):
            self._tick_soon = asyncio.get_running_loop().create_task(self.tick())

    def _shows_contention(self, host: str) -> bool:
        placed = self._servers_on.get(host)
        telemetry = self.agents.host_telemetry(host)  # not telemetry(): that copies all
        if not placed or telemetry is None:
            return False
        return any(
            uuid in placed and is_contended(_probe(host, vm.metrics), self.config.policy)
            for uuid, vm in telemetry.vms.items()
        )

    async def tick(self, plan: bool = True) -> Tick | None:
        """One controller tick in a thread; ticks never overlap. None before the first
        inventory arrived: a snapshot without it would abort every open migration."""
        leader = self.leadership.is_leader()
        self.metrics.leader.set(1 if leader else 0)
        if not self.inventory_ready:
            return None
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            if plan:  # a follower keeps its model warm at the same pace, no faster
                self._last_plan_at = self.clock.now()
            with self.metrics.plan_seconds.time():
                return await asyncio.to_thread(self.controller.tick, self.clock.now(), plan, leader)

    async def migrate_now(
        self, vm_uuid: str, target: str | None, force: bool = False
    ) -> MigrationRecord | Skipped:
        if not self.leadership.is_leader():
            return Skipped(vm_uuid, "", "this replica is not the leader: ask the leader")
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            return await asyncio.to_thread(
                self.controller.migrate_now, vm_uuid, target, self.clock.now(), force
            )

    async def drain(self, timeout_s: float) -> bool:
        """Take no further tick and let the one under way finish in its thread (its
        steps are short): True once none runs. The asyncio lock is no measure of that:
        cancelling the task that awaits a tick frees it while the thread goes on acting."""
        return await asyncio.to_thread(self.controller.stop, timeout_s)


def _servers_by_host(inventory: Inventory) -> dict[str, frozenset[str]]:
    by_host: dict[str, set[str]] = {}
    for server in inventory.servers:
        by_host.setdefault(server.host, set()).add(server.uuid)
    return {host: frozenset(uuids) for host, uuids in by_host.items()}


def _probe(host: str, metrics: VmMetrics) -> Vm:
    """A VM carrying only metrics, to ask the policy's own detection rule."""
    return Vm(uuid="", name="", host=host, vcpus=0, ram_mib=0, metrics=metrics)
