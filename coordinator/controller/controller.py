"""The migration controller: level-triggered, the way Kubernetes controllers work.

Every tick, from one snapshot:

1. observe: the journal's books (open migrations, cooldowns, parked VMs and targets,
   pause) and the world as the observer joins it, once;
2. advance every open migration by the steps whose preconditions now hold (`steps.py`);
3. assess moves whose verify window is over (did steal drop?);
4. unless paused, plan new moves within what is left of the limits, admit and start them.

Every journaled state is re-entered on every tick, so a restart, a takeover by a new
leader and an unexpected exception are all just "the next tick": there is no recovery
path. One place catches what a step raises: an `End` finishes the migration (through
REATTACHING when the VM may be detached); anything else is a failed attempt, retried
with exponential backoff and given up after `workflow.max_attempts` — except putting
the VM back, which is retried until it succeeds. A move that did not end DONE parks the
VM (and the target when the target is to blame), so no failure is retried in a loop.
A journal that cannot be read or written stops the tick: nothing is acted on that
cannot be recorded.

`serve`, `serve --simulate` and `simulate` all run this class; only the ports, the
observer and the clock differ.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol

import structlog

from coordinator import policy
from coordinator.config import Config
from coordinator.controller.steps import End, Ports, Steps, maybe_crash
from coordinator.journal import Journal, JournalError, MigrationRecord, PauseState, State
from coordinator.model import (
    Bookkeeping,
    ClusterSnapshot,
    InFlight,
    Move,
    Plan,
    Skipped,
    Vm,
    mean_steal,
)
from coordinator.service.metrics import PAIN_STEAL, UNMOVABLE_REASONS, Metrics

log = structlog.get_logger("stealbalancer.controller")

# A tick takes at most this many steps per migration (each one a short port call), so
# one migration cannot hold the others up.
_MAX_STEPS_PER_TICK = 8
_DETACHED = (State.DETACHING, State.MIGRATING, State.VERIFYING, State.REATTACHING)


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Refused(Exception):
    """A move the controller will not admit (budget, a migration already open)."""


# The world joined with the journal's books: the service's Nova + agents join, or the
# simulator's World.
Observer = Callable[[float, Bookkeeping], ClusterSnapshot]
# A policy: a pure function of the snapshot and the config (coordinator.policy.plan).
Planner = Callable[[ClusterSnapshot, Config], Plan]


@dataclass(frozen=True, slots=True)
class Tick:
    """What one tick saw and did."""

    snapshot: ClusterSnapshot | None
    plan: Plan | None = None
    started: tuple[MigrationRecord, ...] = ()
    error: str = ""


class Controller:
    """Thread-safe: ticks, manual moves and pause changes are serialised."""

    def __init__(
        self,
        ports: Ports,
        journal: Journal,
        config: Config,
        observe: Observer,
        metrics: Metrics | None = None,
        new_id: Callable[[], str] = MigrationRecord.new_id,
        planner: Planner = policy.plan,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        """`new_id` names new migrations (the simulator counts, for a deterministic day);
        `planner` is the policy (the simulator can put the seed's naive rule in its place
        to compare them under the same actuator); `is_leader` is asked before every step
        and every admission, not once per tick: a tick takes seconds at scale, and a
        replica whose lease lapsed mid-tick must stop acting before another one leads."""
        self.ports, self.journal, self.config = ports, journal, config
        self._is_leader = is_leader
        self._stopped = False
        self._new_id = new_id
        self._planner = planner
        self._observe = observe
        self.metrics = metrics or Metrics()
        self._steps = Steps(ports, journal, config)
        self._lock = threading.RLock()
        self._warned: set[str] = set()  # VMs whose refusal was logged
        # Host -> when a round last found it pressed (ClusterSnapshot.pressed_at). Kept
        # in memory only: after a restart relief waits for fresh evidence, the safe side.
        self._pressed: dict[str, float] = {}
        # The newest snapshot built, for reads that may be a tick old; a move started
        # since makes it too old (the generation counts those, so a read that began
        # before one cannot put its older snapshot back).
        self._latest: ClusterSnapshot | None = None
        self._generation = 0
        self._latest_lock = threading.Lock()  # admin threads keep snapshots too

    # -- observing -----------------------------------------------------------------------
    def books(self, now: float) -> tuple[Bookkeeping, list[MigrationRecord]]:
        """The journal's part of a snapshot, and the open migrations it came from."""
        books, open_, _ = self._read_books(now)
        return books, open_

    def _read_books(
        self, now: float
    ) -> tuple[Bookkeeping, list[MigrationRecord], list[MigrationRecord]]:
        """`books`, and the successes whose effect `_assess` may still record. One read
        of the DONE rows serves both: those a cooldown still covers are the newest of
        the ones an assessment can be due for."""
        open_ = self.journal.open_migrations()
        cooldown_s = self.config.policy.cooldown_s
        done = self.journal.done_since(now - self.config.policy.verify_window_s - cooldown_s)
        cooldown, departed = _cooldowns(done, now, cooldown_s)
        parked = self.journal.quarantines(now)
        books = Bookkeeping(
            in_flight=tuple(_in_flight(r) for r in open_),
            cooldown_until=cooldown,
            quarantined_vms={q.key: q.until for q in parked if q.kind == "vm"},
            quarantined_targets={q.key: q.until for q in parked if q.kind == "host"},
            park_reasons={q.key: q.reason for q in parked if q.kind == "vm"},
            departed_at=departed,
        )
        return books, open_, done

    def snapshot(self, now: float) -> ClusterSnapshot:
        generation = self._generation
        books, _ = self.books(now)
        observed = self._observe(now, books)
        self._keep(observed, generation)
        return self._remembering(observed)

    def recent_snapshot(self, now: float, max_age_s: float) -> ClusterSnapshot:
        """The newest snapshot while it is at most `max_age_s` old and no move started
        since, else a fresh one: for reads that may be a tick old (status, listings). A
        join takes seconds at 400,000 VMs, and an operator's `watch coordctl status`
        must not make one per call (it would hold the GIL the tick needs): reads add at
        most one join per `max_age_s`. A clock that went back makes it stale."""
        latest = self._latest
        if latest is not None and 0.0 <= now - latest.now <= max_age_s:
            return self._remembering(latest)
        return self.snapshot(now)

    def _keep(self, snap: ClusterSnapshot, generation: int) -> None:
        with self._latest_lock:
            latest = self._latest
            if generation == self._generation and (latest is None or snap.now >= latest.now):
                self._latest = snap

    def _forget_snapshot(self) -> None:
        """A move started: reads must show it, not a snapshot from before it."""
        with self._latest_lock:
            self._generation += 1
            self._latest = None

    def _remembering(self, snap: ClusterSnapshot) -> ClusterSnapshot:
        """The snapshot with what earlier rounds found pressed (the planner's memory)."""
        since = snap.now - self.config.policy.relief_memory_s
        # Admin calls read it from other threads: the tick replaces the dict, never
        # changes it in place, so iterating the one read here is safe without a copy.
        remembered = {host: at for host, at in self._pressed.items() if at >= since}
        return replace(snap, pressed_at=MappingProxyType(remembered))

    # -- the tick --------------------------------------------------------------------------
    def tick(self, now: float, plan: bool = True, act: bool = True) -> Tick:
        """One round. `plan=False` only advances open migrations (between planning
        rounds); `act=False` only observes (a follower keeps its model warm)."""
        with self._lock:
            if self._stopped:
                return Tick(None, error="stopping")
            try:
                books, open_, done = self._read_books(now)
                pause = self.journal.pause_state()
            except JournalError as exc:
                return self._journal_down(exc)
            if not plan and (not act or not open_):
                # Between rounds only open migrations need a look (the leader's): skip
                # the join, which costs seconds at 400,000 VMs.
                return Tick(None)
            try:
                snap = self._observe(now, books)
            except Exception:
                self.metrics.tick_errors.inc()
                raise
            self._keep(snap, self._generation)
            if not act:  # a follower: it read the journal, and writes nothing
                self.metrics.journal_writable.set(1)
                self._gauges(snap, open_, pause, None, now)
                return Tick(snap)
            try:
                tick = self._act(snap, open_, done, pause, plan, now)
            except JournalError as exc:
                return self._journal_down(exc)
            self.metrics.journal_writable.set(1)
            return tick

    def _act(
        self,
        snap: ClusterSnapshot,
        open_: list[MigrationRecord],
        done: list[MigrationRecord],
        pause: PauseState,
        plan: bool,
        now: float,
    ) -> Tick:
        advanced = [self.advance(r, snap, now) for r in open_]
        still_open = [r for r in advanced if not r.state.terminal]
        # With no verify window a move is due for assessment in the tick that ended it.
        self._assess(snap, [*done, *(r for r in advanced if r.state is State.DONE)], now)
        the_plan, started = None, []
        if plan and not pause.paused:
            remembering = self._remembering(snap)
            the_plan = self._planner(remembering, self.config)
            self._pressed = {**remembering.pressed_at, **dict.fromkeys(the_plan.pressed, now)}
            for move in the_plan.moves:
                if not self._still_leader("admit"):
                    break
                try:
                    record = self._admit(move, False, now, still_open, snap)
                except Refused as exc:
                    log.info("move not started", vm=move.vm_uuid, reason=str(exc))
                    continue
                still_open.append(record)
                started.append(self.advance(record, snap, now))
        if started:
            self._forget_snapshot()
        self._gauges(snap, self.journal.open_migrations(), pause, the_plan, now)
        return Tick(snap, the_plan, tuple(started))

    def _journal_down(self, exc: JournalError) -> Tick:
        self.metrics.journal_writable.set(0)
        self.metrics.tick_errors.inc()
        log.error("journal unavailable: not acting", error=str(exc))
        return Tick(None, error=str(exc))

    # -- one migration -----------------------------------------------------------------------
    def advance(
        self, record: MigrationRecord, snap: ClusterSnapshot, now: float
    ) -> MigrationRecord:
        """Take every step whose precondition holds now; return the journaled record."""
        for _ in range(_MAX_STEPS_PER_TICK):
            if record.state.terminal or not self._due(record, now):
                break
            if not self._still_leader("step"):
                break
            before = (record.state, record.step)
            try:
                record = self._steps.take(record, snap, now)
            except JournalError:
                raise
            except End as end:
                record = self._end(record, end, now)
            except Exception as exc:  # every error is a state: recorded, retried later
                record = self._failed_attempt(record, exc, now)
                if record.state.terminal:  # given up before anything was done: park it too
                    self._finished(record, now)
                    break
                continue
            if record.state.terminal:
                self._finished(record, now)
                break
            if (record.state, record.step) == before:
                break  # waiting for the world
        return record

    def _still_leader(self, what: str) -> bool:
        if self._is_leader():
            return True
        log.warning("leadership lost mid-tick: not acting", action=what)
        return False

    def stop(self, timeout_s: float) -> bool:
        """Take no further tick, and wait up to `timeout_s` for the one under way (in
        its thread) to finish: True once none runs. Only then may the lease be handed
        over; cancelling the asyncio task that awaits a tick does not stop its thread."""
        self._stopped = True
        if not self._lock.acquire(timeout=timeout_s):
            return False
        self._lock.release()
        return True

    def _due(self, record: MigrationRecord, now: float) -> bool:
        """Whether a failed step may be tried again. A retry time further ahead than
        the longest backoff was set by a clock that has since gone back (or by another
        replica's clock running ahead): waiting it out could hold a reattach for hours."""
        return now >= record.retry_at or record.retry_at - now > self.config.workflow.retry_max_s

    def _end(self, record: MigrationRecord, end: End, now: float) -> MigrationRecord:
        log.warning("migration ending", migration=record.id, vm=record.vm_uuid,
                    state=end.state.value, outcome=end.outcome)  # fmt: skip
        if record.state is State.PLANNED:
            return self._steps.close(record, end.state, now, end.outcome)  # nothing was done
        if record.state is State.REATTACHING:
            # Only a missing detacher ends a reattach: nothing left that could put it back.
            return self._steps.close(record, State.FAILED, now, f"{record.outcome}; {end}")
        try:
            timeout = self._steps.detacher(record).detach_timeout_s
        except End:
            timeout = 0.0
        return self._steps.commit(record, State.REATTACHING, now, ending=end.state.value,
                                  outcome=end.outcome, blame_target=end.blame_target,
                                  step="", deadline=now + timeout)  # fmt: skip

    def _failed_attempt(
        self, record: MigrationRecord, exc: Exception, now: float
    ) -> MigrationRecord:
        cfg = self.config.workflow
        # The step may have journaled progress before it raised ("requesting" before the
        # call to Nova): build on what the journal holds, never on the record it started
        # from, or that progress is lost and the call made again.
        record = self.journal.get(record.id) or record
        attempts = record.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:500]
        self.metrics.step_errors.labels(record.state.value).inc()
        if record.state is State.REATTACHING:
            self.metrics.reattach_failures.inc()
        log.warning("migration step failed", migration=record.id, vm=record.vm_uuid,
                    state=record.state.value, attempts=attempts, error=error)  # fmt: skip
        if _gives_up(record, attempts, now, cfg.max_attempts):
            return self._end(record, End(State.FAILED, _given_up(record, attempts, error)), now)
        delay = min(cfg.retry_max_s, cfg.retry_base_s * 2 ** (attempts - 1))
        updated = replace(record, attempts=attempts, retry_at=now + delay, last_error=error)
        self.journal.update(updated, note=f"retry in {delay:.0f}s: {error}", log=True)
        return updated

    def _finished(self, record: MigrationRecord, now: float) -> None:
        """Count and log an ended migration (one that failed was parked as it closed)."""
        self.metrics.migrations.labels(record.state.value).inc()
        log.info("migration finished", migration=record.id, vm=record.vm_uuid,
                 state=record.state.value, outcome=record.outcome)  # fmt: skip

    # -- admission ----------------------------------------------------------------------------
    def _admit(
        self,
        move: Move,
        manual: bool,
        now: float,
        open_: Sequence[MigrationRecord],
        snap: ClusterSnapshot,
    ) -> MigrationRecord:
        """Journal a PLANNED migration with its share of the bandwidth budget."""
        if any(r.vm_uuid == move.vm_uuid for r in open_):
            raise Refused(f"{move.vm_name} already has a migration in flight")
        limits = self.config.limits
        free = limits.bandwidth_budget_mib_s - granted_mib_s(open_)
        grant = min(move.bandwidth_mib_s, free)
        if grant < limits.min_bandwidth_per_migration_mib_s:
            raise Refused("cluster migration bandwidth budget exhausted")
        vm = snap.vms.get(move.vm_uuid)
        orchestrator = (str(vm.orchestrator), vm.orchestrator_ref) if vm else ("none", "")
        record = MigrationRecord(
            id=self._new_id(), vm_uuid=move.vm_uuid, vm_name=move.vm_name,
            source=move.source, target=move.target, az=move.az, bandwidth_mib_s=grant,
            manual=manual, orchestrator=orchestrator[0], orchestrator_ref=orchestrator[1],
            created_at=now,
            updated_at=now, steal_before=move.steal, gib_to_move=move.cost.gib_to_move,
            outcome="manual" if manual else move.reason,
        )  # fmt: skip
        log.info("migration admitted", migration=record.id, vm=move.vm_uuid, host=move.source,
                 target=move.target, bandwidth_mib_s=grant)  # fmt: skip
        created = self.journal.create(record)
        maybe_crash(State.PLANNED.value)
        return created

    def admit(self, move: Move, now: float, manual: bool = False) -> MigrationRecord:
        """Journal a PLANNED migration for `move` (raises `Refused`); the next tick
        (or `advance`) takes its steps."""
        with self._lock:
            books, open_ = self.books(now)
            return self._admit(move, manual, now, open_, self._observe(now, books))

    # -- operator actions ----------------------------------------------------------------------
    def migrate_now(
        self, vm_uuid: str, target: str | None, now: float, force: bool = False
    ) -> MigrationRecord | Skipped:
        """An operator's move: the policy's filters and caps minus the cooldown; refused
        while paused unless `force`."""
        with self._lock:
            if self._stopped or not self._still_leader("manual move"):
                return Skipped(vm_uuid, "", "this replica is not the leader (or is stopping)")
            pause = self.journal.pause_state()
            if pause.paused and not force:
                why = f"paused ({pause.reason or 'no reason given'}): --force moves anyway"
                return Skipped(vm_uuid, "", why)
            books, open_ = self.books(now)
            snap = self._observe(now, books)
            outcome = policy.plan_one(snap, self.config, vm_uuid, target)
            if isinstance(outcome, Skipped):
                return outcome
            try:
                record = self._admit(outcome, True, now, open_, snap)
            except Refused as exc:
                return Skipped(vm_uuid, outcome.vm_name, str(exc))
            self._forget_snapshot()
            return self.advance(record, snap, now)

    def set_pause(self, state: PauseState) -> None:
        with self._lock:
            self.journal.set_pause(state)
        self.metrics.paused.set(1 if state.paused else 0)
        log.warning("pause changed", paused=state.paused, reason=state.reason, who=state.who)

    # -- after the verify window --------------------------------------------------------------
    def _assess(self, snap: ClusterSnapshot, done: Sequence[MigrationRecord], now: float) -> None:
        """Record the effect of the successes in `done` whose verify window is over.

        `done` holds those that ended within the window and the cooldown after it: once
        that is over the VM may have moved again, and its steal no longer speaks for this
        move (a VM that stopped reporting is given up)."""
        window = self.config.policy.verify_window_s
        for r in done:
            due = r.steal_after < 0 and now >= r.finished_at + window
            vm = snap.vms.get(r.vm_uuid)
            if due and vm is not None and vm.metrics.sampled_at is not None:
                self._record_effect(r, vm.metrics.steal, now)

    def _record_effect(self, r: MigrationRecord, steal_after: float, now: float) -> None:
        self.journal.update(replace(r, steal_after=steal_after))
        if r.steal_before < self.config.policy.steal_threshold:
            # A move that relieved its host: the VM itself was not suffering, so its own
            # steal cannot show whether the move helped; parking it would punish relief.
            return
        wanted = r.steal_before * (1 - self.config.workflow.min_steal_drop)
        if steal_after <= wanted:
            return
        until = now + self.config.policy.quarantine_s
        why = f"steal {r.steal_before:.1%} → {steal_after:.1%} after migration {r.id}"
        self.journal.quarantine("vm", r.vm_uuid, until, why)
        self.journal.quarantine("host", r.target, until, why)
        log.warning("move did not relieve steal", migration=r.id, vm=r.vm_uuid, host=r.target,
                    steal_before=r.steal_before, steal_after=steal_after)  # fmt: skip

    # -- gauges -------------------------------------------------------------------------------
    def _gauges(
        self,
        snap: ClusterSnapshot,
        open_: Sequence[MigrationRecord],
        pause: PauseState,
        the_plan: Plan | None,
        now: float,
    ) -> None:
        m, cfg = self.metrics, self.config
        for state in (State.PLANNED, *_DETACHED):
            m.open_by_state.labels(state.value).set(sum(1 for r in open_ if r.state is state))
        m.running.set(len(open_))
        detached = [now - r.detached_at for r in open_ if r.state in _DETACHED and r.detached_at]
        m.detached_seconds_max.set(max(detached, default=0.0))
        m.detached_overdue.set(sum(1 for d in detached if d > cfg.workflow.max_detached_s))
        m.parked.labels("vm").set(sum(1 for u in snap.vms.values() if u.quarantined_until > now))
        m.parked.labels("host").set(
            sum(1 for until in snap.quarantined_targets.values() if until > now)
        )
        m.paused.set(1 if pause.paused else 0)
        if the_plan is not None:
            m.contended_stuck.set(len(the_plan.skipped))
        self._vm_gauges(snap)

    def _vm_gauges(self, snap: ClusterSnapshot) -> None:
        m, vms = self.metrics, snap.vms.values()
        m.cluster_steal.set(mean_steal(vms))
        m.bandwidth.set(snap.bandwidth_in_use)
        m.bandwidth_budget.set(self.config.limits.bandwidth_budget_mib_s)
        m.contended.set(sum(1 for v in vms if policy.is_contended(v, self.config.policy)))
        m.in_pain.set(sum(1 for v in vms if v.metrics.steal >= PAIN_STEAL))
        refused: dict[str, int] = dict.fromkeys(UNMOVABLE_REASONS, 0)
        warned: set[str] = set()
        for vm in vms:
            reason = _unmovable_reason(vm)
            if not reason:
                continue
            refused[reason] = refused.get(reason, 0) + 1
            if vm.refusal:
                warned.add(vm.uuid)
                if vm.uuid not in self._warned:  # one warning per VM, not one per tick
                    log.warning("VM cannot be moved", vm=vm.uuid, reason=vm.refusal)
        self._warned = warned  # a VM fixed and broken again is warned about again
        for reason, count in refused.items():
            m.unmovable.labels(reason).set(count)


def _gives_up(record: MigrationRecord, attempts: int, now: float, max_attempts: int) -> bool:
    """Putting a VM back is never given up. Once Nova may be moving the VM, following it
    is given up only past the state's deadline too: until then it may still land."""
    if record.state is State.REATTACHING or attempts < max_attempts:
        return False
    return not (record.state is State.MIGRATING and record.step and now < record.deadline)


def _given_up(record: MigrationRecord, attempts: int, error: str) -> str:
    """An outcome that says what may be true of the VM, not only that we stopped."""
    tried = f"gave up after {attempts} failed attempts in {record.state.value}: {error}"
    if record.state is State.MIGRATING and record.step:
        return f"lost track of the live migration to {record.target}; {tried}"
    if record.state is State.VERIFYING:
        return f"Nova reported the move to {record.target} done, but it was not verified; {tried}"
    return tried


def _unmovable_reason(vm: Vm) -> str:
    """The metric label for a VM refused outright (not "no target": a plan outcome)."""
    if vm.refusal.startswith("unknown orchestrator"):
        return "unknown_orchestrator"
    if vm.telemetry_from_wrong_host:
        return "telemetry_from_wrong_host"
    if vm.refusal:
        return "telemetry_from_wrong_host" if "telemetry" in vm.refusal else "other"
    return "opted_out" if vm.opt_out else ""


def _cooldowns(
    done: Sequence[MigrationRecord], now: float, cooldown_s: float
) -> tuple[dict[str, float], dict[str, float]]:
    """VM → end of its cooldown, and host → when a move last left it, from the successes
    that ended within the cooldown (after `now - cooldown_s`, as `done_since` counts)."""
    cooldown: dict[str, float] = {}
    departed: dict[str, float] = {}
    for r in done:
        if r.finished_at <= now - cooldown_s:
            continue
        cooldown[r.vm_uuid] = max(cooldown.get(r.vm_uuid, 0.0), r.finished_at + cooldown_s)
        departed[r.source] = max(departed.get(r.source, 0.0), r.finished_at)
    return cooldown, departed


# States in which Nova may still be copying the VM (or is about to): the migration's
# slot and bandwidth grant are in use. After them (verifying, reattaching) they are not.
_COPYING = frozenset({State.PLANNED, State.DETACHING, State.MIGRATING})


def _in_flight(r: MigrationRecord) -> InFlight:
    return InFlight(
        r.vm_uuid, r.source, r.target, r.az, r.bandwidth_mib_s, r.created_at,
        copying=r.state in _COPYING,
    )  # fmt: skip


def granted_mib_s(open_: Sequence[MigrationRecord]) -> float:
    """The bandwidth the open migrations hold: those Nova may still be copying."""
    return sum(r.bandwidth_mib_s for r in open_ if r.state in _COPYING)
