"""The shared journal: a networked SQL database (MariaDB/MySQL, PostgreSQL) via SQLAlchemy Core.

What two coordinator replicas share, so a new leader knows what the old one had in
flight: the migrations, their transitions, the quarantines and the operator state
(pause). The tables mirror the SQLite engine's; one contract suite
(tests/journal/test_contract.py) runs against SQLite, MariaDB and PostgreSQL.

Schema migrations: a `schema_version` table holding one number and an ordered list of
steps in this module (`STEPS`), applied at start-up under a database-wide lock so two
replicas starting together do not both apply them. Each step is idempotent (MariaDB
commits DDL implicitly, so a step cut short is simply run again). A database newer than
this code is refused. Why not Alembic: the schema is five tables whose history is a few
additive steps; a migration tool would bring its own environment, script directory and
version table to maintain, while these steps are ten lines and are tested (upgrade from
v1, refuse newer) by the contract suite.

Two coordinators: only the leader writes migrations, but a deposed leader that has not
noticed yet could still try. A transition therefore only applies to a migration that
has not ended (`UPDATE ... WHERE id = ? AND state NOT IN (DONE, FAILED, ABORTED)`, whose
row lock serialises two writers): a migration is finished or rolled back exactly once,
and the loser gets `JournalError` and does not act. Every statement runs in its own
short transaction at READ COMMITTED.

Connection loss (a partition, a database restart) makes the call raise `JournalError`
within the configured timeouts; the pool pings connections before use, so the first
call after the database is back works again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from coordinator.journal.base import (
    JournalError,
    MigrationRecord,
    PauseState,
    Quarantine,
    State,
    changed_under_us,
)
from coordinator.journal.sqlite import COLUMNS, from_row, pause_from_json, to_sql

# Seconds a connect, read or write may take before the call fails with JournalError:
# the controller would rather skip a tick than hang on a partitioned database.
TIMEOUT_S = 5
_TERMINAL = tuple(s.value for s in State if s.terminal)
_SCHEMA_LOCK = "stealbalancer_journal_schema"

metadata = sa.MetaData()
_STRINGS = {"id": 32, "vm_uuid": 64, "state": 16, "source": 255, "target": 255, "az": 255}
_TEXTS = {"vm_name", "orchestrator", "orchestrator_ref", "outcome", "nova_migration_id",
          "ending", "step", "last_error"}  # fmt: skip


def _column(name: str, python_type: Any) -> sa.Column[Any]:
    if name in _STRINGS:
        return sa.Column(name, sa.String(_STRINGS[name]), primary_key=name == "id")
    if name in _TEXTS:
        return sa.Column(name, sa.Text, nullable=False)
    kind: Any = {"bool": sa.Boolean, "int": sa.BigInteger, "float": sa.Double}[python_type]
    return sa.Column(name, kind, nullable=False)


migrations = sa.Table(
    "migrations",
    metadata,
    *(_column(f.name, f.type) for f in fields(MigrationRecord)),
)
transitions = sa.Table(
    "transitions",
    metadata,
    # The order an operator reads them in (SQLite uses its rowid).
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("migration_id", sa.String(32), nullable=False, index=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)  # fmt: skip
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("until", sa.Double, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)
control = sa.Table(
    "control",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)
# The per-tick reads: open migrations by state, cooldowns by finish time, a VM's history.
_INDEXES = (
    sa.Index("migrations_by_state", migrations.c.state, migrations.c.finished_at),
    sa.Index("migrations_by_created", migrations.c.created_at, migrations.c.id),
    sa.Index("migrations_by_vm", migrations.c.vm_uuid, migrations.c.created_at),
)


def _v1_tables(db: Connection) -> None:
    for table in (migrations, transitions, quarantine, control):
        table.create(db, checkfirst=True)


def _v2_indexes(db: Connection) -> None:
    present = {ix["name"] for ix in sa.inspect(db).get_indexes("migrations")}
    for index in _INDEXES:
        if index.name not in present:
            index.create(db)


# Ordered; step N brings the schema from version N-1 to N. Append, never edit.
STEPS: tuple[Callable[[Connection], None], ...] = (_v1_tables, _v2_indexes)
SCHEMA_VERSION = len(STEPS)


class SqlJournal:
    """Thread-safe: every call takes a pooled connection for one short transaction."""

    def __init__(self, url: str | URL, password: str = "", engine: Engine | None = None) -> None:
        try:
            self._engine = engine or create_engine(url, password)
            migrate(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise JournalError(f"journal {_safe(url)}: {_first_line(exc)}") from exc

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as db:
                yield db
        except sa.exc.SQLAlchemyError as exc:
            raise JournalError(f"journal write failed: {_first_line(exc)}") from exc

    def _read(self, statement: sa.Executable) -> list[tuple[Any, ...]]:
        # Plain tuples: Row's type parameters changed between SQLAlchemy 2.0 and 2.1.
        try:
            with self._engine.connect() as db:
                return [tuple(row) for row in db.execute(statement)]
        except sa.exc.SQLAlchemyError as exc:
            raise JournalError(f"journal read failed: {_first_line(exc)}") from exc

    # -- migrations ------------------------------------------------------------------
    def create(self, record: MigrationRecord) -> MigrationRecord:
        with self._tx() as db:
            db.execute(migrations.insert().values(_values(record)))
            db.execute(
                transitions.insert().values(
                    migration_id=record.id, at=record.created_at,
                    state=record.state.value, note=record.outcome,
                )
            )  # fmt: skip
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
        # The row as the writer read it: a change another writer made since wins.
        where = sa.and_(
            migrations.c.id == record.id, migrations.c.state == (was or record).state.value
        )
        if was is not None:
            where = sa.and_(where, migrations.c.step == was.step)
        self._write(record, note, log, where, changed_under_us(record.id))

    def _write(
        self,
        record: MigrationRecord,
        note: str,
        log: bool,
        where: sa.ColumnElement[bool] | None = None,
        refusal: str = "",
    ) -> None:
        if where is None:  # the row lock of this UPDATE serialises two writers; the ended one loses
            where = sa.and_(migrations.c.id == record.id, migrations.c.state.not_in(_TERMINAL))
        values = _values(record)
        del values["id"]
        with self._tx() as db:
            changed = db.execute(migrations.update().where(where).values(values)).rowcount
            if changed != 1:
                raise JournalError(
                    refusal or f"migration {record.id} has already ended (or is unknown)"
                )
            if log:
                db.execute(
                    transitions.insert().values(
                        migration_id=record.id, at=record.updated_at,
                        state=record.state.value, note=note,
                    )
                )  # fmt: skip

    def get(self, migration_id: str) -> MigrationRecord | None:
        rows = self._select(migrations.c.id == migration_id)
        return rows[0] if rows else None

    def open_migrations(self) -> list[MigrationRecord]:
        return self._select(
            migrations.c.state.not_in(_TERMINAL),
            order=(migrations.c.created_at, migrations.c.id),
        )

    def history(
        self, limit: int = 0, vm_uuid: str = "", before: tuple[float, str] | None = None
    ) -> list[MigrationRecord]:
        where: list[sa.ColumnElement[bool]] = []
        if vm_uuid:
            where.append(migrations.c.vm_uuid == vm_uuid)
        if before is not None:
            created, last_id = before
            where.append(
                sa.or_(
                    migrations.c.created_at < created,
                    sa.and_(migrations.c.created_at == created, migrations.c.id < last_id),
                )
            )
        order = (migrations.c.created_at.desc(), migrations.c.id.desc())
        return self._select(sa.and_(sa.true(), *where), order=order, limit=limit)

    def done_since(self, since: float) -> list[MigrationRecord]:
        return self._select(
            sa.and_(migrations.c.state == State.DONE.value, migrations.c.finished_at > since)
        )

    def transitions(self, migration_id: str) -> list[tuple[float, State, str]]:
        t = transitions.c
        rows = self._read(
            sa.select(t.at, t.state, t.note).where(t.migration_id == migration_id).order_by(t.seq)
        )
        return [(float(at), State(state), str(note)) for at, state, note in rows]

    # -- quarantine --------------------------------------------------------------------
    def quarantine(self, kind: str, key: str, until: float, reason: str) -> None:
        with self._tx() as db:
            upsert(db, quarantine, {"kind": kind, "key": key}, {"until": until, "reason": reason})

    def quarantined(self, kind: str, now: float) -> dict[str, float]:
        q = quarantine.c
        rows = self._read(sa.select(q.key, q.until).where(q.kind == kind, q.until > now))
        return {str(k): float(u) for k, u in rows}

    def quarantines(self, now: float) -> list[Quarantine]:
        q = quarantine.c
        rows = self._read(
            sa.select(q.kind, q.key, q.until, q.reason).where(q.until > now).order_by(q.kind, q.key)
        )
        return [Quarantine(str(k), str(key), float(u), str(r)) for k, key, u, r in rows]

    # -- operator state ------------------------------------------------------------------
    def pause_state(self) -> PauseState:
        rows = self._read(sa.select(control.c.value).where(control.c.key == "pause"))
        return pause_from_json(rows[0][0]) if rows else PauseState(paused=False)

    def set_pause(self, state: PauseState) -> None:
        with self._tx() as db:
            value = {"value": json.dumps(asdict(state)), "updated_at": state.at}
            upsert(db, control, {"key": "pause"}, value)

    def probe(self, now: float) -> None:
        with self._tx() as db:
            db.execute(
                sa.select(sa.func.count()).where(migrations.c.state.not_in(_TERMINAL))
            ).scalar()
            upsert(db, control, {"key": "probe"}, {"value": "", "updated_at": now})

    def _select(
        self,
        where: sa.ColumnElement[bool],
        order: Sequence[sa.ColumnElement[Any]] = (),
        limit: int = 0,
    ) -> list[MigrationRecord]:
        statement = sa.select(*(migrations.c[c] for c in COLUMNS)).where(where).order_by(*order)
        if limit:
            statement = statement.limit(limit)
        return [from_row(row) for row in self._read(statement)]


def create_engine(url: str | URL, password: str = "") -> Engine:
    """An engine with short timeouts, pre-pinged connections and READ COMMITTED."""
    parsed = make_url(url)
    if password:
        parsed = parsed.set(password=password)
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,  # a connection the database dropped is replaced, not used
        pool_recycle=1800,  # below MariaDB's default wait_timeout (8 h) and any proxy idle cut
        isolation_level="READ COMMITTED",
        connect_args=_timeouts(parsed.get_backend_name()),
    )


def _timeouts(backend: str) -> dict[str, Any]:
    if backend in ("mysql", "mariadb"):
        return {"connect_timeout": TIMEOUT_S, "read_timeout": TIMEOUT_S,
                "write_timeout": TIMEOUT_S}  # fmt: skip
    if backend == "postgresql":
        # connect_timeout for the connect; statement_timeout (ms) and TCP user timeout
        # for a server that stops answering mid-call.
        return {
            "connect_timeout": TIMEOUT_S,
            "options": f"-c statement_timeout={TIMEOUT_S * 1000}",
            "tcp_user_timeout": TIMEOUT_S * 1000,
        }
    return {}


def migrate(engine: Engine) -> None:
    """Bring the schema to SCHEMA_VERSION under a database-wide lock; refuse newer."""
    with engine.connect() as db, _schema_lock(db):
        schema_version.create(db, checkfirst=True)
        db.commit()
        current = db.execute(sa.select(schema_version.c.version)).scalar() or 0
        if current > SCHEMA_VERSION:
            raise JournalError(
                f"journal schema {current} is newer than this coordinator's ({SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            STEPS[version - 1](db)
            upsert(db, schema_version, {"id": 1}, {"version": version})
            db.commit()


@contextmanager
def _schema_lock(db: Connection) -> Iterator[None]:
    """One replica migrates at a time (session-level advisory lock)."""
    backend = db.dialect.name
    if backend in ("mysql", "mariadb"):
        try:
            got = db.execute(sa.text("SELECT GET_LOCK(:n, 60)"), {"n": _SCHEMA_LOCK}).scalar()
        except sa.exc.DBAPIError:
            # MariaDB 10.6.13 / 10.11.3 with Galera refused GET_LOCK (MDEV-31325, fixed
            # in the next releases). Go on without it: the steps are idempotent, and a
            # replica that loses a race fails its start-up once and finds the schema done.
            db.rollback()
            yield
            return
        if got != 1:
            raise JournalError("another coordinator has held the schema lock for 60 s")
        try:
            yield
        finally:
            db.rollback()  # whatever a failed step left open, then let go of the lock
            db.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _SCHEMA_LOCK})
            db.commit()
    elif backend == "postgresql":
        key = sa.func.hashtext(_SCHEMA_LOCK)
        db.execute(sa.select(sa.func.pg_advisory_lock(key)))
        try:
            yield
        finally:
            db.rollback()  # an aborted transaction refuses every statement, the unlock too
            db.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            db.commit()
    else:  # SQLite: one file, its own write lock
        yield


def upsert(
    db: Connection, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Insert or replace one row by primary key, atomically, in the dialect's own words."""
    row = {**key, **values}
    name = db.dialect.name
    if name in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        my = mysql.insert(table).values(row)
        db.execute(my.on_duplicate_key_update(**{c: my.inserted[c] for c in values}))
        return
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql as dialect
    elif name == "sqlite":
        from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
    else:
        raise JournalError(f"journal: no upsert for database {name!r}")
    ins = dialect.insert(table).values(row)
    db.execute(ins.on_conflict_do_update(index_elements=list(key), set_=dict(values)))


def _values(record: MigrationRecord) -> dict[str, Any]:
    # Booleans stay booleans: PostgreSQL's BOOLEAN takes no 0/1 (SQLite's to_sql makes ints).
    return {c: to_sql(v) if isinstance(v := getattr(record, c), State) else v for c in COLUMNS}


def _first_line(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's SQL echo and background link."""
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split())[:300]


def _safe(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)
