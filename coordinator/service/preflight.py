"""Start-up checks of `serve`: every bad setting becomes one ConfigError line (exit 2)
naming the key, before anything listens, instead of a traceback from deep inside grpc,
prometheus_client or sqlite3.

The journal is checked twice over: at start-up (`open_journal`: it opens, passes
SQLite's quick check, reads, and takes a trial write) and on every readiness probe
(`journal_problem`: a read through the Journal and a trial write), so a journal that
turns read-only or whose disk fails takes the replica out of service.
"""

from __future__ import annotations

import sqlite3
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from coordinator.config import ConfigError, TlsConfig
from coordinator.journal import Journal

# The trial write: one row, rewritten each time, in its own table beside the journal's.
_PROBE = (
    "CREATE TABLE IF NOT EXISTS readiness_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL)",
    "INSERT OR REPLACE INTO readiness_probe VALUES (1, julianday('now'))",
)


def listen_address(key: str, value: str) -> tuple[str, int]:
    """`host:port` (an empty host = loopback) as a pair, or a ConfigError naming `key`."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: {value!r} is not host:port with a port in 0..65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_tls(key: str, tls: TlsConfig | None) -> None:
    """The certificate, key and CA files exist, are readable and hold PEM that fits."""
    if tls is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for field in ("cert_file", "key_file", "ca_file"):
        path = getattr(tls, field)
        if path and not Path(path).is_file():
            raise ConfigError(f"{key}.{field}: {path}: no such file")
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file:
            context.load_verify_locations(tls.ca_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(f"{key}: certificate, key or CA not usable as PEM: {reason}") from None


def open_journal(path: str) -> Journal:
    """The journal at `path`, checked readable and writable, or a ConfigError."""
    where = Path(path)
    if where.is_dir():
        raise ConfigError(f"service.journal_path: {path} is a directory")
    try:
        journal = Journal(path)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"service.journal_path: {path}: cannot open: {exc}") from None
    problem = _integrity(path) or journal_problem(journal, path)
    if problem:
        journal.close()
        raise ConfigError(f"service.journal_path: {path}: {problem}")
    return journal


def journal_problem(journal: Journal, path: str) -> str:
    """Why the journal cannot be read or written now; "" when it can."""
    try:
        journal.open_migrations()
        journal.quarantined("vm", 0.0)
    except (sqlite3.Error, OSError, ValueError) as exc:
        return f"cannot read: {exc}"
    try:
        with _connect(path) as db:
            db.execute("BEGIN IMMEDIATE")
            for statement in _PROBE:
                db.execute(statement)
            db.execute("COMMIT")
    except (sqlite3.Error, OSError) as exc:
        return f"cannot write: {exc}"
    return ""


def _integrity(path: str) -> str:
    try:
        with _connect(path) as db:
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
    except (sqlite3.Error, OSError) as exc:
        return f"cannot read: {exc}"
    return "" if verdict == "ok" else f"corrupt: {verdict}"


@contextmanager
def _connect(path: str) -> Iterator[sqlite3.Connection]:
    """A short-lived second connection (the Journal's own is private to it)."""
    db = sqlite3.connect(path, timeout=2.0, isolation_level=None)
    try:
        yield db
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.close()
