"""The journal: the coordinator's durable control state.

Every migration (one row with its journaled state and the facts the controller needs to
take its next step), the append-only transitions an operator reads, the parked VMs and
targets (quarantine), and operator state such as pause. One interface (`Journal`), two
engines sharing one contract suite: SQLite (`sqlite.py`, the embedded default) and a
networked SQL database (`sql.py`: MariaDB/MySQL, PostgreSQL). `open_journal` picks one
from the configured location.
"""

import importlib
from typing import cast

from coordinator.journal.base import (
    Journal,
    JournalError,
    MigrationRecord,
    PauseState,
    Quarantine,
    State,
)
from coordinator.journal.sqlite import SqliteJournal

__all__ = [
    "Journal",
    "JournalError",
    "MigrationRecord",
    "PauseState",
    "Quarantine",
    "SqliteJournal",
    "State",
    "open_journal",
]


def open_journal(location: str) -> Journal:
    """A journal at `location`: a file path (SQLite) or an SQLAlchemy database URL."""
    if "://" in location:
        # Imported only for a URL: SQLAlchemy and the drivers are not needed otherwise.
        try:
            module = importlib.import_module("coordinator.journal.sql")
        except ImportError as exc:
            raise JournalError(f"a networked journal needs the SQL engine: {exc}") from exc
        return cast(Journal, module.SqlJournal(location))
    return SqliteJournal(location)
