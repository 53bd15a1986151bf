"""A call that hits coordctl's deadline: a read means the coordinator is unreachable
(exit 3), but a change may have been applied, so it must not say "cannot reach" (a
retry of `migrate` could start a second migration)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.ctl.cli import run
from coordinator.ctl.connection import Exit


class SlowAdmin(admin_pb2_grpc.AdminServicer):  # type: ignore[misc]  # generated base is untyped
    """Answers every call only once the test lets it go: longer than coordctl waits."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.applied: list[str] = []

    def _late(self, method: str, response: Any) -> Any:
        self.applied.append(method)
        self.release.wait(10)
        return response

    def Status(self, request: Any, context: Any) -> Any:
        return self._late("Status", admin_pb2.StatusResponse())

    def Migrate(self, request: Any, context: Any) -> Any:
        return self._late("Migrate", admin_pb2.MigrateResponse(migration_id="m1"))

    def Pause(self, request: Any, context: Any) -> Any:
        return self._late("Pause", admin_pb2.PauseResponse(paused=True))

    def Resume(self, request: Any, context: Any) -> Any:
        return self._late("Resume", admin_pb2.PauseResponse(paused=False))


@pytest.fixture
def slow_admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowAdmin]:
    servicer = SlowAdmin()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_pb2_grpc.add_AdminServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("COORDCTL_ADDRESS", f"127.0.0.1:{port}")
    monkeypatch.setenv("HOME", "/nonexistent")  # no user config file leaks in
    for name in ("COORDCTL_TOKEN", "COORDCTL_TOKEN_FILE", "COORDCTL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield servicer
    finally:
        servicer.release.set()
        server.stop(None)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("migrate", "web-1"), id="migrate"),
        pytest.param(("pause", "--reason", "x"), id="pause"),
        pytest.param(("resume",), id="resume"),
    ],
)
def test_a_change_without_an_answer_may_have_been_applied(
    slow_admin: SlowAdmin, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    code = run(["--timeout", "0.3", *command])
    err = capsys.readouterr().err
    assert slow_admin.applied, "the request reached the coordinator"
    assert code == Exit.MAYBE_APPLIED, err
    assert "no answer" in err and "0.3 s" in err and "may have been applied" in err
    assert "coordctl migrations" in err and "cannot reach" not in err
    assert err.count("\n") == 1


def test_a_read_without_an_answer_is_unreachable(
    slow_admin: SlowAdmin, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--timeout", "0.3", "status"]) == Exit.UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err
