"""One migration's next step, taken from its journaled state and the tick's snapshot.

    PLANNED ─cap─▶ DETACHING ─drained─▶ MIGRATING ─Nova done─▶ VERIFYING ─▶ REATTACHING ─▶ DONE
       │               │                    │                     │              ▲
       └─ ABORTED      └────────────────────┴─────────────────────┴──────────────┘
          (nothing done)    any ending once the VM may be detached: FAILED | ABORTED

Each step is one short call to one port (never a sleep); a wait is the state plus a
deadline in the journal, and the next tick looks again. A state is committed before the
step it names is taken, so a crash leaves a row that says the most that may have
happened: MIGRATING with step "requesting" means live-migrate may have been called, and
it is never called again for that row (Nova's migrations newer than the journaled floor
say whether it was). Both detach and reattach are idempotent.

Errors: `End` leaves the happy path (through REATTACHING once the VM may be detached);
anything else raised by a port is a failed attempt the controller retries with backoff
(`Controller._failed_attempt`), never in a loop.

`STEALBALANCER_CRASH_AT=<STATE>` makes the process SIGKILL itself right after that state
is committed (`NOVA_CALLED`: right after Nova accepted the live migration), for drills.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from coordinator.config import Config
from coordinator.errors import (
    ComputeError,
    ComputeUnavailable,
    DetachError,
    HypervisorError,
    NoValidHost,
)
from coordinator.journal import Journal, MigrationRecord, State
from coordinator.model import ClusterSnapshot, Vm
from coordinator.policy.detect import is_fresh
from coordinator.ports import Compute, Detacher, Hypervisor, MigrationInfo, ServerInfo

log = structlog.get_logger("stealbalancer.controller")

CRASH_ENV = "STEALBALANCER_CRASH_AT"
NOVA_CALLED = "NOVA_CALLED"  # crash point right after Nova accepted the live migration
NOVA_DONE = frozenset({"completed"})
NOVA_FAILED = frozenset({"error", "failed", "cancelled", "aborted"})
REQUESTING, REQUESTED, ABORTING = "requesting", "requested", "aborting"


@dataclass(frozen=True, slots=True)
class Ports:
    compute: Compute
    hypervisor: Hypervisor
    detachers: Mapping[str, Detacher]  # keyed by orchestrator tag


class End(Exception):
    """Leave the happy path: finish in `state` with `outcome` (reattaching first)."""

    def __init__(self, state: State, outcome: str, blame_target: bool = False) -> None:
        super().__init__(outcome)
        self.state, self.outcome, self.blame_target = state, outcome, blame_target


class Steps:
    """The step for each state. Returns the record as journaled after the step; the
    same state and step back means "wait for the next tick"."""

    def __init__(self, ports: Ports, journal: Journal, config: Config) -> None:
        self._ports, self._journal, self._config = ports, journal, config

    def take(self, record: MigrationRecord, snap: ClusterSnapshot, now: float) -> MigrationRecord:
        step = {
            State.PLANNED: self._planned,
            State.DETACHING: self._detaching,
            State.MIGRATING: self._migrating,
            State.VERIFYING: self._verifying,
            State.REATTACHING: self._reattaching,
        }[record.state]
        return step(record, snap, now)

    # -- PLANNED: re-check, cap; nothing has been done yet ---------------------------
    def _planned(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        why = self._recheck(record, snap)
        if why:
            raise End(State.ABORTED, f"re-check against newest snapshot: {why}")
        detacher = self.detacher(record)
        self._cap(record)
        return self.commit(record, State.DETACHING, now, detached_at=now,
                           deadline=now + detacher.detach_timeout_s)  # fmt: skip

    def _cap(self, record: MigrationRecord) -> None:
        try:
            applied = self._ports.hypervisor.set_migration_speed(
                record.source, record.vm_uuid, int(record.bandwidth_mib_s)
            )
        except HypervisorError as exc:
            raise End(State.ABORTED, f"could not cap bandwidth on {record.source}: {exc}") from exc
        log.info("bandwidth capped", migration=record.id, vm=record.vm_uuid,
                 host=record.source, mib_s=applied)  # fmt: skip

    def _recheck(self, record: MigrationRecord, snap: ClusterSnapshot) -> str:
        # `vm.migrating` is not checked: the snapshot counts this very migration as in
        # flight; another one of the same VM is refused at admission, or by Nova (409).
        vm, target = snap.vms.get(record.vm_uuid), snap.hosts.get(record.target)
        checks = (
            (vm is None, "the VM is gone"),
            (vm is not None and vm.host != record.source, "the VM is no longer on the source"),
            (vm is not None and not vm.known_to_nova, "Nova does not know the VM"),
            (vm is not None and bool(vm.refusal), vm.refusal if vm else ""),
            (vm is not None and vm.orchestrator != record.orchestrator,
             "the VM's orchestrator tag changed"),
            (target is None, "the target left the inventory"),
            (target is not None and not (target.enabled and target.up), "the target is down"),
            (target is not None
             and not is_fresh(target.last_report_at, snap.now, self._config.policy),
             "the target's telemetry is stale"),
        )  # fmt: skip
        return next((why for bad, why in checks if bad), "")

    # -- DETACHING: one drain pass per tick until the orchestrator let go ------------
    def _detaching(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        try:
            done = self.detacher(record).detach(self.vm(record, snap), record.id)
        except DetachError as exc:
            raise End(State.ABORTED, f"detach refused: {exc}") from exc
        if not done:
            if now >= record.deadline:
                raise End(State.ABORTED, "the orchestrator did not let go in time")
            return record
        floor = max((int(m.id) for m in self._ports.compute.list_migrations(record.vm_uuid)),
                    default=0)  # fmt: skip
        return self.commit(record, State.MIGRATING, now, nova_floor=floor, step="", deadline=0.0)

    # -- MIGRATING: ask Nova once, then follow its migration record -------------------
    def _migrating(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        if record.step == "":
            return self._request(record, now)
        mine = self._ours(record)
        server = self._ports.compute.get_server(record.vm_uuid)
        landed = server.status == "ACTIVE" and server.host == record.target
        if mine is None:
            return self._not_yet_seen(record, now, landed, server)
        if mine.id != record.nova_migration_id:
            record = self.save(record, nova_migration_id=mine.id)
        if mine.status in NOVA_DONE or (landed and mine.status not in NOVA_FAILED):
            # Some Nova versions flip the migration record late: the server is the truth.
            return self.commit(record, State.VERIFYING, now, step="",
                               deadline=now + self._config.workflow.verify_timeout_s)  # fmt: skip
        if mine.status in NOVA_FAILED:
            if record.step == ABORTING:
                raise End(State.ABORTED, record.last_error or "aborted")
            raise End(State.FAILED, f"Nova migration {mine.id} ended {mine.status}")
        if record.step == REQUESTING:
            budget = self._config.cost.max_migration_s
            record = self.save(record, step=REQUESTED, deadline=now + budget)
        return self._watch(record, mine, now)

    def _request(self, record: MigrationRecord, now: float) -> MigrationRecord:
        grace = self._config.workflow.accept_grace_s
        # Journaled before the call: from here on live-migrate is never called again.
        record = self.save(record, step=REQUESTING, deadline=now + grace, progress_at=now)
        maybe_crash("REQUESTING")
        try:
            self._ports.compute.live_migrate(record.vm_uuid, record.target)
        except ComputeUnavailable as exc:
            # A timeout or 5xx may still have been accepted: the next look tells.
            log.warning("live migration request unanswered", migration=record.id, error=str(exc))
            return record
        except ComputeError as exc:
            blame = isinstance(exc, NoValidHost)
            raise End(State.FAILED, f"Nova refused the migration: {exc}", blame) from exc
        log.info("live migration requested", migration=record.id, vm=record.vm_uuid,
                 host=record.source, target=record.target)  # fmt: skip
        maybe_crash(NOVA_CALLED)
        budget = self._config.cost.max_migration_s
        return self.save(record, step=REQUESTED, deadline=now + budget, progress_at=now)

    def _not_yet_seen(
        self, record: MigrationRecord, now: float, landed: bool, server: ServerInfo
    ) -> MigrationRecord:
        if landed:
            raise End(State.FAILED, "the VM is on the target but Nova shows no migration of ours")
        if now < record.progress_at + self._config.workflow.accept_grace_s:
            return record  # Nova creates the migration record asynchronously
        if _nova_is_migrating(server):
            # Accepted, and a busy conductor has not written the migration record yet:
            # reattaching now would leave Nova moving a VM back in rotation. Wait, up to
            # the migration's own time budget.
            if now < record.progress_at + self._config.cost.max_migration_s:
                return record
            raise End(State.FAILED, "Nova shows the server migrating but no migration of "
                                    "ours within the migration time budget")  # fmt: skip
        raise End(State.ABORTED, "Nova has no migration for it: it was never started")

    def _watch(self, record: MigrationRecord, mine: MigrationInfo, now: float) -> MigrationRecord:
        cfg = self._config.workflow
        if record.step == ABORTING:
            if now >= record.deadline:
                raise End(State.FAILED, f"{record.last_error}; Nova did not confirm the abort")
            return record
        if mine.memory_processed_bytes != record.progress_bytes:
            record = self.save(record, progress_bytes=mine.memory_processed_bytes, progress_at=now)
        if now >= record.deadline:
            budget = self._config.cost.max_migration_s
            return self._abort(record, mine, f"over its time budget of {budget:.0f}s", now)
        if record.progress_bytes > 0 and now - record.progress_at > cfg.stall_s:
            return self._abort(record, mine, f"stalled for {cfg.stall_s:.0f}s", now)
        return record

    def _abort(
        self, record: MigrationRecord, mine: MigrationInfo, why: str, now: float
    ) -> MigrationRecord:
        wait = self._config.workflow.abort_wait_s
        record = self.save(record, step=ABORTING, last_error=f"aborted: {why}",
                           deadline=now + wait)  # fmt: skip
        try:
            self._ports.compute.abort_migration(record.vm_uuid, mine.id)
        except ComputeError as exc:
            # A timeout may have been applied; a 409 may mean it just completed. Either
            # way Nova may still be moving the VM: stay ABORTING and let the next looks
            # decide (completed: verify; failed: aborted; still running at the abort
            # deadline: failed), never reattach now.
            log.warning("live migration abort not confirmed", migration=record.id,
                        vm=record.vm_uuid, why=why, error=str(exc))  # fmt: skip
            return self.save(record, last_error=f"{record.last_error}; abort call failed: {exc}")
        log.warning("live migration aborted", migration=record.id, vm=record.vm_uuid, why=why)
        return record

    def _ours(self, record: MigrationRecord) -> MigrationInfo | None:
        """Nova's migration of this server newer than the journaled floor, if any."""
        found = self._ports.compute.list_migrations(record.vm_uuid)
        newer = [m for m in found if int(m.id) > record.nova_floor]
        return max(newer, key=lambda m: int(m.id)) if newer else None

    # -- VERIFYING: Nova says ACTIVE on the target and the target's agent sees it ----
    def _verifying(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        server = self._ports.compute.get_server(record.vm_uuid)
        if server.host != record.target or server.status != "ACTIVE":
            raise End(State.FAILED, f"Nova shows {server.status} on {server.host}, not the target")
        if self._ports.hypervisor.reports_vm(record.target, record.vm_uuid):
            return self.commit(record, State.REATTACHING, now, ending=State.DONE.value,
                               outcome=f"moved {record.source} → {record.target}",
                               deadline=now + self.detacher(record).detach_timeout_s)  # fmt: skip
        if now >= record.deadline:
            raise End(State.FAILED, "moved, but the target's agent does not report the VM", True)
        return record

    # -- REATTACHING: until the orchestrator has it back ------------------------------
    def _reattaching(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        detacher, vm = self.detacher(record), self.vm(record, snap)
        if detacher.reattach(vm, record.id):
            return self.close(record, State(record.ending or State.DONE.value), now)
        if now < record.deadline:
            return record
        if detacher.detached_by(vm) != record.id:
            # Our hold is released (or another's is there, which was never ours to end);
            # the orchestrator's own health checks take it from here.
            note = f"{record.outcome}; back in rotation not confirmed in time"
            return self.close(record, State(record.ending or State.DONE.value), now, note)
        return record

    # -- shared ------------------------------------------------------------------------
    def detacher(self, record: MigrationRecord) -> Detacher:
        detacher = self._ports.detachers.get(record.orchestrator or "none")
        if detacher is None:
            raise End(State.ABORTED, f"no detacher for orchestrator {record.orchestrator!r}")
        return detacher

    def vm(self, record: MigrationRecord, snap: ClusterSnapshot) -> Vm:
        """The VM as the tick saw it, or as the journal remembers it (it may be gone
        from the inventory while it migrates; the detachers need only the ref)."""
        known = snap.vms.get(record.vm_uuid)
        if known is not None and known.orchestrator_ref == record.orchestrator_ref:
            return known
        return Vm(uuid=record.vm_uuid, name=record.vm_name, host=record.source, vcpus=0,
                  ram_mib=0, orchestrator=record.orchestrator or "none",
                  orchestrator_ref=record.orchestrator_ref)  # fmt: skip

    def commit(
        self, record: MigrationRecord, state: State, now: float, **changes: Any
    ) -> MigrationRecord:
        """Journal a new state (and reset the error count) before its step is taken."""
        updated = self._journal.transition(record, state, now, attempts=0, retry_at=0.0,
                                           last_error="", **changes)  # fmt: skip
        log.info("migration state", migration=record.id, vm=record.vm_uuid,
                 host=record.source, state=state.value)  # fmt: skip
        maybe_crash(state.value)
        return updated

    def close(
        self, record: MigrationRecord, state: State, now: float, outcome: str = ""
    ) -> MigrationRecord:
        """End the migration. One that did not succeed parks its VM (and the target,
        when it is to blame) before it is closed: a crash or a journal error between
        the two then leaves the VM parked with its migration still open, and the retried
        close only renews the park; the other order left a failed VM free to be planned
        again on the next round."""
        outcome = outcome or record.outcome
        if state is not State.DONE:
            self._park(record, state, outcome, now)
        return self._journal.transition(record, state, now, outcome=outcome)

    def _park(self, record: MigrationRecord, state: State, outcome: str, now: float) -> None:
        never_detached = record.detached_at == 0.0
        wf, policy = self._config.workflow, self._config.policy
        until = now + (wf.not_started_park_s if never_detached else policy.quarantine_s)
        why = f"migration {record.id} {state.value}: {outcome}"[:500]
        self._journal.quarantine("vm", record.vm_uuid, until, why)
        if record.blame_target:
            self._journal.quarantine("host", record.target, until, why)

    def save(self, record: MigrationRecord, **changes: Any) -> MigrationRecord:
        updated = replace(record, **changes)
        self._journal.update(updated, was=record)
        return updated


def maybe_crash(point: str) -> None:
    if os.environ.get(CRASH_ENV, "") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _nova_is_migrating(server: ServerInfo) -> bool:
    """Nova is working on a migration of the server (its status, or its task state
    while the API has accepted the request and the conductor has not started it)."""
    return server.status == "MIGRATING" or (server.task_state or "").startswith("migrat")
