"""The migration journal: every workflow transition, durably, before it is acted on.

One SQLite file (WAL, synchronous=FULL) holds a row per migration with its current
state and the facts recovery needs (the highest Nova migration id of the server
before we asked Nova to move it, the terminal state a REATTACHING step leads to),
an append-only transitions table (the history an operator reads), and the
quarantine list. A transition is committed before the step it announces is taken,
so after a crash the newest row says what may have been done, never less.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any


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

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:12]


_COLUMNS = [f.name for f in fields(MigrationRecord)]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS migrations ({", ".join(_COLUMNS)}, PRIMARY KEY (id));
CREATE TABLE IF NOT EXISTS transitions (
    migration_id TEXT, at REAL, state TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS transitions_by_migration ON transitions (migration_id);
CREATE INDEX IF NOT EXISTS migrations_by_created ON migrations (created_at);
CREATE INDEX IF NOT EXISTS migrations_by_vm ON migrations (vm_uuid, created_at);
CREATE INDEX IF NOT EXISTS migrations_by_finish ON migrations (state, finished_at);
CREATE TABLE IF NOT EXISTS quarantine (kind TEXT, key TEXT, until REAL, reason TEXT,
    PRIMARY KEY (kind, key));
"""


class Journal:
    """Thread-safe; one connection guarded by a lock (writes are tiny and rare)."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, record: MigrationRecord) -> MigrationRecord:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO migrations ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                [_to_sql(getattr(record, c)) for c in _COLUMNS],
            )
            db.execute(
                "INSERT INTO transitions VALUES (?, ?, ?, ?)",
                (record.id, record.created_at, record.state.value, record.outcome),
            )
        return record

    def transition(
        self, record: MigrationRecord, state: State, at: float, note: str = "", **changes: Any
    ) -> MigrationRecord:
        """Commit `state` (and field changes) for the migration; returns the new record."""
        updated = replace(record, state=state, updated_at=at, **changes)
        if state.terminal:
            updated = replace(updated, finished_at=at)
        self.update(updated, note=note or updated.outcome, log=True)
        return updated

    def update(self, record: MigrationRecord, note: str = "", log: bool = False) -> None:
        assignments = ", ".join(f"{c} = ?" for c in _COLUMNS if c != "id")
        values = [_to_sql(getattr(record, c)) for c in _COLUMNS if c != "id"]
        with self._tx() as db:
            db.execute(f"UPDATE migrations SET {assignments} WHERE id = ?", [*values, record.id])
            if log:
                db.execute(
                    "INSERT INTO transitions VALUES (?, ?, ?, ?)",
                    (record.id, record.updated_at, record.state.value, note),
                )

    def get(self, migration_id: str) -> MigrationRecord | None:
        rows = self._select("WHERE id = ?", (migration_id,))
        return rows[0] if rows else None

    def open_migrations(self) -> list[MigrationRecord]:
        terminal = tuple(s.value for s in State if s.terminal)
        return self._select("WHERE state NOT IN (?, ?, ?) ORDER BY created_at", terminal)

    def history(self, limit: int = 0, vm_uuid: str = "") -> list[MigrationRecord]:
        where = "WHERE vm_uuid = ?" if vm_uuid else ""
        args: tuple[Any, ...] = (vm_uuid,) if vm_uuid else ()
        suffix = f" ORDER BY created_at DESC{' LIMIT ?' if limit else ''}"
        return self._select(where + suffix, (*args, limit) if limit else args)

    def done_since(self, since: float) -> list[MigrationRecord]:
        """Migrations that ended DONE after `since`: the ones a cooldown can still cover,
        however many other migrations the journal holds."""
        return self._select("WHERE state = ? AND finished_at > ?", (State.DONE.value, since))

    def transitions(self, migration_id: str) -> list[tuple[float, State, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, state, note FROM transitions WHERE migration_id = ? ORDER BY rowid",
                (migration_id,),
            ).fetchall()
        return [(float(at), State(state), str(note)) for at, state, note in rows]

    def quarantine(self, kind: str, key: str, until: float, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?)", (kind, key, until, reason)
            )

    def quarantined(self, kind: str, now: float) -> dict[str, float]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, until FROM quarantine WHERE kind = ? AND until > ?", (kind, now)
            ).fetchall()
        return {str(k): float(u) for k, u in rows}

    def _select(self, where: str, args: tuple[Any, ...]) -> list[MigrationRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM migrations {where}", args
            ).fetchall()
        return [_record(row) for row in rows]


def _to_sql(value: Any) -> Any:
    if isinstance(value, State):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _record(row: tuple[Any, ...]) -> MigrationRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["state"] = State(data["state"])
    data["manual"] = bool(data["manual"])
    return MigrationRecord(**data)
