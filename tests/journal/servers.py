"""The real database servers the journal tests run against (tests/setup/50-databases.sh).

Each test gets a database of its own on the shared loopback servers, dropped afterwards.
The servers are found at fixed loopback ports, or at the URLs in
STEALBALANCER_TEST_MARIADB_URL / STEALBALANCER_TEST_POSTGRESQL_URL (server URLs without
a database). Only STEALBALANCER_NO_SQL=1 skips these tests: otherwise a server that is
not there is a failure, so CI cannot pass them by not running them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import sqlalchemy as sa

# The fixed loopback-only test password set by tests/setup/50-databases.sh.
PASSWORD = os.environ.get("STEALBALANCER_TEST_DB_PASSWORD", "stealbalancer-test")
SERVERS = {
    "mariadb": os.environ.get(
        "STEALBALANCER_TEST_MARIADB_URL", "mysql+pymysql://stealbalancer@127.0.0.1:13306"
    ),
    "postgresql": os.environ.get(
        "STEALBALANCER_TEST_POSTGRESQL_URL", "postgresql+psycopg://stealbalancer@127.0.0.1:15432"
    ),
}
# The database each server's admin connection lands in (the user owns it).
_ADMIN_DATABASE = "stealbalancer_test"


def skip_unless_sql() -> None:
    if os.environ.get("STEALBALANCER_NO_SQL") == "1":
        pytest.skip("STEALBALANCER_NO_SQL=1: MariaDB/PostgreSQL journal tests switched off")


def server_url(kind: str, database: str, port: int | None = None) -> sa.URL:
    url = sa.make_url(SERVERS[kind]).set(database=database)
    return url if port is None else url.set(host="127.0.0.1", port=port)


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """A new empty database on the `kind` server; its name. Dropped on exit."""
    skip_unless_sql()
    name = f"stealbalancer_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        server_url(kind, _ADMIN_DATABASE).set(password=PASSWORD), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as db:
            db.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise AssertionError(
            f"the {kind} test server at {SERVERS[kind]} is not reachable (run "
            f"tests/setup/50-databases.sh, or set STEALBALANCER_NO_SQL=1 to skip): {exc.orig}"
        ) from None
    try:
        yield name
    finally:
        with admin.connect() as db:
            if kind == "postgresql":  # connections a test left open would block the drop
                db.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                db.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


class TcpCut:
    """A loopback TCP relay to a server that the test can cut and restore: the database
    as the coordinator sees it during a network partition."""

    def __init__(self, port: int) -> None:
        self._target = port
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.port = 0
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            # close() alone leaves a thread blocked in accept() still accepting (Linux).
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def pipe(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class MariaDbProcess:
    """A MariaDB server of the test's own (Debian's mariadbd, a scratch data directory,
    loopback, a free port) that the test may stop and start again: the database going
    away under a running coordinator. Root-only, like the setup script."""

    def __init__(self) -> None:
        skip_unless_sql()
        # Not under pytest's tmp_path: the mysql user must reach it (root-only 0700 there).
        root = Path(os.environ.get("STEALBALANCER_DB_ROOT", "/var/lib/stealbalancer-test-db"))
        root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="own-mariadb-", dir=root))
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        data = self.dir / "data"
        data.mkdir()
        shutil.chown(self.dir, "mysql", "mysql")
        shutil.chown(data, "mysql", "mysql")
        subprocess.run(
            ["mariadb-install-db", "--user=mysql", f"--datadir={data}", "--skip-test-db",
             "--auth-root-authentication-method=socket"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()
        self._sql(
            "CREATE DATABASE stealbalancer CHARACTER SET utf8mb4;"
            f"CREATE USER 'stealbalancer'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
            "GRANT ALL PRIVILEGES ON stealbalancer.* TO 'stealbalancer'@'127.0.0.1';"
        )

    @property
    def url(self) -> str:
        return f"mysql+pymysql://stealbalancer@127.0.0.1:{self.port}/stealbalancer"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mariadbd", "--user=mysql", f"--datadir={self.dir / 'data'}",
             f"--socket={self.dir / 'sock'}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", f"--pid-file={self.dir / 'pid'}",
             f"--log-error={self.dir / 'error.log'}", "--innodb-buffer-pool-size=32M"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"mariadbd did not start: {self.dir / 'error.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for: the port refuses from then on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _answers(self) -> bool:
        done = subprocess.run(
            ["mariadb-admin", f"--socket={self.dir / 'sock'}", "ping"],
            capture_output=True, timeout=10, check=False,
        )  # fmt: skip
        return done.returncode == 0

    def _sql(self, statements: str) -> None:
        subprocess.run(
            ["mariadb", f"--socket={self.dir / 'sock'}", "-e", statements],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
