"""The coordinator process the fault-injection tests kill and restart.

It runs the real migration machinery (coordinator.controller.Controller over the real
SQLite journal) against the real Nova fixture (NovaCompute / openstacksdk) and the
real Kubernetes and Consul adapters pointed at the loopback doubles of the test
process. Only the agent link is stood in for: the "agents" report a VM wherever
Nova says it is, and accept any bandwidth cap.

    python -m tests.faults.driver start   --settings S --vm UUID --source H --target H
    python -m tests.faults.driver recover --settings S

`STEALBALANCER_CRASH_AT=<STATE>` is the controller's own crash hook (SIGKILL right
after that state is journaled; `REQUESTING`: right after "about to ask Nova" is
journaled, before the call; `NOVA_CALLED`: right after Nova accepted the live
migration). Two more points are added here, around the detacher calls: `DETACHED`
(right after detach reported the VM out) and `REATTACHED` (right after reattach
reported it back, before the outcome is journaled). `start` admits one migration and
ticks until it is over; `recover` is a new process that ticks until nothing is open.
The final records are printed as one JSON line starting with `RESULT `.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.adapters.nova import NovaCompute
from coordinator.config import Config
from coordinator.controller import CRASH_ENV, Controller, Ports
from coordinator.journal import MigrationRecord
from coordinator.journal import SqliteJournal as Journal
from coordinator.model import Bookkeeping, ClusterSnapshot, Move, MoveCost, Vm, VmMetrics
from coordinator.ports import Compute, Detacher
from coordinator.service.inventory import HostTelemetry, Inventory, ReportedVm, join

DETACHED, REATTACHED = "DETACHED", "REATTACHED"


def crash_if(point: str) -> None:
    if os.environ.get(CRASH_ENV, "") == point:
        os.kill(os.getpid(), signal.SIGKILL)


class CrashingDetacher:
    """A real detacher with crash points right after each of its calls returned."""

    def __init__(self, inner: Detacher) -> None:
        self._inner = inner

    @property
    def detach_timeout_s(self) -> float:
        return self._inner.detach_timeout_s

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        return self._inner.ref_problem(ref, addresses)

    def detach(self, vm: Vm, migration_id: str) -> bool:
        done = self._inner.detach(vm, migration_id)
        if done:
            crash_if(DETACHED)
        return done

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        done = self._inner.reattach(vm, migration_id)
        if done:
            crash_if(REATTACHED)
        return done

    def detached_by(self, vm: Vm) -> str | None:
        return self._inner.detached_by(vm)


class NovaFollowingAgents:
    """The Hypervisor port for a cloud whose hosts are Nova's fake computes."""

    def __init__(self, compute: Compute) -> None:
        self._compute = compute

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        return mib_s

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        return self._compute.get_server(vm_uuid).host == host


def snapshot_of(
    compute: Compute, config: Config, now: float, books: Bookkeeping
) -> ClusterSnapshot:
    """Nova's inventory joined with telemetry from agents that follow Nova."""
    inventory = Inventory(
        hypervisors=tuple(compute.list_hypervisors()),
        servers=tuple(compute.list_servers()),
        fetched_at=now,
    )
    metrics = VmMetrics(steal=0.3, load=0.9, sampled_at=now)
    telemetry = {
        h.name: HostTelemetry(
            host=h.name,
            az=h.az,
            pcpus=h.vcpus,
            memory_mib=h.memory_mib,
            last_report_at=now,
            vms={
                s.uuid: ReportedVm(s.uuid, s.name, s.vcpus, s.ram_mib, s.disk_gib, metrics)
                for s in inventory.servers
                if s.host == h.name
            },
        )
        for h in inventory.hypervisors
    }
    return join(now, inventory, telemetry, config.inventory, books)


def build(settings: dict[str, Any]) -> tuple[Controller, Config]:
    from tests.service.cloud import sdk_connection

    config = Config.model_validate(settings["config"])
    compute = NovaCompute(sdk_connection(settings["nova_endpoint"]))
    detachers: dict[str, Detacher] = {
        "kubernetes": CrashingDetacher(KubernetesDetacher(config.kubernetes)),
        "consul": CrashingDetacher(ConsulDetacher(config.consul)),
        "none": CrashingDetacher(NoDetacher()),
    }
    ports = Ports(compute, NovaFollowingAgents(compute), detachers)
    journal = Journal(Path(settings["journal"]))

    def observe(now: float, books: Bookkeeping) -> ClusterSnapshot:
        return snapshot_of(compute, config, now, books)

    return Controller(ports, journal, config, observe), config


def follow(controller: Controller, config: Config, ids: list[str]) -> list[MigrationRecord]:
    """Tick every poll until these migrations are over, as the service's loop does."""
    while True:
        controller.tick(time.time(), plan=False)
        records = [controller.journal.get(i) for i in ids]
        done = [r for r in records if r is not None and r.state.terminal]
        if len(done) == len(ids):
            return done
        time.sleep(config.workflow.poll_s)


def move(vm: str, source: str, target: str, az: str) -> Move:
    return Move(
        vm_uuid=vm,
        vm_name=vm,
        source=source,
        target=target,
        az=az,
        bandwidth_mib_s=200.0,
        steal=0.3,
        load=0.9,
        cost=MoveCost(gib_to_move=1.0, seconds=5.0, converges=True),
        relief=1.0,
        targets=(),
        reason="fault-injection test",
    )


def result(records: list[MigrationRecord]) -> None:
    print("RESULT " + json.dumps([dataclasses.asdict(r) for r in records]), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["start", "recover"])
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument("--vm", default="")
    parser.add_argument("--source", default="")
    parser.add_argument("--target", default="")
    parser.add_argument("--az", default="az1")
    args = parser.parse_args(argv)
    controller, config = build(json.loads(args.settings.read_text()))
    if args.mode == "recover":
        ids = [r.id for r in controller.journal.open_migrations()]
    else:
        record = controller.admit(move(args.vm, args.source, args.target, args.az), time.time())
        ids = [record.id]
    result(follow(controller, config, ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
