"""One journal fixture over every engine: SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.journal import Journal, open_journal
from tests.journal.servers import PASSWORD, fresh_database, server_url

ENGINES = ["sqlite", "mariadb", "postgresql"]
Opener = Callable[[], Journal]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(engine: str, tmp_path: Path) -> Iterator[str]:
    """Where a journal of `engine` lives for this test: a path or a database URL."""
    if engine == "sqlite":
        yield str(tmp_path / "journal.sqlite")
        return
    with fresh_database(engine) as name:
        yield server_url(engine, name).render_as_string(hide_password=False)


@pytest.fixture
def open_store(location: str) -> Iterator[Opener]:
    """Opens a journal on this test's store (call twice: two coordinators sharing it)."""
    opened: list[Journal] = []

    def opener() -> Journal:
        journal = open_journal(location, password=PASSWORD)
        opened.append(journal)
        return journal

    yield opener
    for journal in opened:
        journal.close()


@pytest.fixture
def journal(open_store: Opener) -> Journal:
    return open_store()
