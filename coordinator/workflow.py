"""The migration workflow: one live migration carried from plan to a recorded outcome.

    PLANNED → DETACHING → MIGRATING → VERIFYING → REATTACHING → DONE
                  │            │            │
                  └────────────┴────────────┴──→ REATTACHING → FAILED | ABORTED

Each state is committed to the journal *before* the step it names is taken, so a
crash leaves a row that says the most that may have happened. `recover` continues
every open migration from there: PLANNED was never acted on (ABORTED); DETACHING may
have half-detached (reattach, ABORTED); MIGRATING asks Nova whether a migration newer
than the journaled floor exists and follows it, and never calls live-migrate again;
VERIFYING verifies again; REATTACHING reattaches again (both detach calls are
idempotent). Nova errors end the migration with a recorded outcome; nothing retries.

For crash tests, `STEALBALANCER_CRASH_AT=<STATE>` makes the process SIGKILL itself
right after that state is committed (`NOVA_CALLED`: right after Nova accepted the
live migration, i.e. mid-migration).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from coordinator.config import Config
from coordinator.errors import ComputeError, ComputeUnavailable, DetachError, HypervisorError
from coordinator.journal import Journal, MigrationRecord, State
from coordinator.model import ClusterSnapshot, Move, Orchestrator, Vm
from coordinator.ports import Compute, Detacher, Hypervisor, MigrationInfo

log = structlog.get_logger("stealbalancer.workflow")

_NOVA_DONE = frozenset({"completed"})
_NOVA_FAILED = frozenset({"error", "failed", "cancelled", "aborted"})
CRASH_ENV = "STEALBALANCER_CRASH_AT"
_ACCEPT_GRACE_S = 15.0
# Crash point right after Nova accepted the live migration (mid-migration).
NOVA_CALLED = "NOVA_CALLED"


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Refused(Exception):
    """A move the workflow will not start (budget, duplicate, re-check)."""


@dataclass(frozen=True, slots=True)
class Ports:
    compute: Compute
    hypervisor: Hypervisor
    detachers: Mapping[Orchestrator, Detacher]


class _End(Exception):
    """Leave the happy path: reattach, then finish in `state` with `outcome`."""

    def __init__(self, state: State, outcome: str) -> None:
        super().__init__(outcome)
        self.state, self.outcome = state, outcome


class Workflow:
    """Starts and drives migrations; thread-safe (one thread per running migration)."""

    def __init__(
        self,
        ports: Ports,
        journal: Journal,
        config: Config,
        snapshot: Callable[[], ClusterSnapshot],
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ports, self._journal, self._config = ports, journal, config
        self._snapshot, self._clock, self._sleep = snapshot, clock or SystemClock(), sleep
        self._lock = threading.Lock()
        # Migrations this process journaled itself; any other open one is a recovery.
        self._live: set[str] = set()

    # -- admission ----------------------------------------------------------
    def admit(self, move: Move, manual: bool = False) -> MigrationRecord:
        """Journal a PLANNED migration, granting it a share of the bandwidth budget."""
        vm = self._snapshot().vms.get(move.vm_uuid)
        with self._lock:
            open_ = self._journal.open_migrations()
            if any(r.vm_uuid == move.vm_uuid for r in open_):
                raise Refused(f"{move.vm_name} already has a migration in flight")
            free = self._config.limits.bandwidth_budget_mib_s - sum(
                r.bandwidth_mib_s for r in open_
            )
            grant = min(move.bandwidth_mib_s, free)
            if grant < self._config.limits.min_bandwidth_per_migration_mib_s:
                raise Refused("cluster migration bandwidth budget exhausted")
            now = self._clock.now()
            record = MigrationRecord(
                id=MigrationRecord.new_id(),
                vm_uuid=move.vm_uuid,
                vm_name=move.vm_name,
                source=move.source,
                target=move.target,
                az=move.az,
                bandwidth_mib_s=grant,
                manual=manual,
                orchestrator=(vm.orchestrator if vm else Orchestrator.NONE).value,
                orchestrator_ref=vm.orchestrator_ref if vm else "",
                created_at=now,
                updated_at=now,
                steal_before=move.steal,
                gib_to_move=move.cost.gib_to_move,
                outcome="manual" if manual else move.reason,
            )
            self._live.add(record.id)
            return self._journal.create(record)

    # -- driving ------------------------------------------------------------
    def run(self, record: MigrationRecord) -> MigrationRecord:
        """Drive one migration from its journaled state to a terminal one."""
        bound = log.bind(migration=record.id, vm=record.vm_uuid, host=record.source)
        try:
            record = self._happy_path(record)
        except _End as end:
            bound.warning("migration ending", state=end.state.value, outcome=end.outcome)
            record = self._finish(record, end.state, end.outcome)
        bound.info("migration finished", state=record.state.value, outcome=record.outcome)
        return record

    def recover(self) -> list[MigrationRecord]:
        """Resume or roll back every migration a previous process left open."""
        return [self.run(r) for r in self._journal.open_migrations()]

    def _happy_path(self, record: MigrationRecord) -> MigrationRecord:
        if record.state is State.PLANNED:
            record = self._plan_step(record)
        if record.state is State.DETACHING:
            record = self._detach_step(record)
        if record.state is State.MIGRATING:
            record = self._migrate_step(record)
        if record.state is State.VERIFYING:
            record = self._verify_step(record)
        if record.state is State.REATTACHING:
            return self._finish(record, State(record.ending or State.DONE.value), record.outcome)
        return record

    def _plan_step(self, record: MigrationRecord) -> MigrationRecord:
        if self._is_recovery(record):
            return self._close(record, State.ABORTED, "coordinator restarted before acting")
        why = self._recheck(record)
        if why:
            return self._close(record, State.ABORTED, f"re-check against newest snapshot: {why}")
        return self._step(record, State.DETACHING)

    def _detach_step(self, record: MigrationRecord) -> MigrationRecord:
        if self._is_recovery(record):
            raise _End(State.ABORTED, "coordinator restarted while detaching")
        try:
            self._detacher(record).detach(self._vm(record), record.id)
        except DetachError as exc:
            raise _End(State.ABORTED, f"detach refused: {exc}") from exc
        self._cap(record)
        floor = self._nova_floor(record)
        return self._step(record, State.MIGRATING, nova_floor=floor)

    def _migrate_step(self, record: MigrationRecord) -> MigrationRecord:
        if not self._is_recovery(record):
            self._start_nova(record)
        self._follow(record)
        return self._step(record, State.VERIFYING)

    def _verify_step(self, record: MigrationRecord) -> MigrationRecord:
        compute, cfg = self._ports.compute, self._config.workflow
        deadline = self._clock.now() + cfg.verify_timeout_s
        while True:
            server = compute.get_server(record.vm_uuid)
            if server.host != record.target or server.status != "ACTIVE":
                raise _End(
                    State.FAILED, f"Nova shows {server.status} on {server.host}, not the target"
                )
            if self._ports.hypervisor.reports_vm(record.target, record.vm_uuid):
                break
            if self._clock.now() >= deadline:
                raise _End(State.FAILED, "moved, but the target's agent does not report the VM")
            self._sleep(cfg.poll_s)
        return self._step(
            record,
            State.REATTACHING,
            ending=State.DONE.value,
            outcome=f"moved {record.source} → {record.target}",
        )

    # -- Nova ---------------------------------------------------------------
    def _nova_floor(self, record: MigrationRecord) -> int:
        try:
            found = self._ports.compute.list_migrations(record.vm_uuid)
        except ComputeError as exc:
            raise _End(State.ABORTED, f"Nova unreachable before migrating: {exc}") from exc
        return max((int(m.id) for m in found), default=0)

    def _start_nova(self, record: MigrationRecord) -> None:
        try:
            self._ports.compute.live_migrate(record.vm_uuid, record.target)
        except ComputeUnavailable as exc:
            # A timeout or 5xx may still have been accepted: look before giving up.
            if self._ours(record) is None:
                raise _End(State.FAILED, f"Nova did not accept the migration: {exc}") from exc
        except ComputeError as exc:
            raise _End(State.FAILED, f"Nova refused the migration: {exc}") from exc
        log.info("live migration requested", migration=record.id, vm=record.vm_uuid,
                 host=record.source, target=record.target)  # fmt: skip
        _maybe_crash(NOVA_CALLED)

    def _ours(self, record: MigrationRecord) -> MigrationInfo | None:
        """Nova's migration of this server newer than the journaled floor, if any."""
        found = self._ports.compute.list_migrations(record.vm_uuid)
        newer = [m for m in found if int(m.id) > record.nova_floor]
        return max(newer, key=lambda m: int(m.id)) if newer else None

    def _follow(self, record: MigrationRecord) -> None:
        cfg = self._config.workflow
        budget = max(self._config.cost.max_migration_s, 1.0)
        started = self._clock.now() if not self._is_recovery(record) else record.updated_at
        progress, progress_at = -1, self._clock.now()
        while True:
            mine = self._poll_nova(record)
            if mine is None:
                if self._clock.now() - started < _ACCEPT_GRACE_S:
                    self._sleep(cfg.poll_s)
                    continue  # Nova creates the migration record asynchronously
                raise _End(State.ABORTED, "Nova has no migration for it: it was never started")
            if mine.status in _NOVA_DONE:
                return
            if mine.status in _NOVA_FAILED:
                raise _End(State.FAILED, f"Nova migration {mine.id} ended {mine.status}")
            now = self._clock.now()
            if mine.memory_processed_bytes != progress:
                progress, progress_at = mine.memory_processed_bytes, now
            if now - started > budget:
                self._abort(record, mine, f"over its time budget of {budget:.0f}s")
            if progress > 0 and now - progress_at > cfg.stall_s:
                self._abort(record, mine, f"stalled for {cfg.stall_s:.0f}s")
            self._sleep(cfg.poll_s)

    def _poll_nova(self, record: MigrationRecord) -> MigrationInfo | None:
        try:
            mine = self._ours(record)
            server = self._ports.compute.get_server(record.vm_uuid)
        except ComputeError as exc:
            log.warning("Nova poll failed", migration=record.id, error=str(exc))
            return MigrationInfo(id="-1", server_uuid=record.vm_uuid, status="unknown",
                                 source=record.source, dest=record.target)  # fmt: skip
        if mine is not None and record.nova_migration_id != mine.id:
            record = self._remember(record, mine.id)
        # Some Nova versions flip the migration record late; the server is the truth.
        landed = server.status == "ACTIVE" and server.host == record.target
        if mine is not None and landed and mine.status not in _NOVA_DONE | _NOVA_FAILED:
            return MigrationInfo(mine.id, mine.server_uuid, "completed", mine.source, mine.dest)
        return mine

    def _remember(self, record: MigrationRecord, nova_id: str) -> MigrationRecord:
        updated = replace(record, nova_migration_id=nova_id)
        self._journal.update(updated)
        return updated

    def _abort(self, record: MigrationRecord, mine: MigrationInfo, why: str) -> None:
        try:
            self._ports.compute.abort_migration(record.vm_uuid, mine.id)
        except ComputeError as exc:
            raise _End(State.FAILED, f"{why}; abort failed: {exc}") from exc
        deadline = self._clock.now() + self._config.workflow.abort_wait_s
        while self._clock.now() < deadline:
            now_mine = self._ours(record)
            if now_mine is not None and now_mine.status in _NOVA_DONE:
                return  # it finished before the abort landed: carry on and verify
            if now_mine is None or now_mine.status in _NOVA_FAILED:
                raise _End(State.ABORTED, f"aborted: {why}")
            self._sleep(self._config.workflow.poll_s)
        raise _End(State.FAILED, f"{why}; Nova did not confirm the abort")

    # -- agents and orchestrators --------------------------------------------
    def _cap(self, record: MigrationRecord) -> None:
        try:
            applied = self._ports.hypervisor.set_migration_speed(
                record.source, record.vm_uuid, int(record.bandwidth_mib_s)
            )
        except HypervisorError as exc:
            raise _End(State.ABORTED, f"could not cap bandwidth on {record.source}: {exc}") from exc
        log.info("bandwidth capped", migration=record.id, vm=record.vm_uuid,
                 host=record.source, mib_s=applied)  # fmt: skip

    def _detacher(self, record: MigrationRecord) -> Detacher:
        kind = Orchestrator(record.orchestrator or Orchestrator.NONE.value)
        detacher = self._ports.detachers.get(kind)
        if detacher is None:
            raise _End(State.ABORTED, f"no detacher for orchestrator {kind.value}")
        return detacher

    def _vm(self, record: MigrationRecord) -> Vm:
        known = self._snapshot().vms.get(record.vm_uuid)
        if known is not None:
            return known
        return Vm(
            uuid=record.vm_uuid,
            name=record.vm_name,
            host=record.source,
            vcpus=0,
            ram_mib=0,
            orchestrator=Orchestrator(record.orchestrator or "none"),
            orchestrator_ref=record.orchestrator_ref,
        )

    # -- re-check and bookkeeping ---------------------------------------------
    def _recheck(self, record: MigrationRecord) -> str:
        # `vm.migrating` is not checked: the snapshot counts this very migration as in
        # flight; another one of the same VM is refused at admission, or by Nova (409).
        snap = self._snapshot()
        vm, target = snap.vms.get(record.vm_uuid), snap.hosts.get(record.target)
        checks = (
            (vm is None, "the VM is gone"),
            (vm is not None and vm.host != record.source, "the VM is no longer on the source"),
            (vm is not None and not vm.known_to_nova, "Nova does not know the VM"),
            (target is None, "the target left the inventory"),
            (target is not None and not (target.enabled and target.up), "the target is down"),
            (target is not None and not self._fresh(target.last_report_at, snap.now),
             "the target's telemetry is stale"),
        )  # fmt: skip
        return next((why for bad, why in checks if bad), "")

    def _fresh(self, at: float | None, now: float) -> bool:
        return at is not None and now - at <= self._config.policy.freshness_s

    def _step(self, record: MigrationRecord, state: State, **changes: Any) -> MigrationRecord:
        updated = self._journal.transition(record, state, self._clock.now(), **changes)
        self._live.add(record.id)
        log.info("migration state", migration=record.id, vm=record.vm_uuid,
                 host=record.source, state=state.value)  # fmt: skip
        _maybe_crash(state)
        return updated

    def _close(self, record: MigrationRecord, state: State, outcome: str) -> MigrationRecord:
        return self._journal.transition(record, state, self._clock.now(), outcome=outcome)

    def _finish(self, record: MigrationRecord, state: State, outcome: str) -> MigrationRecord:
        """Reattach (always, idempotently) and record the terminal state."""
        if record.state is not State.REATTACHING:
            record = self._step(record, State.REATTACHING, ending=state.value, outcome=outcome)
        try:
            self._detacher(record).reattach(self._vm(record), record.id)
        except (DetachError, _End) as exc:
            outcome = f"{outcome}; REATTACH FAILED: {exc}"
            state = State.FAILED
        return self._close(record, state, outcome)

    def _is_recovery(self, record: MigrationRecord) -> bool:
        return record.id not in self._live


def _maybe_crash(state: str) -> None:
    if os.environ.get(CRASH_ENV, "") == state:
        os.kill(os.getpid(), signal.SIGKILL)
