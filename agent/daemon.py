"""The agent's main loop: collect every interval, buffer, stream; caps are re-applied
by a worker thread of their own (agent/commands.py CapWorker)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import structlog

from agent.collector import Collection, Collector
from agent.commands import CapWorker, CommandExecutor
from agent.errors import AgentError
from agent.metrics import AgentMetrics
from agent.stream import AgentStream, ReportBuffer
from agent.wire import host_report

_log = structlog.get_logger("agent")


class AgentDaemon:
    """Ties the collector, the buffer and the stream together until `stop` is set."""

    def __init__(
        self,
        collector: Collector,
        executor: CommandExecutor,
        stream: AgentStream,
        buffer: ReportBuffer,
        metrics: AgentMetrics,
        interval_s: float,
    ) -> None:
        self.collector = collector
        self.executor = executor
        self.stream = stream
        self.buffer = buffer
        self.metrics = metrics
        self.interval_s = interval_s
        self.seq = 0
        self.caps = CapWorker(executor)

    async def run(self, stop: asyncio.Event) -> None:
        sender = asyncio.create_task(self.stream.run(stop))
        try:
            await self._collect_forever(stop)
        finally:
            stop.set()
            await sender
            await asyncio.to_thread(self.caps.stop)

    async def _collect_forever(self, stop: asyncio.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            await self.cycle()
            sd_notify("READY=1\nWATCHDOG=1")
            self._adopt_coordinator_interval()
            # A fixed schedule, not "sleep interval after work": no drift.
            next_at = max(next_at + self.interval_s, time.monotonic())
            try:
                await asyncio.wait_for(stop.wait(), timeout=next_at - time.monotonic())
            except TimeoutError:
                continue

    async def cycle(self) -> Collection | None:
        """One collection: read, queue the report, hand the readings to the cap worker.
        Never raises AgentError."""
        try:
            collection = await asyncio.to_thread(self.collector.collect)
        except AgentError as exc:
            self.metrics.collection_errors.inc()
            _log.warning("collection failed", error=str(exc))
            return None
        self.metrics.collection_seconds.observe(collection.collection_ns / 1e9)
        self.metrics.domains_seen.set(len(collection.domains))
        # Off the report path: the read-back can block while a migration runs.
        self.caps.submit(list(collection.domains))
        self.seq += 1
        dropped = self.buffer.push(
            host_report(collection, self.seq), online=self.stream.connected.is_set()
        )
        if dropped:
            self.metrics.buffer_drops.inc(dropped)
        self.metrics.buffered.set(len(self.buffer))
        return collection

    def _adopt_coordinator_interval(self) -> None:
        ack = self.stream.ack
        if ack is not None and ack.report_interval_s and ack.report_interval_s != self.interval_s:
            _log.info("interval set by coordinator", interval_s=ack.report_interval_s)
            self.interval_s = float(ack.report_interval_s)


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify, WatchdogSec=) we are alive; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            _log.warning("sd_notify failed", error=str(exc))
