"""The journal contract: every engine (SQLite, MariaDB, PostgreSQL) behaves the same.

The engines run for real: SQLite in a file, MariaDB and PostgreSQL on the loopback
servers tests/setup/50-databases.sh starts (each test on a database of its own).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from coordinator.journal import Journal, JournalError, MigrationRecord, PauseState, State
from coordinator.journal.sql import SCHEMA_VERSION, STEPS, SqlJournal
from tests.journal.conftest import Opener
from tests.journal.servers import PASSWORD, TcpCut

NOW = 1_700_000_000.125  # seconds with a fraction: a FLOAT column would lose it


def record(vm: str = "vm-1", created_at: float = NOW, **fields: object) -> MigrationRecord:
    base = MigrationRecord(
        id=MigrationRecord.new_id(), vm_uuid=vm, vm_name=f"name of {vm}", source="hv-a",
        target="hv-b", az="az1", bandwidth_mib_s=500.0, manual=False,
        orchestrator="kubernetes", orchestrator_ref="node-1", created_at=created_at,
        updated_at=created_at,
    )  # fmt: skip
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]  # test data


def every_field_set() -> MigrationRecord:
    """A record where no field has its default, with text a tenant might have chosen."""
    return record(
        vm_name="wéb\x1b[31m'; DROP TABLE migrations; --" + "x" * 300,
        manual=True, state=State.MIGRATING, outcome="out", updated_at=NOW + 1.5,
        finished_at=NOW + 2.25, steal_before=0.31, steal_after=0.02, gib_to_move=12.5,
        nova_floor=41, nova_migration_id="77", ending="DONE", step="requested", attempts=3,
        retry_at=NOW + 30.5, deadline=NOW + 900.75, detached_at=NOW + 0.5,
        last_error="nova said ‘no’", progress_bytes=2**40 + 3, progress_at=NOW + 10.5,
        blame_target=True,
    )  # fmt: skip


# -- migrations ------------------------------------------------------------------------


def test_a_created_migration_reads_back_field_for_field(journal: Journal) -> None:
    created = journal.create(every_field_set())
    assert journal.get(created.id) == created
    assert journal.get("no-such-id") is None


def test_the_same_id_twice_is_refused(journal: Journal) -> None:
    first = journal.create(record())
    with pytest.raises(JournalError):
        journal.create(dataclasses.replace(first, vm_uuid="other"))
    assert journal.get(first.id) == first


def test_a_transition_commits_the_state_its_changes_and_one_history_line(
    journal: Journal,
) -> None:
    created = journal.create(record(outcome="planned because hot"))
    detaching = journal.transition(created, State.DETACHING, NOW + 1, step="draining")
    assert (detaching.state, detaching.updated_at, detaching.step) == (
        State.DETACHING, NOW + 1, "draining",
    )  # fmt: skip
    assert detaching.finished_at == 0.0
    done = journal.transition(detaching, State.DONE, NOW + 5, outcome="moved")
    assert done.finished_at == NOW + 5
    assert journal.get(created.id) == done
    assert journal.transitions(created.id) == [
        (NOW, State.PLANNED, "planned because hot"),
        # Without a note, the line carries the record's outcome (as it stands then).
        (NOW + 1, State.DETACHING, "planned because hot"),
        (NOW + 5, State.DONE, "moved"),
    ]


def test_an_update_keeps_the_history_unless_asked_to_log(journal: Journal) -> None:
    created = journal.create(record())
    journal.update(dataclasses.replace(created, attempts=2, retry_at=NOW + 8))
    assert journal.get(created.id) == dataclasses.replace(created, attempts=2, retry_at=NOW + 8)
    assert len(journal.transitions(created.id)) == 1
    journal.update(dataclasses.replace(created, step="aborting"), note="stalled", log=True)
    assert journal.transitions(created.id)[-1] == (NOW, State.PLANNED, "stalled")


def test_an_update_never_writes_over_a_row_another_coordinator_moved_on(
    open_store: Opener,
) -> None:
    """A deposed leader's update, built on an older read, must not reopen a migration
    the new leader ended (its state) nor redo a step it took (its step): that write is
    what came before a second call to Nova."""
    leader, deposed = open_store(), open_store()
    created = leader.create(record(state=State.MIGRATING))
    stale = deposed.get(created.id)
    assert stale is not None
    requested = dataclasses.replace(created, step="requested")
    leader.update(requested, was=created)
    with pytest.raises(JournalError, match="changed since it was read"):
        deposed.update(dataclasses.replace(stale, step="requesting"), was=stale)
    ended = leader.transition(requested, State.FAILED, NOW + 1, outcome="Nova said error")
    with pytest.raises(JournalError, match="changed since it was read"):
        deposed.update(dataclasses.replace(stale, attempts=1))
    assert leader.get(created.id) == ended
    leader.update(dataclasses.replace(ended, steal_after=0.02))  # its own read: written
    current = leader.get(created.id)
    assert current is not None and current.steal_after == 0.02


def test_a_migration_that_ended_is_never_transitioned_again(open_store: Opener) -> None:
    """Two coordinators on one journal: once one has finished or rolled back a
    migration, the other (acting on an older read) cannot end it a second time."""
    leader, deposed = open_store(), open_store()
    created = leader.create(record())
    stale = deposed.get(created.id)
    assert stale is not None
    migrating = leader.transition(created, State.MIGRATING, NOW + 1)
    deposed.transition(stale, State.REATTACHING, NOW + 2)  # still open: allowed
    leader.transition(migrating, State.DONE, NOW + 3, outcome="moved")
    with pytest.raises(JournalError, match="already ended"):
        deposed.transition(stale, State.ABORTED, NOW + 4, outcome="late")
    with pytest.raises(JournalError, match="already ended"):
        leader.transition(migrating, State.FAILED, NOW + 5)
    current = leader.get(created.id)
    assert current is not None and (current.state, current.outcome) == (State.DONE, "moved")
    assert [s for _, s, _ in leader.transitions(created.id)] == [
        State.PLANNED, State.MIGRATING, State.REATTACHING, State.DONE,
    ]  # fmt: skip


def test_open_migrations_are_the_unfinished_ones_oldest_first(journal: Journal) -> None:
    newer = journal.create(record("b", created_at=NOW + 10))
    older = journal.create(record("a", created_at=NOW))
    tie = journal.create(record("c", created_at=NOW, id="0" * 12))
    for state in (State.DONE, State.FAILED, State.ABORTED):
        journal.transition(journal.create(record(f"end-{state}")), state, NOW + 1)
    assert [r.id for r in journal.open_migrations()] == [tie.id, older.id, newer.id]


def test_history_pages_newest_first_without_gaps_or_repeats(journal: Journal) -> None:
    # Ties on created_at (same second) are broken by id, on every engine alike.
    made = [journal.create(record(f"vm-{i % 3}", created_at=NOW + i // 2)) for i in range(9)]
    expected = sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)
    assert journal.history() == expected
    pages, before = [], None
    while page := journal.history(limit=4, before=before):
        pages.append(page)
        before = (page[-1].created_at, page[-1].id)
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [r for p in pages for r in p] == expected
    assert journal.history(vm_uuid="vm-1") == [r for r in expected if r.vm_uuid == "vm-1"]
    assert (
        journal.history(limit=2, vm_uuid="vm-0") == [r for r in expected if r.vm_uuid == "vm-0"][:2]
    )


def test_done_since_is_every_success_finished_after_the_time(journal: Journal) -> None:
    def ended(vm: str, state: State, at: float) -> None:
        journal.transition(journal.create(record(vm, created_at=at - 60)), state, at)

    ended("long-ago", State.DONE, NOW - 7200)
    ended("recent", State.DONE, NOW - 100)
    ended("failed", State.FAILED, NOW - 50)
    journal.create(record("running"))
    assert {r.vm_uuid for r in journal.done_since(NOW - 3600)} == {"recent"}
    assert journal.done_since(NOW) == []


# -- quarantine ------------------------------------------------------------------------


def test_quarantines_replace_by_kind_and_key_and_expire(journal: Journal) -> None:
    journal.quarantine("vm", "vm-1", NOW + 100, "move failed")
    journal.quarantine("vm", "vm-1", NOW + 300, "steal did not drop")  # replaces
    journal.quarantine("vm", "vm-2", NOW - 1, "expired")
    journal.quarantine("host", "vm-1", NOW + 50, "same key, other kind")
    assert journal.quarantined("vm", NOW) == {"vm-1": NOW + 300}
    assert journal.quarantined("host", NOW) == {"vm-1": NOW + 50}
    assert journal.quarantined("host", NOW + 50) == {}
    assert [(q.kind, q.key, q.until, q.reason) for q in journal.quarantines(NOW)] == [
        ("host", "vm-1", NOW + 50, "same key, other kind"),
        ("vm", "vm-1", NOW + 300, "steal did not drop"),
    ]


# -- operator state ----------------------------------------------------------------------


def test_pause_is_off_until_set_and_survives_a_new_coordinator(open_store: Opener) -> None:
    first = open_store()
    assert first.pause_state() == PauseState(paused=False)
    paused = PauseState(paused=True, reason="maintenance «window»", who="ops", at=NOW)
    first.set_pause(paused)
    assert first.pause_state() == paused
    second = open_store()  # the next leader, or this one restarted
    assert second.pause_state() == paused
    second.set_pause(PauseState(paused=False, who="ops", at=NOW + 1))
    assert first.pause_state() == PauseState(paused=False, who="ops", at=NOW + 1)


def test_a_second_coordinator_sees_the_first_ones_migrations(open_store: Opener) -> None:
    first, second = open_store(), open_store()
    created = first.create(record())
    first.quarantine("host", "hv-b", NOW + 60, "blamed")
    assert second.open_migrations() == [created]
    assert second.quarantined("host", NOW) == {"hv-b": NOW + 60}


def test_the_probe_reads_and_writes(journal: Journal) -> None:
    journal.probe(NOW)
    journal.probe(NOW + 1)  # the second write replaces the first


# -- schema ------------------------------------------------------------------------------


def test_a_journal_newer_than_this_coordinator_is_refused(
    engine: str, location: str, open_store: Opener
) -> None:
    open_store().close()
    if engine == "sqlite":
        import sqlite3

        with sqlite3.connect(location) as db:
            db.execute("PRAGMA user_version = 99")
    else:
        with sa.create_engine(sa.make_url(location).set(password=PASSWORD)).begin() as db:
            db.execute(sa.text("UPDATE schema_version SET version = 99"))
    with pytest.raises(JournalError, match="newer"):
        open_store()


def test_two_coordinators_starting_together_both_open_the_journal(open_store: Opener) -> None:
    opened: list[Journal] = []
    errors: list[Exception] = []

    def start() -> None:
        try:
            opened.append(open_store())
        except Exception as exc:  # collected: the assertion names it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(opened) == 3
    created = opened[0].create(record())
    assert opened[2].get(created.id) == created


# -- the networked engines ---------------------------------------------------------------


@pytest.fixture
def sql_location(engine: str, location: str) -> str:
    if engine == "sqlite":
        pytest.skip("a file has no server to lose")
    return location


def test_a_v1_journal_is_upgraded_in_place_on_open(sql_location: str) -> None:
    url = sa.make_url(sql_location).set(password=PASSWORD)
    old = sa.create_engine(url)
    with old.begin() as db:  # the journal as the first release left it
        STEPS[0](db)
        db.execute(sa.text("CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER)"))
        db.execute(sa.text("INSERT INTO schema_version VALUES (1, 1)"))
    survivor = record()
    with old.begin() as db:
        from coordinator.journal.sql import _values, migrations

        db.execute(migrations.insert().values(_values(survivor)))
    journal = SqlJournal(sql_location, password=PASSWORD)
    try:
        assert journal.open_migrations() == [survivor]
        with old.connect() as db:
            assert db.execute(sa.text("SELECT version FROM schema_version")).scalar() == (
                SCHEMA_VERSION
            )
            names = {ix["name"] for ix in sa.inspect(db).get_indexes("migrations")}
        assert {"migrations_by_state", "migrations_by_created", "migrations_by_vm"} <= names
    finally:
        journal.close()
        old.dispose()


def test_a_password_in_the_url_is_never_in_an_error(sql_location: str) -> None:
    url = sa.make_url(sql_location).set(port=1)  # nothing listens there
    with pytest.raises(JournalError) as refused:
        SqlJournal(url, password="s3cret-Value")
    assert "s3cret-Value" not in str(refused.value)


def test_every_call_fails_with_journal_error_while_the_server_is_cut_off(
    sql_location: str,
) -> None:
    url = sa.make_url(sql_location)
    assert url.port is not None
    link = TcpCut(url.port)
    journal = SqlJournal(url.set(port=link.port), password=PASSWORD)
    created = journal.create(record())
    try:
        link.cut()
        calls: dict[str, Callable[[], object]] = {
            "create": lambda: journal.create(record("vm-2")),
            "transition": lambda: journal.transition(created, State.DETACHING, NOW + 1),
            "update": lambda: journal.update(created),
            "get": lambda: journal.get(created.id),
            "open_migrations": journal.open_migrations,
            "history": journal.history,
            "done_since": lambda: journal.done_since(NOW),
            "transitions": lambda: journal.transitions(created.id),
            "quarantine": lambda: journal.quarantine("vm", "v", NOW, "r"),
            "quarantined": lambda: journal.quarantined("vm", NOW),
            "quarantines": lambda: journal.quarantines(NOW),
            "pause_state": journal.pause_state,
            "set_pause": lambda: journal.set_pause(PauseState(paused=True)),
            "probe": lambda: journal.probe(NOW),
        }
        for name, call in calls.items():
            with pytest.raises(JournalError):
                call()
                pytest.fail(f"{name} answered with the server cut off")
        link.restore()  # the partition heals: the next call works, no restart needed
        assert journal.open_migrations() == [created]
        journal.transition(created, State.DETACHING, NOW + 1)
    finally:
        link.cut()
        journal.close()


def test_a_sqlite_file_that_is_not_a_journal_is_a_journal_error(engine: str, location: str) -> None:
    if engine != "sqlite":
        pytest.skip("SQLite only")
    with open(location, "wb") as garbage:
        garbage.write(b"not a database" * 100)
    from coordinator.journal import open_journal

    with pytest.raises(JournalError):
        open_journal(location)


def test_a_mariadb_that_refuses_named_locks_still_gets_its_schema(
    engine: str, sql_location: str
) -> None:
    """Galera on MariaDB 10.6.13/10.11.3 refused GET_LOCK; the schema goes on without it."""
    if engine != "mariadb":
        pytest.skip("MariaDB only")
    from coordinator.journal.sql import create_engine

    refusing = create_engine(sql_location, PASSWORD)

    @sa.event.listens_for(refusing, "before_cursor_execute", retval=True)
    def no_named_locks(conn: object, cursor: object, statement: str, *rest: object) -> object:
        return statement.replace("GET_LOCK(", "NO_SUCH_FUNCTION("), rest[0]

    journal = SqlJournal(sql_location, engine=refusing)
    try:
        created = journal.create(record())
        assert journal.get(created.id) == created
    finally:
        journal.close()
