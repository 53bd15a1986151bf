"""The daemon's watchdog and its guard on the stream task: systemd's watchdog is pinged
on a timer of its own while cycles keep to schedule, whatever the interval; a hung cycle
stops the pings; a stream task that ends stops the agent."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from agent.collector import Collector
from agent.commands import CommandExecutor
from agent.daemon import AgentDaemon
from agent.errors import StreamStopped
from agent.metrics import AgentMetrics
from agent.sources.base import DomainReading
from agent.sources.sim import SimHost, SimVm
from agent.stream import AgentStream, Backoff, ReportBuffer
from coordinator.api.v1 import agent_pb2 as pb

WATCHDOG_S = 1.0  # systemd's WATCHDOG_USEC for these tests: a ping every 0.5 s


class _HangingHost(SimHost):
    """A host whose domain read hangs from cycle `hang_from` on (libvirt or /proc stuck)
    until the test releases it."""

    def __init__(self, hang_from: int) -> None:
        super().__init__("cmp-7", [SimVm("web-1")])
        self.hang_from = hang_from
        self.reads = 0
        self.release = threading.Event()

    def domains(self) -> list[DomainReading]:
        self.reads += 1
        if self.reads >= self.hang_from:
            self.release.wait(30)
        return super().domains()


def _daemon(host: SimHost, interval_s: float) -> AgentDaemon:
    executor = CommandExecutor(host)
    buffer = ReportBuffer(10)
    metrics = AgentMetrics()
    # Nothing listens on port 1: the stream just keeps reconnecting.
    stream = AgentStream("127.0.0.1:1", None, pb.AgentMessage, executor, buffer, metrics,
                         Backoff(0.05, 0.2))  # fmt: skip
    return AgentDaemon(Collector(host, host), executor, stream, buffer, metrics, interval_s)


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """What the daemon told systemd, with the monotonic time it said it."""
    sent: list[tuple[float, str]] = []
    monkeypatch.setattr("agent.daemon.sd_notify", lambda s: sent.append((time.monotonic(), s)))
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    return sent


def _run_for(daemon: AgentDaemon, seconds: float, before_stop: Callable[[], None]) -> float:
    """Run the daemon for `seconds`; returns the monotonic time it started."""

    async def scenario() -> float:
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.sleep(seconds)
        before_stop()
        stop.set()
        await asyncio.wait_for(task, 10)
        return started

    return asyncio.run(scenario())


def _pings(notified: list[tuple[float, str]], since: float) -> list[float]:
    return [at - since for at, state in notified if "WATCHDOG=1" in state.split("\n")]


def test_watchdog_is_pinged_between_cycles_longer_than_its_timeout(
    notified: list[tuple[float, str]],
) -> None:
    # An hour between reports (the config allows it; a coordinator's ack may ask for
    # any interval) against a watchdog timeout of one second.
    daemon = _daemon(SimHost("cmp-7", [SimVm("web-1")]), interval_s=3600)
    started = _run_for(daemon, 3.0, lambda: None)
    pings = _pings(notified, started)
    assert len(pings) >= 4, pings
    assert all(b - a < WATCHDOG_S for a, b in zip([0.0, *pings], pings, strict=False)), pings
    assert [s for _, s in notified].count("READY=1") == 1


def test_a_hung_cycle_stops_the_watchdog_pings(notified: list[tuple[float, str]]) -> None:
    host = _HangingHost(hang_from=2)
    daemon = _daemon(host, interval_s=0.1)
    started = _run_for(daemon, 3.5, host.release.set)
    pings = _pings(notified, started)
    # Pinged while cycles kept to schedule; the second, due at 0.1 s, had until 1.1 s.
    assert pings and pings[0] < 0.5, pings
    assert max(pings) < 0.1 + WATCHDOG_S + 0.5, "pinged although the loop was stuck"
    assert host.reads == 2


async def _stream_returns(stop: asyncio.Event) -> None:
    return None


async def _stream_raises(stop: asyncio.Event) -> None:
    raise RuntimeError("a bug outside any session")


@pytest.mark.parametrize(
    "run", [pytest.param(_stream_returns, id="returns"), pytest.param(_stream_raises, id="raises")]
)
def test_the_agent_stops_when_its_stream_task_ends(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    daemon = _daemon(SimHost("cmp-7", [SimVm("web-1")]), interval_s=0.1)
    monkeypatch.setattr(daemon.stream, "run", run)

    async def scenario() -> None:
        stop = asyncio.Event()
        with pytest.raises(StreamStopped):
            await asyncio.wait_for(daemon.run(stop), 5)
        assert stop.is_set()

    asyncio.run(scenario())
