"""The agent's main loop: collect every interval, buffer, stream; caps are re-applied
by a worker thread of their own (agent/commands.py CapWorker).

systemd's watchdog (WatchdogSec= in the unit) is pinged on a timer of its own, every
half of WATCHDOG_USEC as sd_watchdog_enabled(3) recommends, not once per cycle: the
interval may well be longer than WatchdogSec (up to an hour in the config, and whatever
the coordinator's RegisterAck asks for). The timer pings only while the collection loop
keeps to its schedule — each cycle done within one watchdog timeout of when it was due
to start — so a cycle stuck in libvirt or /proc still gets the agent restarted, at most
two timeouts after it was due. If the stream task ever ends while the agent runs, the
agent exits non-zero (StreamStopped) rather than collect reports nobody will receive.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import time

import structlog

from agent.collector import Collection, Collector
from agent.commands import CapWorker, CommandExecutor
from agent.errors import AgentError, StreamStopped
from agent.metrics import AgentMetrics
from agent.stream import AgentStream, ReportBuffer, sleep_unless
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
        self.stream_failed = False
        # The monotonic time by which the running or next cycle must be done for the
        # watchdog to be pinged (see the module docstring).
        self.due_by = math.inf

    async def run(self, stop: asyncio.Event) -> None:
        """Collect and stream until `stop` is set. Raises StreamStopped if the stream
        task ended first."""
        timeout_s = watchdog_timeout_s()
        budget_s = timeout_s or math.inf
        self.due_by = time.monotonic() + budget_s
        tasks = [asyncio.create_task(self._send(stop))]
        if timeout_s is not None:
            tasks.append(asyncio.create_task(self._watchdog(stop, timeout_s)))
        try:
            await self._collect_forever(stop, budget_s)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await asyncio.to_thread(self.caps.stop)
        if self.stream_failed:
            raise StreamStopped("the report stream stopped while the agent ran (see the log)")

    async def _send(self, stop: asyncio.Event) -> None:
        # AgentStream.run returns only once `stop` is set, whatever a session raises.
        # Should it end otherwise (a bug outside any session), reports would pile up
        # unsent while collection went on. Stopping the agent with a non-zero exit,
        # rather than only withholding watchdog pings, says why at once, works where no
        # watchdog is configured (run by hand, WatchdogSec= unset), and Restart=on-failure
        # brings the agent back after RestartSec instead of a whole watchdog timeout.
        try:
            await self.stream.run(stop)
            if stop.is_set():
                return
            _log.error("report stream ended; stopping the agent")
        except Exception:
            _log.exception("report stream failed; stopping the agent")
        self.stream_failed = True
        stop.set()

    async def _watchdog(self, stop: asyncio.Event, timeout_s: float) -> None:
        while not stop.is_set():
            if time.monotonic() < self.due_by:
                sd_notify("WATCHDOG=1")
            await sleep_unless(stop, timeout_s / 2)

    async def _collect_forever(self, stop: asyncio.Event, budget_s: float) -> None:
        next_at = time.monotonic()
        ready = False
        while not stop.is_set():
            await self.cycle()
            if not ready:
                sd_notify("READY=1")
                ready = True
            self._adopt_coordinator_interval()
            # A fixed schedule, not "sleep interval after work": no drift.
            next_at = max(next_at + self.interval_s, time.monotonic())
            self.due_by = next_at + budget_s
            await sleep_unless(stop, next_at - time.monotonic())

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


def watchdog_timeout_s() -> float | None:
    """systemd's watchdog timeout for this process, or None without one; read from the
    environment as sd_watchdog_enabled(3) does."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify, WatchdogSec=) we are alive; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    # Never raises: a failed ping must not end the watchdog timer's task.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        _log.warning("sd_notify failed", error=str(exc))
