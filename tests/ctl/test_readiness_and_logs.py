"""`/readyz` follows the journal, and logged exceptions carry their traceback.

A real coordinator process (`serve --simulate`) with its journal in a temporary
directory: ready while the journal reads and takes a write, 503 with the reason while
it is read-only (chattr +i on the database and its WAL: read-only even for root, as a
read-only mount would be; the -shm file stays writable, it is mmapped), ready again
once it is writable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ctl.coordinator_process import REPO, CoordinatorProcess, start_coordinator
from tests.polling import eventually


@pytest.fixture
def own_coordinator(tmp_path: Path) -> Iterator[tuple[CoordinatorProcess, Path]]:
    process = start_coordinator(tmp_path)
    try:
        yield process, tmp_path / "j.sqlite"
    finally:
        process.stop()


def readyz(coordinator: CoordinatorProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{coordinator.metrics}/readyz", timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


def test_readiness_fails_while_the_journal_cannot_be_written(
    own_coordinator: tuple[CoordinatorProcess, Path],
) -> None:
    coordinator, journal = own_coordinator
    assert readyz(coordinator) == (200, "ready\n")
    files = (journal, journal.with_name(journal.name + "-wal"))
    if not chattr("+i", *files):
        pytest.skip("chattr +i is not available here")
    try:
        _, reason = eventually(lambda: (r := readyz(coordinator))[0] == 503 and r)
        assert reason.startswith("cannot write:") and reason.count("\n") == 1
    finally:
        chattr("-i", *files)
    assert eventually(lambda: readyz(coordinator)[0] == 200)
    assert coordinator.process.poll() is None


LOG_AN_EXCEPTION = """
import structlog
from coordinator.service.logs import configure_logging
configure_logging()
try:
    {}["missing"]
except KeyError:
    structlog.get_logger("t").exception("periodic step failed", step="tick")
"""


def test_logged_exceptions_carry_the_traceback() -> None:
    done = subprocess.run([sys.executable, "-c", LOG_AN_EXCEPTION], capture_output=True,
                          text=True, timeout=60, check=True, cwd=REPO)  # fmt: skip
    first, *rest = done.stdout.splitlines()
    assert "event='periodic step failed'" in first and "step='tick'" in first
    assert "exc_info" not in done.stdout
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "KeyError: 'missing'"
