"""The agent side of the service: one gRPC stream per hypervisor.

`AgentHub` is the AgentLink servicer, the keeper of the newest telemetry per host,
and the real `Hypervisor` port (commands travel down the host's stream and their
results come back up it). Every rejection is counted by reason and ends at most the
offending stream; the model only ever sees validated readings (coordinator.rpc).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator import rpc
from coordinator.api.v1 import agent_pb2, agent_pb2_grpc
from coordinator.config import Config
from coordinator.errors import AgentCommandFailed, AgentNotConnected
from coordinator.model import VmMetrics
from coordinator.service import identity
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
# The reasons this module rejects with, created up front (rpc.Rejected adds its own
# as they happen) so that a healthy coordinator's rejection rate is 0, not absent.
_OWN_REJECT_REASONS = (
    "register_timeout", "no_register", "unknown_host", "duplicate_host",
    "unexpected_message", "stale_seq", "bad_counter", "unknown_command_result",
    "inventory_not_loaded",
)  # fmt: skip


@dataclass
class _Session:
    registration: rpc.Registration
    # The Connect call serving this session: a newer stream from the same host cancels it.
    task: asyncio.Task[Any] | None = None
    outbox: asyncio.Queue[agent_pb2.CoordinatorMessage] = field(default_factory=asyncio.Queue)
    pending: dict[str, asyncio.Future[agent_pb2.CommandResult]] = field(default_factory=dict)
    last_seq: int = -1
    replaced: bool = False


@dataclass
class _HostFold:
    """One host's counter state. Keyed by host, then VM: counters from one host never
    mix with another's, so no agent can shape a rate measured on a different host."""

    folder: TelemetryFolder
    reports: int = 0  # reports folded from this host
    last_seen: dict[str, int] = field(default_factory=dict)  # VM → report number

    def forget_older_than(self, reports: int) -> list[str]:
        """Drop the state of VMs this host has not reported in the last `reports`;
        their uuids."""
        horizon = self.reports - reports
        gone = [uuid for uuid, seen in self.last_seen.items() if seen <= horizon]
        for uuid in gone:
            del self.last_seen[uuid]
            self.folder.forget(uuid)
        return gone


class AgentHub(agent_pb2_grpc.AgentLinkServicer):  # type: ignore[misc]  # generated base is untyped
    def __init__(self, config: Config, metrics: Metrics, clock: Callable[[], float]) -> None:
        self._config, self._metrics, self._clock = config, metrics, clock
        # Gaps are judged against the interval agents are told to report at.
        self._fold_settings = FoldSettings.from_policy(
            config.policy, config.service.agent_interval_s
        )
        self._folds: dict[str, _HostFold] = {}
        # VM -> the host whose fold first saw it last: where a VM that just landed
        # left its peak demand (TelemetryFolder.observe's `left_behind`). Pruned with
        # the folds, so it holds no more VMs than they do.
        self._arrived_on: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._telemetry: dict[str, HostTelemetry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        # Hosts Nova lists; None until its inventory first loaded, when no host is
        # admitted (see _registration).
        self.known_hosts: Callable[[], set[str] | None] = lambda: None
        # Callbacks fired after each folded report (the reaction path uses it).
        self.on_report: list[Callable[[str], None]] = []
        self._started_at = clock()
        for reason in _OWN_REJECT_REASONS:
            metrics.rejected.labels(reason)
        metrics.registry.register(_ReportAges(self))
        self.recorder = ReportRecorder.open(config.service.record_reports)  # for --replay
        # Read at each scrape: a recording that stopped is worth an alert, not one log line.
        metrics.recording_failed.set_function(self._recording_failed)

    def _recording_failed(self) -> float:
        return 1.0 if self.recorder is not None and self.recorder.failed else 0.0

    def report_ages(self) -> dict[str, float]:
        """Seconds since each host's last folded report: every host Nova lists and every
        host that reported; one that never did counts from this hub's start. Called from
        the metrics thread, so it reads copies."""
        now = self._clock()
        telemetry = dict(self._telemetry)
        hosts = (self.known_hosts() or set()) | set(telemetry)
        return {
            host: now - (t.last_report_at if (t := telemetry.get(host)) else self._started_at)
            for host in hosts
        }

    def telemetry(self) -> Mapping[str, HostTelemetry]:
        return MappingProxyType(dict(self._telemetry))

    def host_telemetry(self, host: str) -> HostTelemetry | None:
        return self._telemetry.get(host)

    def tracked_vms(self) -> int:
        """VMs whose counter state is kept, over all hosts (bounded: see forget)."""
        return sum(len(f.last_seen) for f in self._folds.values())

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # -- the stream -----------------------------------------------------------
    async def Connect(  # noqa: N802  (the gRPC method name)
        self, request_iterator: Any, context: Context
    ) -> None:
        registration = await self._registration(context)
        if registration is None:
            return
        session = _Session(registration, task=asyncio.current_task())
        # From here on the session is registered: the `finally` below is the only way
        # out, so a stream that drops at any point (even before the ack is written)
        # leaves nothing behind.
        self._adopt(session)
        writer: asyncio.Future[None] | None = None
        try:
            await context.write(rpc.register_ack(VERSION, self._config.service.agent_interval_s))
            log.info("agent registered", host=registration.host, az=registration.az)
            writer = asyncio.ensure_future(self._write(session, context))
            await self._read(session, context)
        except asyncio.CancelledError:
            if not session.replaced:
                raise
            # Tell the old peer, if it still listens, why its stream ended.
            await context.abort(grpc.StatusCode.ABORTED, "replaced by a newer stream")
        finally:
            if writer is not None:
                writer.cancel()
            self._release(session)

    def _adopt(self, session: _Session) -> None:
        """Make `session` its host's stream; an older one (a rebooted host's dead
        connection, a restarted agent) is cancelled rather than holding the slot."""
        host = session.registration.host
        old = self._sessions.get(host)
        self._sessions[host] = session
        self._metrics.agents.set(len(self._sessions))
        if old is not None:
            self._metrics.rejected.labels("replaced_stream").inc()
            log.warning("agent stream replaced by a newer one", host=host)
            old.replaced = True
            if old.task is not None:
                old.task.cancel()

    def _release(self, session: _Session) -> None:
        host = session.registration.host
        if self._sessions.get(host) is session:  # not the newer stream that replaced it
            del self._sessions[host]
        self._metrics.agents.set(len(self._sessions))
        for future in session.pending.values():
            future.cancel()
        log.info("agent disconnected", host=host)

    async def _registration(self, context: Context) -> rpc.Registration | None:
        """The stream's validated Register, or None once it has been refused."""
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
        host = registration.host
        peer = identity.peer_names(context)
        if not identity.may_register(peer, host, self._mtls):
            log.warning("client certificate names another hypervisor", host=host,
                        certificate_names=list(peer.hosts))  # fmt: skip
            await self._refuse(
                context, "identity_mismatch", grpc.StatusCode.PERMISSION_DENIED, host
            )
            return None
        azs = self._config.service.azs
        if azs and registration.az not in azs:  # another AZ group's coordinator owns it
            log.warning("agent of another AZ", host=host, az=registration.az,
                        owned=",".join(azs))  # fmt: skip
            await self._refuse(context, "foreign_az", grpc.StatusCode.PERMISSION_DENIED, host)
            return None
        known = self.known_hosts()
        if known is None:
            # Nova has not answered since start: no host can be checked, and admitting
            # any name kept a fold, telemetry and a metric series per name. Agents
            # retry within their backoff (10 s at most) and buffer their reports
            # meanwhile; nothing is planned before the inventory loads anyway.
            await self._refuse(context, "inventory_not_loaded", grpc.StatusCode.UNAVAILABLE, host)
            return None
        if host not in known:
            await self._refuse(context, "unknown_host", grpc.StatusCode.PERMISSION_DENIED, host)
            return None
        return registration

    @property
    def _mtls(self) -> bool:
        tls = self._config.service.tls
        return tls is not None and bool(tls.ca_file)

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
        for reason in parsed.dropped:
            self._metrics.rejected.labels(reason).inc()
        if parsed.dropped:
            log.warning("vm samples dropped", host=reg.host, reasons=sorted(set(parsed.dropped)))
        fold = self._host_fold(reg.host)
        vms = {}
        for reading in parsed.vms:
            reported = self._reported(reg.host, fold, reading, parsed.replayed)
            if reported is not None:
                vms[reading.uuid] = reported
        gone = fold.forget_older_than(self._config.service.telemetry_forget_reports)
        self._unindex(reg.host, gone)
        self._metrics.reports.inc()
        if parsed.replayed:
            # Measured up to an hour ago and stamped on arrival: only the counters'
            # baselines are kept (TelemetryFolder.observe). The host's telemetry, its
            # report age and the planning trigger wait for a live report.
            return
        self._telemetry[reg.host] = HostTelemetry(
            host=reg.host,
            az=reg.az,
            pcpus=reg.pcpus,
            memory_mib=reg.memory_mib,
            last_report_at=self._clock(),
            vms=vms,
        )
        for callback in self.on_report:
            callback(reg.host)

    def _host_fold(self, host: str) -> _HostFold:
        fold = self._folds.get(host)
        if fold is None:
            fold = self._folds[host] = _HostFold(TelemetryFolder(self._fold_settings))
        fold.reports += 1
        return fold

    def _reported(
        self, host: str, fold: _HostFold, reading: rpc.VmReading, replayed: bool
    ) -> ReportedVm | None:
        """The VM as its host reports it, or None when its sample is unusable."""
        left_behind = None
        if reading.uuid not in fold.last_seen:
            left_behind = self._left_behind(reading.uuid, host)
            self._arrived_on[reading.uuid] = host
        try:
            folded = fold.folder.observe(reading.uuid, reading.sample, replayed, left_behind)
        except SampleRejected:
            self._metrics.rejected.labels("bad_counter").inc()
            return None
        fold.last_seen[reading.uuid] = fold.reports
        metrics = folded or fold.folder.metrics(reading.uuid)
        s = reading.sample
        return ReportedVm(
            uuid=reading.uuid,
            name=reading.name,
            vcpus=s.vcpus,
            memory_mib=s.memory_mib,
            disk_gib=s.disk_gib,
            metrics=metrics or VmMetrics(),
        )

    def _left_behind(self, vm_uuid: str, host: str) -> VmMetrics | None:
        """The VM's metrics on the host it was on before this one, while that host's
        fold still holds them (a migration's source, until it forgets the VM)."""
        before = self._arrived_on.get(vm_uuid)
        fold = self._folds.get(before) if before is not None and before != host else None
        return fold.folder.metrics(vm_uuid) if fold is not None else None

    def _unindex(self, host: str, vm_uuids: Iterable[str]) -> None:
        for uuid in vm_uuids:
            if self._arrived_on.get(uuid) == host:
                del self._arrived_on[uuid]

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

    def forget_hosts(self, listed: set[str] | None) -> list[str]:
        """Drop what is kept of hosts no stream serves now: telemetry and counter state
        of a host Nova does not list (`listed`; None = no listing yet), and the counter
        state of one silent for longer than a VM is remembered. The hosts whose
        telemetry went are returned. Called after each inventory refresh."""
        service = self._config.service
        horizon_s = service.telemetry_forget_reports * service.agent_interval_s
        now, dropped = self._clock(), []
        for host in set(self._folds) | set(self._telemetry):
            if host in self._sessions:  # its agent speaks now: the next report decides
                continue
            telemetry = self._telemetry.get(host)
            if listed is not None and host not in listed:
                # A decommissioned hypervisor or a name no inventory vouches for:
                # nothing of it may be joined, kept or exported any more.
                self._telemetry.pop(host, None)
                dropped.append(host)
            elif telemetry is not None and now - telemetry.last_report_at <= horizon_s:
                continue
            # Silent past the horizon its VMs are forgotten at: a reconnect re-bases
            # every counter anyway. A listed host's telemetry stays, for its report age
            # (the agent-stale alert) and as stale, unmovable evidence in the join.
            fold = self._folds.pop(host, None)
            if fold is not None:
                self._unindex(host, fold.last_seen)
        if dropped:
            log.info("telemetry of hosts Nova does not list dropped", hosts=len(dropped))
        return dropped

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        telemetry = self._telemetry.get(host)
        return telemetry is not None and vm_uuid in telemetry.vms

    def connected(self) -> list[str]:
        return list(self._sessions)


class _ReportAges(Collector):
    """stealbalancer_agent_last_report_age_seconds{host}, computed at scrape time (the
    agent-stale alert, packaging/prometheus/rules.yaml, watches it)."""

    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "stealbalancer_agent_last_report_age_seconds",
            "Seconds since the coordinator last folded in a report from the host's agent",
            labels=["host"],
        )
        for host, age in sorted(self._hub.report_ages().items()):
            family.add_metric([host], max(0.0, age))
        yield family
