"""The agent's one bidirectional gRPC stream to the coordinator.

Register, wait for the ack, then send every report the collection loop puts in the
buffer and answer every command. Any failure ends the session — whatever its
exception, `run` itself ends only when told to stop; the next one starts after an
exponential backoff with jitter. Reports are collected whether or not the
stream is up: while it is down they wait in a bounded buffer (oldest dropped and
counted) and go out, marked `replayed`, once a session is registered again.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import structlog

from agent.commands import CommandExecutor
from agent.metrics import AgentMetrics
from coordinator.api.v1 import agent_pb2 as pb
from coordinator.api.v1 import agent_pb2_grpc

_log = structlog.get_logger("agent.stream")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random, so a fleet of
    agents cut off together does not reconnect together, yet never retries at once."""

    initial_s: float = 1.0
    max_s: float = 10.0  # agent/config.py ReconnectSection: why not more
    multiplier: float = 2.0

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** min(attempt, 64))
        return ceiling / 2 + uniform() * ceiling / 2


@dataclass
class _Pending:
    report: pb.HostReport
    collected_online: bool


@dataclass
class ReportBuffer:
    """Reports not yet sent, at most `capacity`; the oldest go first when full."""

    capacity: int
    dropped: int = 0
    _items: deque[_Pending] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("buffer capacity must be at least 1")

    def __len__(self) -> int:
        return len(self._items)

    def push(self, report: pb.HostReport, online: bool) -> int:
        """Add a report; returns how many old ones were dropped to make room."""
        dropped = 0
        while len(self._items) >= self.capacity:
            self._items.popleft()
            dropped += 1
        self.dropped += dropped
        self._items.append(_Pending(report, online))
        self._ready.set()
        return dropped

    async def first(self) -> _Pending:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items[0]

    def pop_sent(self, item: _Pending) -> None:
        # The head may have been dropped while the send was in flight.
        if self._items and self._items[0] is item:
            self._items.popleft()


@dataclass(frozen=True)
class Tls:
    """mTLS material: the coordinator's CA and this agent's certificate and key."""

    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


class SessionEnded(Exception):
    """The coordinator closed the stream or broke the protocol."""


class AgentStream:
    """Runs sessions until `stop` is set; `connected` is set while registered."""

    def __init__(
        self,
        target: str,
        tls: Tls | None,
        register: Callable[[], pb.AgentMessage],
        executor: CommandExecutor,
        buffer: ReportBuffer,
        metrics: AgentMetrics | None = None,
        backoff: Backoff = Backoff(),
        ack_timeout_s: float = 10.0,
    ) -> None:
        self._target = target
        self._tls = tls
        self._register = register
        self._executor = executor
        self._buffer = buffer
        self._metrics = metrics or AgentMetrics()
        self._backoff = backoff
        self._ack_timeout_s = ack_timeout_s
        self.connected = asyncio.Event()
        self.sessions = 0
        self.ack: pb.RegisterAck | None = None

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            registered = await self._guarded_session(stop)
            attempt = 0 if registered else attempt + 1
            if stop.is_set():
                break
            delay = self._backoff.delay(attempt)
            _log.info("reconnecting", target=self._target, in_s=round(delay, 2))
            await sleep_unless(stop, delay)

    async def _guarded_session(self, stop: asyncio.Event) -> bool:
        state = {"registered": False}
        try:
            await self._session(stop, state)
        # grpc.aio raises InvalidStateError ("RPC already finished") for a write on a
        # call the server or the network already ended: that is a lost session too.
        except (
            TimeoutError,
            grpc.aio.AioRpcError,
            asyncio.InvalidStateError,
            SessionEnded,
            OSError,
        ) as exc:
            self._metrics.send_failures.inc()
            _log.warning("stream ended", target=self._target, error=_describe(exc))
        # Anything else (a SourceError reading /proc for the Register, a gRPC or protobuf
        # error nobody foresaw) is a lost session too: the stream is the agent's only way
        # out, so no one session's failure may end it. The traceback shows what it was.
        except Exception as exc:
            self._metrics.send_failures.inc()
            _log.exception("stream failed", target=self._target, error=_describe(exc))
        finally:
            self.connected.clear()
            self._metrics.connected.set(0)
        return state["registered"]

    async def _session(self, stop: asyncio.Event, state: dict[str, bool]) -> None:
        async with self._channel() as channel:
            call = agent_pb2_grpc.AgentLinkStub(channel).Connect()
            await call.write(await asyncio.to_thread(self._register))
            self.ack = await asyncio.wait_for(_read_ack(call), self._ack_timeout_s)
            state["registered"] = True
            self.sessions += 1
            self.connected.set()
            self._metrics.connected.set(1)
            _log.info("registered", target=self._target)
            lock = asyncio.Lock()
            tasks = [
                asyncio.create_task(self._send_reports(call, lock)),
                asyncio.create_task(self._serve_commands(call, lock)),
                asyncio.create_task(stop.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                call.cancel()
            for task in done:
                task.result()  # re-raise the session's error, if any

    def _channel(self) -> grpc.aio.Channel:
        # Pings find a dead coordinator (or a dead path to it) within ~30 s, and keep
        # the stream alive through idle NAT/firewall timeouts; the coordinator permits
        # pings this often (coordinator/service/main.py).
        options: list[tuple[str, int | str]] = [
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if self._tls is None:
            return grpc.aio.insecure_channel(self._target, options=options)
        if self._tls.server_name:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        return grpc.aio.secure_channel(self._target, self._tls.credentials(), options=options)

    async def _send_reports(self, call: _Call, lock: asyncio.Lock) -> None:
        while True:
            item = await self._buffer.first()
            report = pb.HostReport()
            report.CopyFrom(item.report)
            report.dropped_reports = self._buffer.dropped
            report.replayed = not item.collected_online
            async with lock:
                await call.write(pb.AgentMessage(report=report))
            self._buffer.pop_sent(item)
            self._metrics.buffered.set(len(self._buffer))

    async def _serve_commands(self, call: _Call, lock: asyncio.Lock) -> None:
        while True:
            message = await call.read()
            if not isinstance(message, pb.CoordinatorMessage):
                raise SessionEnded("coordinator closed the stream")
            if message.WhichOneof("body") != "command":
                continue
            result = await asyncio.to_thread(self._executor.execute, message.command)
            self._metrics.commands.labels("ok" if result.ok else "error").inc()
            async with lock:
                await call.write(pb.AgentMessage(command_result=result))


# grpc-stubs leave aio calls untyped; every message read is checked with isinstance.
_Call = Any


async def _read_ack(call: _Call) -> pb.RegisterAck:
    message = await call.read()
    if not isinstance(message, pb.CoordinatorMessage):
        raise SessionEnded("coordinator closed the stream before acknowledging")
    if message.WhichOneof("body") != "register_ack":
        raise SessionEnded(f"expected register_ack, got {message.WhichOneof('body')}")
    ack: pb.RegisterAck = message.register_ack
    return ack


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
