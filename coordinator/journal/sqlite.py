"""The embedded journal: one SQLite file (WAL, synchronous=FULL).

A row per migration with its current state and the facts the controller needs, an
append-only transitions table (the history an operator reads), the quarantine list and
a small key/value table of operator state (pause). A transition is committed before the
step it announces is taken, so after a crash the newest row says what may have been
done, never less. The schema is versioned (`PRAGMA user_version`); opening an older
journal adds what is missing, and a journal newer than this code is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from coordinator.journal.base import (
    JournalError,
    MigrationRecord,
    PauseState,
    Quarantine,
    State,
    changed_under_us,
)

COLUMNS = [f.name for f in fields(MigrationRecord)]
SCHEMA_VERSION = 2
_TERMINAL = tuple(s.value for s in State if s.terminal)
_BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations ({columns}, PRIMARY KEY (id));
CREATE TABLE IF NOT EXISTS transitions (
    migration_id TEXT, at REAL, state TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS transitions_by_migration ON transitions (migration_id);
CREATE INDEX IF NOT EXISTS migrations_by_created ON migrations (created_at);
CREATE INDEX IF NOT EXISTS migrations_by_vm ON migrations (vm_uuid, created_at);
CREATE INDEX IF NOT EXISTS migrations_by_finish ON migrations (state, finished_at);
CREATE TABLE IF NOT EXISTS quarantine (kind TEXT, key TEXT, until REAL, reason TEXT,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS control (key TEXT PRIMARY KEY, value TEXT, updated_at REAL);
"""


class SqliteJournal:
    """Thread-safe; one connection guarded by a lock (writes are tiny and rare)."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = _connect(Path(path))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write: {exc}") from exc

    def _read(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read: {exc}") from exc

    # -- migrations ------------------------------------------------------------------
    def create(self, record: MigrationRecord) -> MigrationRecord:
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._tx() as db:
            db.execute(
                f"INSERT INTO migrations ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [to_sql(getattr(record, c)) for c in COLUMNS],
            )
            db.execute(
                "INSERT INTO transitions VALUES (?, ?, ?, ?)",
                (record.id, record.created_at, record.state.value, record.outcome),
            )
        return record

    def transition(
        self, record: MigrationRecord, state: State, at: float, note: str = "", **changes: Any
    ) -> MigrationRecord:
        updated = record.moved_to(state, at, **changes)
        self._write(updated, note or updated.outcome, log=True)
        return updated

    def update(
        self,
        record: MigrationRecord,
        note: str = "",
        log: bool = False,
        was: MigrationRecord | None = None,
    ) -> None:
        where, args = "id = ? AND state = ?", [record.id, (was or record).state.value]
        if was is not None:
            where, args = f"{where} AND step = ?", [*args, was.step]
        self._write(record, note, log, where, args, changed_under_us(record.id))

    def _write(
        self,
        record: MigrationRecord,
        note: str,
        log: bool,
        where: str = "id = ? AND state NOT IN (?, ?, ?)",
        args: list[Any] | None = None,
        refusal: str = "",
    ) -> None:
        """Only the row `where` picks, by default while it has not ended: a migration
        is finished or rolled back once, even by two coordinators on one journal."""
        assignments = ", ".join(f"{c} = ?" for c in COLUMNS if c != "id")
        values = [to_sql(getattr(record, c)) for c in COLUMNS if c != "id"]
        args = [record.id, *_TERMINAL] if args is None else args
        with self._tx() as db:
            cursor = db.execute(f"UPDATE migrations SET {assignments} WHERE {where}", values + args)
            if cursor.rowcount != 1:
                raise JournalError(
                    refusal or f"migration {record.id} has already ended (or is unknown)"
                )
            if log:
                db.execute(
                    "INSERT INTO transitions VALUES (?, ?, ?, ?)",
                    (record.id, record.updated_at, record.state.value, note),
                )

    def get(self, migration_id: str) -> MigrationRecord | None:
        rows = self._select("WHERE id = ?", (migration_id,))
        return rows[0] if rows else None

    def open_migrations(self) -> list[MigrationRecord]:
        return self._select("WHERE state NOT IN (?, ?, ?) ORDER BY created_at, id", _TERMINAL)

    def history(
        self, limit: int = 0, vm_uuid: str = "", before: tuple[float, str] | None = None
    ) -> list[MigrationRecord]:
        where: list[str] = []
        args: list[Any] = []
        if vm_uuid:
            where.append("vm_uuid = ?")
            args.append(vm_uuid)
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args.extend([before[0], before[0], before[1]])
        sql = (
            "WHERE " + " AND ".join(where) if where else ""
        ) + " ORDER BY created_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return self._select(sql, tuple(args))

    def done_since(self, since: float) -> list[MigrationRecord]:
        return self._select("WHERE state = ? AND finished_at > ?", (State.DONE.value, since))

    def transitions(self, migration_id: str) -> list[tuple[float, State, str]]:
        rows = self._read(
            "SELECT at, state, note FROM transitions WHERE migration_id = ? ORDER BY rowid",
            (migration_id,),
        )
        return [(float(at), State(state), str(note)) for at, state, note in rows]

    # -- quarantine --------------------------------------------------------------------
    def quarantine(self, kind: str, key: str, until: float, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?)", (kind, key, until, reason)
            )

    def quarantined(self, kind: str, now: float) -> dict[str, float]:
        rows = self._read(
            "SELECT key, until FROM quarantine WHERE kind = ? AND until > ?", (kind, now)
        )
        return {str(k): float(u) for k, u in rows}

    def quarantines(self, now: float) -> list[Quarantine]:
        rows = self._read(
            "SELECT kind, key, until, reason FROM quarantine WHERE until > ? ORDER BY kind, key",
            (now,),
        )
        return [Quarantine(str(k), str(key), float(u), str(r)) for k, key, u, r in rows]

    # -- operator state ------------------------------------------------------------------
    def pause_state(self) -> PauseState:
        rows = self._read("SELECT value FROM control WHERE key = 'pause'")
        return pause_from_json(rows[0][0]) if rows else PauseState(paused=False)

    def set_pause(self, state: PauseState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO control VALUES ('pause', ?, ?)",
                (json.dumps(asdict(state)), state.at),
            )

    def probe(self, now: float) -> None:
        with self._tx() as db:
            db.execute("SELECT count(*) FROM migrations WHERE state NOT IN (?, ?, ?)", _TERMINAL)
            db.execute("INSERT OR REPLACE INTO control VALUES ('probe', '', ?)", (now,))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[MigrationRecord]:
        rows = self._read(f"SELECT {', '.join(COLUMNS)} FROM migrations {where}", args)
        return [from_row(row) for row in rows]


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"cannot open: {exc}") from exc
    try:  # every one of these writes the file: a read-only journal fails here
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        _migrate(db)
    except (sqlite3.Error, OSError) as exc:
        db.close()
        raise JournalError(f"cannot write: {exc}") from exc
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION: create what is missing, add new columns."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise JournalError(f"journal schema {version} is newer than this coordinator's")
    db.executescript(_BASE_SCHEMA.format(columns=", ".join(COLUMNS)))
    present = {str(row[1]) for row in db.execute("PRAGMA table_info(migrations)")}
    defaults = {f.name: f.default for f in fields(MigrationRecord)}
    for column in COLUMNS:
        if column not in present:
            default = to_sql(defaults[column])
            db.execute(f"ALTER TABLE migrations ADD COLUMN {column} DEFAULT {default!r}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def to_sql(value: Any) -> Any:
    if isinstance(value, State):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def from_row(row: tuple[Any, ...] | Any) -> MigrationRecord:
    data = dict(zip(COLUMNS, tuple(row), strict=True))
    data["state"] = State(data["state"])
    data["manual"] = bool(data["manual"])
    data["blame_target"] = bool(data["blame_target"])
    return MigrationRecord(**data)


def pause_from_json(text: str) -> PauseState:
    data = json.loads(text)
    return PauseState(
        paused=bool(data.get("paused", False)),
        reason=str(data.get("reason", "")),
        who=str(data.get("who", "")),
        at=float(data.get("at", 0.0)),
    )
