"""A real coordinator-side AgentLink server on loopback, for the agent's tests.

It speaks the v1 contract exactly as a coordinator must (read Register, answer
RegisterAck, then accept reports and command results while sending commands), and
records what it received. `stop()` kills the server as a crashed coordinator would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from coordinator.api.v1 import agent_pb2 as pb
from coordinator.api.v1 import agent_pb2_grpc

EOF_MARK: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


@dataclass
class Received:
    registers: list[pb.Register] = field(default_factory=list)
    reports: list[pb.HostReport] = field(default_factory=list)
    results: dict[str, pb.CommandResult] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class LinkServicer(agent_pb2_grpc.AgentLinkServicer):  # type: ignore[misc]  # untyped base
    def __init__(self, received: Received, ack_interval_s: int = 0) -> None:
        self.received = received
        self.ack_interval_s = ack_interval_s
        self.outbox: asyncio.Queue[pb.CoordinatorMessage] = asyncio.Queue()

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        if first is EOF_MARK or not first.HasField("register"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "register first")
        self._note(lambda: self.received.registers.append(first.register))
        ack = pb.RegisterAck(coordinator_version="test", report_interval_s=self.ack_interval_s)
        await context.write(pb.CoordinatorMessage(register_ack=ack))
        writer = asyncio.ensure_future(self._write(context))
        try:
            await self._read(context)
        finally:
            writer.cancel()

    async def _write(self, context: Any) -> None:
        while True:
            await context.write(await self.outbox.get())

    async def _read(self, context: Any) -> None:
        while True:
            message = await context.read()
            if message is EOF_MARK:
                return
            if message.HasField("report"):
                self._note(lambda m=message: self.received.reports.append(m.report))
            elif message.HasField("command_result"):
                result = message.command_result
                self._note(lambda r=result: self.received.results.__setitem__(r.command_id, r))

    def _note(self, change: Any) -> None:
        change()
        self.received.changed.set()


class LinkServer:
    """Start/stop a real grpc.aio server on 127.0.0.1; the port survives restarts."""

    def __init__(self, port: int = 0, ack_interval_s: int = 0) -> None:
        self.port = port
        self.received = Received()
        self.ack_interval_s = ack_interval_s
        self.servicer: LinkServicer | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, credentials: grpc.ServerCredentials | None = None) -> None:
        self._server = grpc.aio.server()
        self.servicer = LinkServicer(self.received, self.ack_interval_s)
        agent_pb2_grpc.add_AgentLinkServicer_to_server(self.servicer, self._server)
        where = f"127.0.0.1:{self.port}"
        if credentials is None:
            self.port = self._server.add_insecure_port(where)
        else:
            self.port = self._server.add_secure_port(where, credentials)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    async def command(self, command: pb.Command, timeout_s: float = 10.0) -> pb.CommandResult:
        assert self.servicer is not None
        await self.servicer.outbox.put(pb.CoordinatorMessage(command=command))
        result: pb.CommandResult = await self.wait_for(
            lambda r: r.results.get(command.id), timeout_s
        )
        return result

    async def wait_for(self, probe: Any, timeout_s: float = 10.0) -> Any:
        """Wait until probe(received) is truthy and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not (value := probe(self.received)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout_s} s")
            self.received.changed.clear()
            try:
                await asyncio.wait_for(self.received.changed.wait(), min(remaining, 0.2))
            except TimeoutError:
                continue
        return value
