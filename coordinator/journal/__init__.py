"""The journal: the coordinator's durable control state.

Every migration (one row with its journaled state and the facts the controller needs to
take its next step), the append-only transitions an operator reads, the parked VMs and
targets (quarantine), and operator state such as pause. One interface (`Journal`), two
engines sharing one contract suite: SQLite (`sqlite.py`, the embedded default) and a
networked SQL database (`sql.py`: MariaDB/MySQL, PostgreSQL). `open_journal` picks one
from the configured location.
"""

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


def open_journal(location: str, password: str = "") -> Journal:
    """A journal at `location`: a file path (SQLite) or an SQLAlchemy database URL
    (`password`, from a file or the environment, is added to it, never written in it)."""
    if "://" in location:
        # Imported only for a URL: SQLAlchemy is an optional dependency (journal-sql).
        try:
            from coordinator.journal.sql import SqlJournal
        except ImportError as exc:
            raise JournalError(f"a networked journal needs the journal-sql extra: {exc}") from exc
        return SqlJournal(location, password=password)
    return SqliteJournal(location)
