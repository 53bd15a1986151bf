"""Only the leader is Ready; the shared journal's URL and password come from config,
a file or the environment, never with the password in the config."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, Counter

from coordinator.config import ConfigError, load_config
from coordinator.journal import JournalError, SqliteJournal
from coordinator.journal.sql import SqlJournal
from coordinator.service.endpoints import Readiness, start_endpoints
from coordinator.service.main import Running, configured_journal, journal_password, readiness_of
from tests.journal.servers import PASSWORD, fresh_database, server_url


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_only_the_started_leader_with_a_usable_journal_is_ready(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Counter("stealbalancer_probe_test", "a series", registry=registry).inc()
    leading = threading.Event()
    journal = SqliteJournal(tmp_path / "journal.sqlite")
    coordinator = SimpleNamespace(leadership=SimpleNamespace(is_leader=leading.is_set),
                                  journal=journal)  # fmt: skip
    readiness = Readiness()
    server = start_endpoints("127.0.0.1:0", registry, readiness)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        leading.set()
        assert _get(f"{base}/readyz") == (503, "starting\n")
        readiness.check = readiness_of(cast(Running, SimpleNamespace(coordinator=coordinator)))
        assert _get(f"{base}/readyz") == (200, "ready\n")
        leading.clear()  # the Lease went to the other replica
        assert _get(f"{base}/readyz") == (503, "follower: not the leader\n")
        leading.set()
        journal.close()  # the journal cannot answer: the leader is not Ready either
        status, body = _get(f"{base}/readyz")
        assert status == 503 and body.startswith("cannot")
        status, body = _get(f"{base}/metrics")
        assert status == 200 and "stealbalancer_probe_test_total 1.0" in body
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, service: str) -> Path:
    path = tmp_path / "coordinator.yaml"
    path.write_text(f"service:\n{service}", encoding="utf-8")
    return path


def test_a_password_in_the_journal_url_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, "  journal_url: mysql+pymysql://sb:hunter2@db/sb\n")
    with pytest.raises(ConfigError, match="journal_url must not carry a password") as refused:
        load_config(path)
    assert "hunter2" not in str(refused.value)


def test_the_password_comes_from_the_environment_before_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n", encoding="utf-8")
    path = _config(
        tmp_path, f"  journal_url: mysql+pymysql://sb@db/sb\n  journal_password_file: {secret}\n"
    )
    service = load_config(path).service
    monkeypatch.delenv("STEALBALANCER_JOURNAL_PASSWORD", raising=False)
    assert journal_password(service) == "from-file"  # a Secret's trailing newline dropped
    monkeypatch.setenv("STEALBALANCER_JOURNAL_PASSWORD", "from-env")
    assert journal_password(service) == "from-env"
    monkeypatch.delenv("STEALBALANCER_JOURNAL_PASSWORD")
    secret.unlink()
    with pytest.raises(JournalError, match="journal_password_file"):
        journal_password(service)


def test_a_newcomer_without_a_url_gets_the_sqlite_file(tmp_path: Path) -> None:
    path = _config(tmp_path, f"  journal_path: {tmp_path / 'j.sqlite'}\n")
    journal = configured_journal(load_config(path).service)
    assert isinstance(journal, SqliteJournal)
    journal.close()
    assert (tmp_path / "j.sqlite").exists()


def test_the_url_and_the_password_file_open_the_shared_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEALBALANCER_JOURNAL_PASSWORD", raising=False)
    secret = tmp_path / "password"
    secret.write_text(PASSWORD, encoding="utf-8")
    with fresh_database("mariadb") as name:
        url = server_url("mariadb", name).render_as_string()
        path = _config(tmp_path, f"  journal_url: {url}\n  journal_password_file: {secret}\n")
        journal = configured_journal(load_config(path).service)
        try:
            assert isinstance(journal, SqlJournal)
            journal.probe(0.0)
        finally:
            journal.close()
