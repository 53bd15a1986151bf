"""Ingest benchmark: host reports per second one coordinator process takes.

    python -m tests.benchmarks.bench_ingest [--agents 50] [--vms 40] [--seconds 10]

A child process runs the real coordinator service (real gRPC on loopback, the
simulated Nova listing the hosts); this process plays `--agents` agents, each
streaming HostReports of `--vms` VMs as fast as the coordinator takes them. The same
run first measures a baseline: a child with a gRPC servicer that only reads the
stream and counts (no validation, no folding), so the printed ratio is what the
coordinator's ingest costs relative to bare gRPC on this machine. CPU and RSS are
the child's, from /proc. Target: 1,000 reports/s (10,000 agents x 40 VMs every 10 s)
on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from coordinator.api.v1 import agent_pb2, agent_pb2_grpc

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the child ----------------------------------------------------------------------


class _Noop(agent_pb2_grpc.AgentLinkServicer):  # type: ignore[misc]  # generated base is untyped
    def __init__(self) -> None:
        self.count = 0

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        await context.write(agent_pb2.CoordinatorMessage(register_ack=agent_pb2.RegisterAck()))
        while (message := await context.read()) is not EOF:
            self.count += message.HasField("report")


async def _serve(mode: str, port: int, hosts: int) -> None:
    if mode == "noop":
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4 << 20)])
        noop = _Noop()
        agent_pb2_grpc.add_AgentLinkServicer_to_server(noop, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()

        def count() -> int:
            return noop.count

    else:
        count = await _serve_coordinator(port, hosts)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while True:  # the parent asks for the count on stdin
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        print(f"COUNT {count()}", flush=True)


async def _serve_coordinator(port: int, hosts: int) -> Callable[[], int]:
    import tempfile

    import structlog

    from coordinator.adapters.sim.compute import SimCompute
    from coordinator.config import Config
    from coordinator.service.main import start

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    nova = SimCompute(clock=time.time)
    for i in range(hosts):
        nova.add_hypervisor(f"h{i}", "az1")
    journal = os.path.join(tempfile.mkdtemp(), "journal.sqlite")
    config = Config.model_validate({"service": {
        "agent_listen": f"127.0.0.1:{port}", "admin_listen": "127.0.0.1:0", "metrics_listen": "",
        "journal_path": journal, "plan_interval_s": 10, "inventory_interval_s": 3600}})  # fmt: skip
    running = await start(config, nova)
    metrics = running.coordinator.metrics
    # The closure keeps `running` (and so its gRPC servers) alive.
    return lambda: (
        running,
        int(metrics.registry.get_sample_value("stealbalancer_agent_reports_total") or 0),
    )[1]


# -- the parent ------------------------------------------------------------------------


@dataclass
class Figures:
    reports_per_s: float
    cpu_share: float  # of one core
    rss_mib: float


def _report(seq: int, monotonic_ns: int, vms: list[agent_pb2.VmSample]) -> agent_pb2.AgentMessage:
    return agent_pb2.AgentMessage(
        report=agent_pb2.HostReport(seq=seq, monotonic_ns=monotonic_ns, vms=vms)
    )


def _vms(host: int, count: int) -> list[agent_pb2.VmSample]:
    return [
        agent_pb2.VmSample(instance_uuid=f"vm-{host}-{i}", name=f"vm{i}", vcpus=4, domain_id=1,
                           cpu_time_ns=10**12, steal_ns=10**10, memory_bytes=8 << 30)
        for i in range(count)
    ]  # fmt: skip


async def _agent(port: int, host: int, vms: int, stop_at: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        queue: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue(maxsize=4)
        samples = _vms(host, vms)

        async def messages() -> Any:
            while (m := await queue.get()) is not None:
                yield m

        call = agent_pb2_grpc.AgentLinkStub(channel).Connect(messages())
        register = agent_pb2.Register(host=f"h{host}", availability_zone="az1", pcpus=64)
        await queue.put(agent_pb2.AgentMessage(register=register))
        await call.read()
        seq, mono = 0, 10**9
        while time.monotonic() < stop_at:
            seq, mono = seq + 1, mono + 10**10
            for vm in samples:
                vm.cpu_time_ns += 10**9
                vm.steal_ns += 10**8
            await queue.put(_report(seq, mono, samples))
        await queue.put(None)
        call.cancel()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(mode: str, agents: int, vms: int, seconds: float) -> Figures:
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.bench_ingest", "--child", mode, "--port",
         str(port), "--agents", str(agents)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin and child.stdout
    try:
        assert child.stdout.readline().strip() == "READY"

        def count() -> int:
            assert child.stdin and child.stdout
            child.stdin.write("count\n")
            child.stdin.flush()
            return int(child.stdout.readline().split()[1])

        async def load() -> tuple[int, int, float, int]:
            stop_at = time.monotonic() + seconds + 2
            tasks = [asyncio.ensure_future(_agent(port, h, vms, stop_at)) for h in range(agents)]
            await asyncio.sleep(2)  # warm-up: streams registered, caches hot
            c0, t0, cpu0 = count(), time.monotonic(), _cpu_ticks(child.pid)
            await asyncio.sleep(seconds)
            c1, t1, cpu1 = count(), time.monotonic(), _cpu_ticks(child.pid)
            await asyncio.gather(*tasks, return_exceptions=True)
            return c1 - c0, cpu1 - cpu0, t1 - t0, 0

        done, cpu, elapsed, _ = asyncio.run(load())
        return Figures(done / elapsed, cpu / CLK_TCK / elapsed, _rss_mib(child.pid))
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--vms", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--child", choices=["noop", "coordinator"])
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_serve(args.child, args.port, args.agents))
        return
    base = measure("noop", args.agents, args.vms, args.seconds)
    real = measure("coordinator", args.agents, args.vms, args.seconds)
    print(f"ingest: {args.agents} agent streams, {args.vms} VMs per report, {args.seconds:g}s")
    print(f"  baseline (gRPC read+count only): {base.reports_per_s:8.0f} reports/s  "
          f"cpu {base.cpu_share:5.0%} of a core  rss {base.rss_mib:6.1f} MiB")  # fmt: skip
    print(f"  coordinator (validate+fold):     {real.reports_per_s:8.0f} reports/s  "
          f"cpu {real.cpu_share:5.0%} of a core  rss {real.rss_mib:6.1f} MiB")  # fmt: skip
    per_core = real.reports_per_s / max(real.cpu_share, 1e-9)
    print(f"  coordinator / baseline: {real.reports_per_s / base.reports_per_s:.2f}")
    print(f"  coordinator reports per core-second: {per_core:.0f} (target 1000: "
          f"{'met' if per_core >= 1000 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
