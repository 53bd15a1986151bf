"""Start-up checks of `serve`: every bad setting becomes one ConfigError line (exit 2)
naming the key, before anything listens, instead of a traceback from deep inside grpc,
prometheus_client or sqlite3.

The journal is checked twice over: at start-up (`open_journal`: a journal file passes
SQLite's quick check, then the journal opens and `Journal.probe` reads and takes a trial
write) and on every readiness probe (`journal_problem`: the same probe), so a journal
that turns read-only or whose disk fails takes the replica out of service.
"""

from __future__ import annotations

import sqlite3
import ssl
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

from coordinator import journal as engine
from coordinator.config import ConfigError, TlsConfig
from coordinator.journal import Journal, JournalError


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


def open_journal(location: str, password: str = "") -> Journal:
    """The journal at `location` (a file, or a database URL), checked readable and
    writable, or a ConfigError."""
    if "://" not in location:
        problem = _file_problem(Path(location))
        if problem:
            raise ConfigError(f"service.journal_path: {location}: {problem}")
    try:
        journal = engine.open_journal(location, password=password)
    except JournalError as exc:
        raise ConfigError(f"{_key(location)}: {_shown(location)}: {exc}") from None
    problem = journal_problem(journal)
    if problem:
        journal.close()
        raise ConfigError(f"{_key(location)}: {_shown(location)}: {problem}")
    return journal


def _key(location: str) -> str:
    return "service.journal_url" if "://" in location else "service.journal_path"


def _shown(location: str) -> str:
    """A URL without any credentials it might carry."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_record_reports(path: str) -> None:
    """`service.record_reports` (when set) can be appended to, or a ConfigError: the
    recorder opens it once the agents' service starts, where it was a traceback."""
    if not path:
        return
    try:
        with Path(path).open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"service.record_reports: {path}: {exc.strerror}") from None


def journal_problem(journal: Journal) -> str:
    """Why the journal cannot be read or written now; "" when it can."""
    try:
        journal.probe(time.time())
    except JournalError as exc:
        return str(exc)
    return ""


def _file_problem(path: Path) -> str:
    """A path that cannot hold a journal, or a journal file SQLite finds corrupt."""
    if path.is_dir():
        return "is a directory"
    if not path.exists():
        return ""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)) as db:
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
    except (sqlite3.Error, OSError) as exc:
        return f"cannot read: {exc}"
    return "" if verdict == "ok" else f"corrupt: {verdict}"
