"""Journal benchmark: what one planning round reads back from a long migration history.

    python -m tests.benchmarks.bench_journal [--migrations 20000] [--calls 50]
        [--engines sqlite,mariadb,postgresql]

A real journal (SQLite, WAL, synchronous=FULL) is filled through `Journal.create` and
`Journal.transition` with one finished migration a minute, 1,000 VMs round-robin. Each
round the coordinator reads the successes a cooldown can still cover (`done_since`,
6 h) and those whose steal check is due (`done_since`, 6 h + the 10 min verify
window). Baseline, measured in the same run on the same file: reading the newest 2,000
and 200 rows, as rounds did before. Figures are medians.

Then the whole journal round of a tick on every engine: the reads (open migrations,
successes in the cooldown, parked VMs and targets, pause) and one transition, on a
journal holding the same history (bulk-loaded) plus 8 open migrations (the default
`limits.max_concurrent`) and 100 quarantines. MariaDB and PostgreSQL are the loopback
test servers (tests/setup/50-databases.sh), each on a fresh database; the baseline is
SQLite in the same run.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from coordinator.config import PolicyConfig
from coordinator.journal import Journal as AnyJournal
from coordinator.journal import MigrationRecord, State, open_journal
from coordinator.journal import SqliteJournal as Journal
from coordinator.journal.sqlite import COLUMNS
from tests.benchmarks.timing import median_ms

NOW = 2_000_000_000.0


def fill(journal: Journal, migrations: int) -> None:
    for index in range(migrations):
        finished = NOW - (migrations - index) * 60
        record = journal.create(
            MigrationRecord(
                id=MigrationRecord.new_id(), vm_uuid=f"vm-{index % 1000}", vm_name="",
                source="a", target="b", az="az1", bandwidth_mib_s=500, manual=False,
                orchestrator="none", orchestrator_ref="", created_at=finished - 60,
            )
        )  # fmt: skip
        journal.transition(record, State.DONE, finished, steal_after=0.01)


def history_rows(migrations: int) -> Iterator[MigrationRecord]:
    """The same history `fill` writes, as finished records (for a bulk load)."""
    for index in range(migrations):
        finished = NOW - (migrations - index) * 60
        yield MigrationRecord(
            id=MigrationRecord.new_id(), vm_uuid=f"vm-{index % 1000}", vm_name="",
            source="a", target="b", az="az1", bandwidth_mib_s=500, manual=False,
            orchestrator="none", orchestrator_ref="", created_at=finished - 60,
            updated_at=finished, finished_at=finished, state=State.DONE, steal_after=0.01,
        )  # fmt: skip


def bulk_load(location: str, migrations: int) -> None:
    """`migrations` finished rows straight into the tables: one commit per row through
    the interface would take minutes on a server that syncs every commit."""
    records = list(history_rows(migrations))
    if "://" not in location:
        with sqlite3.connect(location) as db:
            db.executemany(
                f"INSERT INTO migrations ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in COLUMNS)})",
                [[_sqlite(getattr(r, c)) for c in COLUMNS] for r in records],
            )
        return
    import sqlalchemy as sa

    from coordinator.journal.sql import _values
    from coordinator.journal.sql import migrations as table
    from tests.journal.servers import PASSWORD

    engine = sa.create_engine(sa.make_url(location).set(password=PASSWORD))
    with engine.begin() as db:
        db.execute(table.insert(), [_values(r) for r in records])
    engine.dispose()


def _sqlite(value: Any) -> Any:
    return value.value if isinstance(value, State) else int(value) if value is True else value


@contextmanager
def engine_location(engine: str, scratch: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield str(scratch / "round.sqlite")
        return
    from tests.journal.servers import fresh_database, server_url

    with fresh_database(engine) as name:
        yield server_url(engine, name).render_as_string(hide_password=False)


def journal_round(location: str, migrations: int, calls: int) -> tuple[float, float]:
    """Median ms of a tick's journal reads, and of one transition."""
    from tests.journal.servers import PASSWORD

    journal: AnyJournal = open_journal(location, password=PASSWORD)
    try:
        bulk_load(location, migrations)
        open_ = [
            journal.create(replace(r, id=MigrationRecord.new_id(), state=State.MIGRATING,
                                   finished_at=0.0, created_at=NOW - 30))
            for r in list(history_rows(8))
        ]  # fmt: skip
        for index in range(100):
            journal.quarantine("vm" if index % 2 else "host", f"k-{index}", NOW + 3600, "bench")
        cooldown_s = PolicyConfig().cooldown_s

        def reads() -> None:
            journal.open_migrations()
            journal.done_since(NOW - cooldown_s)
            journal.quarantined("vm", NOW)
            journal.quarantined("host", NOW)
            journal.pause_state()

        ticks = iter(range(10**9))

        def transition() -> None:
            journal.transition(open_[0], State.MIGRATING, NOW, step=f"poll-{next(ticks)}")

        return median_ms(reads, calls), median_ms(transition, calls)
    finally:
        journal.close()


def engines_report(engines: list[str], migrations: int, calls: int) -> None:
    print(f"\none tick's journal round ({migrations} finished + 8 open migrations, "
          "100 quarantines; medians):")  # fmt: skip
    baseline = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for engine in engines:
            with engine_location(engine, Path(scratch)) as location:
                read_ms, write_ms = journal_round(location, migrations, calls)
            total = read_ms + write_ms
            baseline = baseline or total
            print(f"  {engine:<11} reads {read_ms:7.2f} ms + one transition {write_ms:6.2f} ms "
                  f"= {total:7.2f} ms ({total / baseline:.2f}x {engines[0]})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--engines", default="sqlite,mariadb,postgresql")
    args = parser.parse_args()
    policy = PolicyConfig()
    cooldown_s, window_s = policy.cooldown_s, policy.verify_window_s
    with tempfile.TemporaryDirectory() as scratch:
        journal = Journal(Path(scratch) / "journal.sqlite")
        started = time.perf_counter()
        fill(journal, args.migrations)
        print(f"{args.migrations} finished migrations journaled in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip

        def newest_rows() -> None:
            journal.history(limit=2000)
            journal.history(limit=200)

        def by_time() -> None:
            journal.done_since(NOW - cooldown_s)
            journal.done_since(NOW - window_s - cooldown_s)

        before = median_ms(newest_rows, args.calls)
        after = median_ms(by_time, args.calls)
        rows = len(journal.done_since(NOW - cooldown_s))
        journal.close()
    print(f"per round, newest 2,000 + 200 rows (before): {before:6.2f} ms")
    print(f"per round, done_since by time (now):         {after:6.2f} ms "
          f"({rows} rows in the cooldown; {after / before:.2f}x the baseline)")  # fmt: skip
    engines_report(args.engines.split(","), args.migrations, args.calls)


if __name__ == "__main__":
    main()
