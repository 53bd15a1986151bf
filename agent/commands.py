"""Executes the coordinator's commands; every failure becomes an error reply.

The migration bandwidth cap is applied at once (libvirt keeps it for a job that has
not started yet) and remembered: when a migration job of that domain later runs
with another cap — Nova passes its own `live_migration_bandwidth` when it starts
the job — the next collection cycle re-applies ours (`reapply`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog

from agent.errors import AgentError, DomainNotFound
from agent.sampling import caps_to_reapply, forget_departed
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
        """Re-apply remembered caps to domains migrating with another cap."""
        with self._lock:
            self._wanted = forget_departed(self._wanted, readings)
            due = caps_to_reapply(self._wanted, readings)
        done = []
        for instance_uuid, cap in due:
            try:
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
