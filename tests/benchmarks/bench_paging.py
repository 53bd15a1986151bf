"""Paging benchmark: every VM of a 400,000-VM inventory and every migration of a
100,000-migration journal, listed page by page through a real coordinator.

    python -m tests.benchmarks.bench_paging [--vms 400000] [--migrations 100000]

A real coordinator service (real gRPC on loopback, gRPC's default 4 MiB message
limit) runs on the simulated Nova in a background thread; the listing goes through
coordctl's own client and page loop (`coordinator.ctl.cli.collect`). Printed: the
size one unpaged answer would have (the old wall), the largest page actually sent,
pages, wall time, and the first page alone as the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2
from coordinator.ctl.cli import collect
from coordinator.ctl.connection import Admin, Settings
from coordinator.journal import MigrationRecord, State
from coordinator.journal import SqliteJournal as Journal
from tests.ctl.inprocess import running_service
from tests.service.harness import service_config

GRPC_LIMIT_MIB = 4  # what a client that never raised it accepts


def nova(vms: int, hosts: int) -> SimCompute:
    compute = SimCompute(clock=time.time)
    for h in range(hosts):
        compute.add_hypervisor(f"hv-{h:05d}", f"az{h % 2}")
    for i in range(vms):
        compute.add_server(str(uuid.UUID(int=i)), f"hv-{i % hosts:05d}", name=f"vm-{i:07d}")
    return compute


def journal(path: Path, migrations: int) -> None:
    store = Journal(path)
    for i in range(migrations):
        store.create(MigrationRecord(
            id=f"m{i:07d}", vm_uuid=str(uuid.UUID(int=i % 1000)), vm_name=f"vm-{i % 1000:07d}",
            source="hv-00000", target="hv-00001", az="az0", bandwidth_mib_s=400, manual=False,
            orchestrator="none", orchestrator_ref="", state=State.DONE,
            outcome="done: steal 31.0% -> 2.1%", created_at=1.7e9 + i,
        ))  # fmt: skip
    store.close()


class Measured(Admin):
    """coordctl's client, noting each answer's size and time."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sizes: list[int] = []
        self.seconds: list[float] = []

    def call(self, method: str, request: Any) -> Any:
        started = time.perf_counter()
        response = super().call(method, request)
        self.seconds.append(time.perf_counter() - started)
        self.sizes.append(response.ByteSize())
        return response


def listing(admin: Measured, method: str, request: Any, field: str) -> tuple[float, int, int]:
    admin.sizes, admin.seconds = [], []
    started = time.perf_counter()
    items = len(getattr(collect(admin, method, request, field), field))
    return time.perf_counter() - started, items, len(admin.sizes)


def report(name: str, admin: Measured, method: str, request: Any, field: str) -> None:
    first = time.perf_counter()
    page = admin.call(method, type(request)(page_size=1000))
    first_s = time.perf_counter() - first
    seconds, items, pages = listing(admin, method, request, field)
    per_item = page.ByteSize() / max(len(getattr(page, field)), 1)
    later_ms = statistics.median(admin.seconds[1:] or [0.0]) * 1000
    unpaged_mib = per_item * items / 2**20
    print(f"{name}: {items:,} items in {pages} pages, {seconds:.1f} s: the first page "
          f"{admin.seconds[0]:.2f} s, then {later_ms:.1f} ms a page (median); a first page "
          f"alone, the baseline: {first_s:.2f} s")  # fmt: skip
    print(f"  largest page {max(admin.sizes) / 2**10:.0f} KiB; one unpaged answer would be "
          f"~{unpaged_mib:.1f} MiB, gRPC's default limit {GRPC_LIMIT_MIB} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=400_000)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--migrations", type=int, default=100_000)
    args = parser.parse_args()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        journal(directory / "journal.sqlite", args.migrations)
        compute = nova(args.vms, args.hosts)
        print(f"set-up: {args.vms:,} VMs on {args.hosts:,} hosts, {args.migrations:,} "
              f"migrations journaled, {time.perf_counter() - started:.0f} s")  # fmt: skip
        with running_service(service_config(directory), compute) as address:
            admin = Measured(Settings(address=address, timeout_s=120))
            try:
                report("ListVms", admin, "ListVms", admin_pb2.ListVmsRequest(), "vms")
                report("ListMigrations", admin, "ListMigrations",
                       admin_pb2.ListMigrationsRequest(), "migrations")  # fmt: skip
                report("ListHosts", admin, "ListHosts", admin_pb2.ListHostsRequest(), "hosts")
            finally:
                admin.close()


if __name__ == "__main__":
    main()
