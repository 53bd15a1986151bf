"""Executes the coordinator's commands; every failure becomes an error reply.

The migration bandwidth cap is applied at once (libvirt keeps it for a job that has
not started yet) and remembered: when a migration job of that domain later runs
with another cap — Nova passes its own `live_migration_bandwidth` when it starts
the job — ours is re-applied (`reapply`). Reading the cap back can block for seconds
on a busy host while the job runs, so `CapWorker` does it in a thread of its own:
the collection cycle only hands it the newest readings and never waits.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog

from agent.errors import AgentError, DomainNotFound
from agent.sampling import caps_to_check, forget_departed
from agent.sources.base import DomainReading, DomainSource
from coordinator.api.v1 import agent_pb2 as pb

_log = structlog.get_logger("agent.commands")


class CommandExecutor:
    """Turns Command messages into CommandResult messages; never raises."""

    def __init__(self, source: DomainSource) -> None:
        self._source = source
        self._wanted: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def wanted_caps(self) -> dict[str, int]:
        with self._lock:
            return dict(self._wanted)

    def execute(self, command: pb.Command) -> pb.CommandResult:
        action = command.WhichOneof("action")
        if action == "ping":
            return pb.CommandResult(command_id=command.id, ok=True)
        if action == "set_migration_speed":
            return self._set_speed(command.id, command.set_migration_speed)
        return pb.CommandResult(command_id=command.id, ok=False, error="unknown command")

    def reapply(self, readings: Sequence[DomainReading]) -> list[str]:
        """Re-apply remembered caps to domains migrating with another cap (blocking:
        one read-back per migrating capped domain)."""
        with self._lock:
            self._wanted = forget_departed(self._wanted, readings)
            due = caps_to_check(self._wanted, readings)
        done = []
        for instance_uuid, cap in due:
            try:
                if self._source.migration_speed(instance_uuid) == cap:
                    continue
                self._source.set_migration_speed(instance_uuid, cap)
                done.append(instance_uuid)
                _log.info("migration cap re-applied", vm=instance_uuid, mib_s=cap)
            except AgentError as exc:
                _log.warning("migration cap re-apply failed", vm=instance_uuid, error=str(exc))
        return done

    def _set_speed(self, command_id: str, request: pb.SetMigrationSpeed) -> pb.CommandResult:
        vm, cap = request.instance_uuid, int(request.bandwidth_mib_s)
        try:
            applied = self._source.set_migration_speed(vm, cap)
        except DomainNotFound:
            return pb.CommandResult(command_id=command_id, ok=False, error="unknown domain")
        except AgentError as exc:
            return pb.CommandResult(command_id=command_id, ok=False, error=str(exc))
        except Exception as exc:  # a command must never take the agent down
            _log.exception("command failed unexpectedly", vm=vm)
            return pb.CommandResult(command_id=command_id, ok=False, error=repr(exc))
        with self._lock:
            self._wanted[vm] = cap
        _log.info("migration cap applied", vm=vm, mib_s=applied)
        return pb.CommandResult(command_id=command_id, ok=True, applied_bandwidth_mib_s=applied)


class CapWorker:
    """Runs `CommandExecutor.reapply` in its own thread, on the newest readings only."""

    def __init__(self, executor: CommandExecutor) -> None:
        self._executor = executor
        self._pending: Sequence[DomainReading] | None = None
        self._stopped = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="cap-worker", daemon=True)
        self._thread.start()

    def submit(self, readings: Sequence[DomainReading]) -> None:
        """Hand over a cycle's readings; never blocks. Readings not yet worked on are
        replaced: only the newest say which domains migrate now."""
        with self._wake:
            self._pending = readings
            self._wake.notify()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or self._stopped)
                if self._stopped:
                    return
                readings, self._pending = self._pending, None
            assert readings is not None
            try:
                self._executor.reapply(readings)
            except Exception:  # the worker must outlive any one failure
                _log.exception("cap re-apply failed unexpectedly")
