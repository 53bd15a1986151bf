"""The migration cap's read-back never delays a host's report: a libvirt domain whose
migrateGetMaxSpeed blocks (a busy host mid-migration) does not hold up collection; nor
does a stalled bulk stats call hold up a cap command."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from typing import Any

import libvirt

from agent.collector import Collector
from agent.commands import CommandExecutor
from agent.daemon import AgentDaemon
from agent.metrics import AgentMetrics
from agent.sources.libvirt import LibvirtSource
from agent.sources.sim import SimHost, SimVm
from agent.stream import AgentStream, ReportBuffer
from agent.wire import host_report
from coordinator.api.v1 import agent_pb2 as pb
from tests.agent.test_libvirt_source import REAL_RECORD

UUID = "11111111-2222-3333-4444-555555555555"


class _SlowDomain:
    """A domain mid-migration whose cap read-back blocks until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.read_backs = 0
        self.speed = 0

    def UUIDString(self) -> str:
        return UUID

    def ID(self) -> int:
        return 7

    def name(self) -> str:
        return "instance-00000007"

    def metadata(self, *_: Any) -> str:
        raise libvirt.libvirtError("no metadata")

    def XMLDesc(self, _flags: int) -> str:
        return "<domain/>"

    def jobStats(self, _flags: int) -> dict[str, int]:
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "data_total": 1 << 30}

    def migrateSetMaxSpeed(self, speed: int, _flags: int) -> None:
        self.speed = speed

    def migrateGetMaxSpeed(self, _flags: int) -> int:
        self.read_backs += 1
        if self.read_backs > 1:  # the first answers the command; later ones hang
            self.release.wait(60)
        return 0  # Nova started the job with its own (unlimited) cap


class _Connection:
    def __init__(self, dom: _SlowDomain) -> None:
        self.dom = dom

    def getAllDomainStats(self, *_: Any) -> list[tuple[_SlowDomain, dict[str, Any]]]:
        return [(self.dom, dict(REAL_RECORD))]

    def lookupByUUIDString(self, _uuid: str) -> _SlowDomain:
        return self.dom

    def isAlive(self) -> bool:
        return True

    def close(self) -> int:
        return 0


def test_collection_does_not_wait_for_a_blocked_cap_read_back() -> None:
    dom = _SlowDomain()
    source = LibvirtSource("fake:///", opener=lambda _uri: _Connection(dom))
    executor = CommandExecutor(source)
    command = pb.Command(id="1", set_migration_speed=pb.SetMigrationSpeed(
        instance_uuid=UUID, bandwidth_mib_s=300))  # fmt: skip
    assert executor.execute(command).ok
    buffer = ReportBuffer(10)
    metrics = AgentMetrics()
    stream = AgentStream("127.0.0.1:1", None, lambda: pb.AgentMessage(), executor, buffer, metrics)
    daemon = AgentDaemon(Collector(source, SimHost("h", [])), executor, stream, buffer, metrics,
                         interval_s=10.0)  # fmt: skip

    async def cycles() -> None:
        for _ in range(3):
            await asyncio.wait_for(daemon.cycle(), timeout=10)

    try:
        asyncio.run(cycles())
        # Three reports queued while the worker's read-back was still blocked.
        assert len(buffer) == 3
        assert dom.read_backs == 2  # the command's, then the worker's (still hanging)
    finally:
        dom.release.set()
        daemon.caps.stop()


def test_a_domain_without_vcpu_statistics_is_left_out_of_the_report() -> None:
    """libvirt's test driver reports a domain without vCPU statistics (vcpus=0): the
    report carries the other domains and not that one as zeros."""
    source = LibvirtSource("test:///default")
    try:
        collector = Collector(source, SimHost("h", [SimVm("measurable")]))
        collection = collector.collect()
    finally:
        source.close()
    measurable = SimHost("h", [SimVm("measurable")]).domains()
    report = host_report(replace(collection, domains=collection.domains + tuple(measurable)), 1)
    assert [d.vcpus for d in collection.domains] == [0]
    assert [vm.instance_uuid for vm in report.vms] == [measurable[0].instance_uuid]


class _StalledConnection(_Connection):
    """A bulk stats call that hangs until released, as libvirt's does while it waits on
    another domain's stuck QEMU job (without NOWAIT: 30 s per such domain)."""

    def __init__(self, dom: _SlowDomain) -> None:
        super().__init__(dom)
        self.flags: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def getAllDomainStats(self, *args: Any) -> list[tuple[_SlowDomain, dict[str, Any]]]:
        self.flags.append(args[1])
        self.entered.set()
        self.release.wait(60)
        return super().getAllDomainStats()


def test_bulk_stats_do_not_wait_for_a_stuck_domain_job() -> None:
    conn = _StalledConnection(_SlowDomain())
    conn.release.set()
    source = LibvirtSource("fake:///", opener=lambda _uri: conn)
    source.domains()
    assert conn.flags == [
        libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
        | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
    ]


def test_a_cap_command_does_not_wait_for_a_stalled_bulk_stats_call() -> None:
    dom = _SlowDomain()
    conn = _StalledConnection(dom)
    source = LibvirtSource("fake:///", opener=lambda _uri: conn)
    cycle: list[list[Any]] = []
    collecting = threading.Thread(target=lambda: cycle.append(source.domains()))
    applied: list[int] = []
    capping = threading.Thread(target=lambda: applied.append(source.set_migration_speed(UUID, 300)))
    collecting.start()
    try:
        assert conn.entered.wait(10)
        capping.start()
        capping.join(5)
        assert len(applied) == 1, "the cap waited for the stalled bulk call"
    finally:
        conn.release.set()
        collecting.join(10)
        capping.join(10)
    assert dom.speed == 300
    # The cap given mid-call is in force for that very cycle: its job is watched.
    [[reading]] = cycle
    assert reading.migration is not None
