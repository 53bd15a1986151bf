"""The agent side of the service: one gRPC stream per hypervisor.

`AgentHub` is the AgentLink servicer, the keeper of the newest telemetry per host,
and the real `Hypervisor` port (commands travel down the host's stream and their
results come back up it). Every rejection is counted by reason and ends at most the
offending stream; the model only ever sees validated readings (coordinator.rpc).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import structlog

from coordinator import rpc
from coordinator.api.v1 import agent_pb2, agent_pb2_grpc
from coordinator.config import Config
from coordinator.errors import AgentCommandFailed, AgentNotConnected
from coordinator.model import VmMetrics
from coordinator.service.inventory import HostTelemetry, ReportedVm
from coordinator.service.metrics import Metrics
from coordinator.service.recorder import ReportRecorder
from coordinator.state import FoldSettings, SampleRejected, TelemetryFolder

log = structlog.get_logger("stealbalancer.agents")
VERSION = "0.1.0"
_COMMAND_TIMEOUT_S = 30.0
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


@dataclass
class _Session:
    registration: rpc.Registration
    outbox: asyncio.Queue[agent_pb2.CoordinatorMessage] = field(default_factory=asyncio.Queue)
    pending: dict[str, asyncio.Future[agent_pb2.CommandResult]] = field(default_factory=dict)
    last_seq: int = -1


class AgentHub(agent_pb2_grpc.AgentLinkServicer):  # type: ignore[misc]  # generated base is untyped
    def __init__(self, config: Config, metrics: Metrics, clock: Callable[[], float]) -> None:
        self._config, self._metrics, self._clock = config, metrics, clock
        # Gaps are judged against the interval agents are told to report at.
        self._folder = TelemetryFolder(
            FoldSettings.from_policy(config.policy, config.service.agent_interval_s)
        )
        self._sessions: dict[str, _Session] = {}
        self._telemetry: dict[str, HostTelemetry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        # Hosts Nova lists; empty (inventory not loaded yet) admits every host.
        self.known_hosts: Callable[[], set[str]] = set
        # Callbacks fired after each folded report (the reaction path uses it).
        self.on_report: list[Callable[[str], None]] = []
        self.recorder = ReportRecorder.open(config.service.record_reports)  # for --replay

    def telemetry(self) -> Mapping[str, HostTelemetry]:
        return MappingProxyType(dict(self._telemetry))

    def host_telemetry(self, host: str) -> HostTelemetry | None:
        return self._telemetry.get(host)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- the stream -----------------------------------------------------------
    async def Connect(  # noqa: N802  (the gRPC method name)
        self, request_iterator: Any, context: Context
    ) -> None:
        session = await self._register(context)
        if session is None:
            return
        host = session.registration.host
        writer = asyncio.ensure_future(self._write(session, context))
        try:
            await self._read(session, context)
        finally:
            writer.cancel()
            self._sessions.pop(host, None)
            self._metrics.agents.set(len(self._sessions))
            for future in session.pending.values():
                future.cancel()
            log.info("agent disconnected", host=host)

    async def _register(self, context: Context) -> _Session | None:
        timeout = self._config.service.register_timeout_s
        try:
            first = await asyncio.wait_for(context.read(), timeout)
        except TimeoutError:
            await self._refuse(context, "register_timeout", grpc.StatusCode.DEADLINE_EXCEEDED)
            return None
        if first is EOF or not first.HasField("register"):
            await self._refuse(context, "no_register", grpc.StatusCode.FAILED_PRECONDITION)
            return None
        try:
            registration = rpc.registration(first.register)
        except rpc.Rejected as exc:
            await self._refuse(context, exc.reason, grpc.StatusCode.INVALID_ARGUMENT)
            return None
        known = self.known_hosts()
        if known and registration.host not in known:
            await self._refuse(
                context, "unknown_host", grpc.StatusCode.PERMISSION_DENIED, registration.host
            )
            return None
        if registration.host in self._sessions:
            await self._refuse(
                context, "duplicate_host", grpc.StatusCode.ALREADY_EXISTS, registration.host
            )
            return None
        session = _Session(registration)
        self._sessions[registration.host] = session
        self._metrics.agents.set(len(self._sessions))
        await context.write(rpc.register_ack(VERSION, self._config.service.agent_interval_s))
        log.info("agent registered", host=registration.host, az=registration.az)
        return session

    async def _refuse(
        self,
        context: Context,
        reason: str,
        code: grpc.StatusCode,
        host: str = "",
    ) -> None:
        self._metrics.rejected.labels(reason).inc()
        log.warning("agent stream refused", reason=reason, host=host)
        await context.abort(code, reason)

    async def _read(self, session: _Session, context: Context) -> None:
        while True:
            message = await context.read()
            if message is EOF:
                return
            kind = message.WhichOneof("body")
            if kind == "report":
                self._fold(session, message.report)
            elif kind == "command_result":
                self._resolve(session, message.command_result)
            else:
                self._metrics.rejected.labels("unexpected_message").inc()

    async def _write(self, session: _Session, context: Context) -> None:
        while True:
            await context.write(await session.outbox.get())

    # -- telemetry ------------------------------------------------------------
    def _fold(self, session: _Session, message: agent_pb2.HostReport) -> None:
        reg = session.registration
        try:
            parsed = rpc.report(message, self._clock(), self._config.service.max_vms_per_report)
        except rpc.Rejected as exc:
            self._metrics.rejected.labels(exc.reason).inc()
            log.warning("report rejected", host=reg.host, reason=str(exc))
            return
        if parsed.seq <= session.last_seq:
            self._metrics.rejected.labels("stale_seq").inc()
            return
        session.last_seq = parsed.seq
        if self.recorder is not None:
            self.recorder.record(self._clock(), reg, message)
        try:
            vms = {r.uuid: self._reported(r) for r in parsed.vms}
        except SampleRejected as exc:
            self._metrics.rejected.labels("bad_counter").inc()
            log.warning("report rejected", host=reg.host, reason=str(exc))
            return
        self._telemetry[reg.host] = HostTelemetry(
            host=reg.host,
            az=reg.az,
            pcpus=reg.pcpus,
            memory_mib=reg.memory_mib,
            last_report_at=self._clock(),
            vms=vms,
        )
        self._metrics.reports.inc()
        for callback in self.on_report:
            callback(reg.host)

    def _reported(self, reading: rpc.VmReading) -> ReportedVm:
        folded = self._folder.observe(reading.uuid, reading.sample)
        metrics = folded or self._folder.metrics(reading.uuid)
        s = reading.sample
        return ReportedVm(
            uuid=reading.uuid,
            name=reading.name,
            vcpus=s.vcpus,
            memory_mib=s.memory_mib,
            disk_gib=s.disk_gib,
            metrics=metrics or VmMetrics(),
        )

    # -- the Hypervisor port ----------------------------------------------------
    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        """Blocking (called from workflow threads): send the command, wait for its result."""
        if self._loop is None:
            raise AgentNotConnected("the agent server is not running")
        future = asyncio.run_coroutine_threadsafe(self._command(host, vm_uuid, mib_s), self._loop)
        try:
            result = future.result(timeout=_COMMAND_TIMEOUT_S)
        except TimeoutError as exc:
            future.cancel()
            raise AgentCommandFailed(f"{host}: no answer to set_migration_speed") from exc
        if not result.ok:
            raise AgentCommandFailed(f"{host}: {result.error}")
        return int(result.applied_bandwidth_mib_s)

    async def _command(self, host: str, vm_uuid: str, mib_s: int) -> agent_pb2.CommandResult:
        session = self._sessions.get(host)
        if session is None:
            raise AgentNotConnected(f"no agent stream from {host}")
        command_id = f"c{next(self._ids)}"
        waiter: asyncio.Future[agent_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        session.pending[command_id] = waiter
        await session.outbox.put(rpc.set_speed(command_id, vm_uuid, mib_s))
        try:
            return await asyncio.wait_for(waiter, _COMMAND_TIMEOUT_S)
        except asyncio.CancelledError as exc:
            raise AgentNotConnected(f"{host} disconnected") from exc
        finally:
            session.pending.pop(command_id, None)

    def _resolve(self, session: _Session, result: agent_pb2.CommandResult) -> None:
        waiter = session.pending.get(result.command_id)
        if waiter is None or waiter.done():
            self._metrics.rejected.labels("unknown_command_result").inc()
            return
        waiter.set_result(result)

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        telemetry = self._telemetry.get(host)
        return telemetry is not None and vm_uuid in telemetry.vms

    def connected(self) -> list[str]:
        return list(self._sessions)
