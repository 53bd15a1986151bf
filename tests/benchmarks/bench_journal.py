"""Journal benchmark: what one planning round reads back from a long migration history.

    python -m tests.benchmarks.bench_journal [--migrations 20000] [--calls 50]

A real journal (SQLite, WAL, synchronous=FULL) is filled through `Journal.create` and
`Journal.transition` with one finished migration a minute, 1,000 VMs round-robin. Each
round the coordinator reads the successes a cooldown can still cover (`done_since`,
6 h) and those whose steal check is due (`done_since`, 6 h + the 10 min verify
window). Baseline, measured in the same run on the same file: reading the newest 2,000
and 200 rows, as rounds did before. Figures are medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coordinator.config import PolicyConfig
from coordinator.journal import MigrationRecord, State
from coordinator.journal import SqliteJournal as Journal
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=50)
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


if __name__ == "__main__":
    main()
