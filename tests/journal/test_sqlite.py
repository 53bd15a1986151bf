"""The journal's queries that feed every planning round."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coordinator.journal import MigrationRecord, State
from coordinator.journal import SqliteJournal as Journal

NOW = 1_000_000.0
INDEXES = {"migrations_by_created", "migrations_by_vm", "migrations_by_finish"}


def _ended(journal: Journal, vm: str, state: State, finished_at: float) -> MigrationRecord:
    record = journal.create(
        MigrationRecord(
            id=MigrationRecord.new_id(), vm_uuid=vm, vm_name=vm, source="h1", target="h2",
            az="az1", bandwidth_mib_s=500, manual=False, orchestrator="none",
            orchestrator_ref="", created_at=finished_at - 60,
        )
    )  # fmt: skip
    return journal.transition(record, state, finished_at)


def test_done_since_finds_every_recent_success_however_long_the_history(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    _ended(journal, "long-ago", State.DONE, NOW - 7200)
    _ended(journal, "early-in-window", State.DONE, NOW - 3500)
    _ended(journal, "failed", State.FAILED, NOW - 100)
    # More newer migrations than the 2000 rows the planner used to read back: the
    # early one must still count.
    for index in range(2001):
        _ended(journal, f"busy-{index}", State.DONE, NOW - 3000 + index)
    found = {r.vm_uuid for r in journal.done_since(NOW - 3600)}
    assert "early-in-window" in found
    assert {"long-ago", "failed"}.isdisjoint(found)
    assert len(found) == 2002
    journal.close()


def test_a_journal_from_before_the_indexes_gains_them_on_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    with sqlite3.connect(path) as db:  # as an older release left it
        for name in INDEXES:
            db.execute(f"DROP INDEX {name}")
    journal = Journal(path)
    _ended(journal, "vm", State.DONE, NOW)
    assert [r.vm_uuid for r in journal.done_since(NOW - 1)] == ["vm"]
    journal.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    assert {name for (name,) in rows} >= INDEXES
