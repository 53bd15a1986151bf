"""What a journal holds and the interface every engine implements.

A migration row carries its journaled `state` (what may have been done: a state is
committed before the step it names is taken) and the controller's bookkeeping for the
next step: `step` (where inside the state it is, e.g. "requested" once Nova accepted the
live migration), `retry_at` (no step before then: the backoff after an error), `attempts`
(errors in a row, for the backoff), `deadline` (when the wait the state stands for gives
up), `detached_at` (when the VM left its orchestrator, 0 while it has not).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol


class JournalError(Exception):
    """The journal cannot be read or written: the controller must not act."""


def changed_under_us(migration_id: str) -> str:
    return (
        f"migration {migration_id} changed since it was read (another coordinator moved it "
        "on or ended it): not writing over it"
    )


class State(StrEnum):
    PLANNED = "PLANNED"
    DETACHING = "DETACHING"
    MIGRATING = "MIGRATING"
    VERIFYING = "VERIFYING"
    REATTACHING = "REATTACHING"
    DONE = "DONE"
    FAILED = "FAILED"
    ABORTED = "ABORTED"

    @property
    def terminal(self) -> bool:
        return self in (State.DONE, State.FAILED, State.ABORTED)


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    id: str
    vm_uuid: str
    vm_name: str
    source: str
    target: str
    az: str
    bandwidth_mib_s: float
    manual: bool
    orchestrator: str
    orchestrator_ref: str
    state: State = State.PLANNED
    outcome: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float = 0.0
    steal_before: float = 0.0
    steal_after: float = -1.0  # <0 until measured after the verify window
    gib_to_move: float = 0.0
    nova_floor: int = -1  # newest Nova migration id of the server before ours; -1 = not asked
    nova_migration_id: str = ""
    ending: str = ""  # terminal state reached after REATTACHING
    step: str = ""  # progress inside the state ("requested", "aborting", ...)
    attempts: int = 0  # errors in a row in this state (backoff)
    retry_at: float = 0.0  # no step before this time
    deadline: float = 0.0  # the state's wait gives up at this time (0: none)
    detached_at: float = 0.0  # when the VM left its orchestrator (0: never)
    last_error: str = ""
    progress_bytes: int = -1  # Nova's memory_processed_bytes when it last moved
    progress_at: float = 0.0
    blame_target: bool = False  # the target is parked with the VM when this one fails

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]

    def moved_to(self, state: State, at: float, **changes: Any) -> MigrationRecord:
        """This migration in `state` from `at` (finished then, if `state` ends it)."""
        finished_at = at if state.terminal else self.finished_at
        return replace(self, state=state, updated_at=at, finished_at=finished_at, **changes)


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A parked VM (kind "vm") or target host (kind "host") and why."""

    kind: str
    key: str
    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class PauseState:
    paused: bool
    reason: str = ""
    who: str = ""
    at: float = 0.0


class Journal(Protocol):
    """The durable control state. Every method raises `JournalError` when the store
    cannot answer; implementations are thread-safe."""

    def create(self, record: MigrationRecord) -> MigrationRecord: ...

    def transition(
        self, record: MigrationRecord, state: State, at: float, note: str = "", **changes: Any
    ) -> MigrationRecord:
        """Commit `state` (and field changes) for the migration; returns the new record."""

    def update(
        self,
        record: MigrationRecord,
        note: str = "",
        log: bool = False,
        was: MigrationRecord | None = None,
    ) -> None:
        """Write the record's fields while the row still holds its state, and with
        `was` (the record as read, before these changes) the state and step of `was`,
        else raise `JournalError`: a coordinator acting on an old read (a deposed leader)
        must not reopen a migration another one moved on or ended."""

    def get(self, migration_id: str) -> MigrationRecord | None: ...

    def open_migrations(self) -> list[MigrationRecord]:
        """Every migration not in a terminal state, oldest first."""

    def history(
        self, limit: int = 0, vm_uuid: str = "", before: tuple[float, str] | None = None
    ) -> list[MigrationRecord]:
        """Newest first; `before` = (created_at, id) of the last row of the previous page."""

    def done_since(self, since: float) -> list[MigrationRecord]:
        """Migrations that ended DONE after `since`."""

    def transitions(self, migration_id: str) -> list[tuple[float, State, str]]: ...

    def quarantine(self, kind: str, key: str, until: float, reason: str) -> None: ...

    def quarantined(self, kind: str, now: float) -> dict[str, float]: ...

    def quarantines(self, now: float) -> list[Quarantine]:
        """Every quarantine still in force at `now`, with its reason."""

    def pause_state(self) -> PauseState: ...

    def set_pause(self, state: PauseState) -> None: ...

    def probe(self, now: float) -> None:
        """A cheap read and write; raises `JournalError` if either fails (readiness)."""

    def close(self) -> None: ...
