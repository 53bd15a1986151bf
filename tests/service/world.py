"""A small simulated cloud for controller tests: fake clock, simulated Nova, agents and
orchestrator, a real journal, and snapshots made by the real inventory join."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coordinator.adapters.sim.compute import SimCompute
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.adapters.sim.hypervisor import SimHypervisor
from coordinator.config import Config
from coordinator.controller import Controller, Ports
from coordinator.journal import MigrationRecord
from coordinator.journal import SqliteJournal as Journal
from coordinator.model import Bookkeeping, ClusterSnapshot, Move, MoveCost, VmMetrics
from coordinator.service.inventory import (
    HostTelemetry,
    Inventory,
    RefCheck,
    ReportedVm,
    join,
)

HOSTS = {"host-a": "az1", "host-b": "az1", "host-c": "az1", "host-d": "az2"}


@dataclass
class FakeClock:
    t: float = 1_000_000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class World:
    path: Path
    config: Config = field(default_factory=Config)
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.compute = SimCompute(clock=self.clock.now, migration_s=20.0)
        self.agents = SimHypervisor()
        self.detacher = SimDetacher()
        self.journal = Journal(self.path)
        for host, az in HOSTS.items():
            self.compute.add_hypervisor(host, az)
            self.agents.domains[host] = set()

    # Agents report a VM where Nova has it (set False to model a silent target agent).
    agents_follow_nova: bool = True
    # Hosts whose VMs suffer steal; every host is hot unless a test says otherwise.
    hot_hosts: frozenset[str] = frozenset(HOSTS)
    # The join's orchestrator_ref check (the service's comes from its detachers).
    ref_problem: RefCheck = field(default=lambda tag, ref, addresses: "")

    def sync_agents(self) -> None:
        if self.agents_follow_nova:
            for uuid, server in self.compute.servers.items():
                if server.status == "ACTIVE":
                    self.agents.move(uuid, server.host)

    def boot(self, uuid: str, host: str) -> None:
        self.compute.add_server(uuid, host, name=f"vm-{uuid}")
        self.agents.domains[host].add(uuid)

    def snapshot(
        self, now: float | None = None, books: Bookkeeping | None = None
    ) -> ClusterSnapshot:
        """The controller's observer (and a plain snapshot for tests: no books)."""
        now = self.clock.now() if now is None else now
        inv = Inventory(
            hypervisors=tuple(self.compute.hypervisors.values()),
            servers=tuple(self.compute.servers.values()),
            groups=tuple(self.compute.groups.values()),
            fetched_at=now,
        )
        telemetry = {
            host: HostTelemetry(
                host=host, az=HOSTS[host], pcpus=64, memory_mib=262144, last_report_at=now,
                vms={u: ReportedVm(u, u, 2, 2048, 0, self._metrics(host, now)) for u in uuids},
            )
            for host, uuids in self.agents.domains.items()
        }  # fmt: skip
        return join(now, inv, telemetry, self.config.inventory, books or Bookkeeping(),
                    ref_problem=self.ref_problem)  # fmt: skip

    def _metrics(self, host: str, now: float) -> VmMetrics:
        """Busy VMs everywhere; those on a hot host suffer steal (contended)."""
        steal = 0.3 if host in self.hot_hosts else 0.0
        samples = 5 if steal else 0
        return VmMetrics(steal=steal, load=0.9, contended_s=10.0 * samples, sampled_at=now)

    def controller(self) -> Controller:
        ports = Ports(self.compute, self.agents, {"none": self.detacher})
        return Controller(ports, self.journal, self.config, self.snapshot)

    def run(
        self, controller: Controller, record: MigrationRecord, ticks: int = 400
    ) -> MigrationRecord:
        """Tick (following only, no planning) until the migration is over; each tick
        is `workflow.poll_s` of fake time later."""
        for _ in range(ticks):
            controller.tick(self.clock.now(), plan=False)
            current = self.journal.get(record.id)
            assert current is not None
            if current.state.terminal:
                return current
            self.sleep(self.config.workflow.poll_s)
        raise AssertionError(f"migration {record.id} still open after {ticks} ticks")

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)
        self.sync_agents()


def move(uuid: str, source: str, target: str, bandwidth: float = 200.0) -> Move:
    return Move(
        vm_uuid=uuid, vm_name=f"vm-{uuid}", source=source, target=target, az=HOSTS[source],
        bandwidth_mib_s=bandwidth, steal=0.3, load=0.9,
        cost=MoveCost(gib_to_move=2.0, seconds=10.0, converges=True),
        relief=1.0, targets=(), reason="test",
    )  # fmt: skip
