"""Memory benchmark: does the coordinator stay flat under a stream of new VM UUIDs?

    python -m tests.benchmarks.bench_memory [--rounds 300] [--vms 1000]

Each mode runs in a child process: the real coordinator service (real gRPC on
loopback, the simulated Nova) and one agent streaming `--rounds` HostReports of
`--vms` VMs through the real ingest path. Modes:

  same      the same VMs every report: the baseline a steady cluster costs
  new       1,000 new UUIDs every report (VMs come and go; a hostile agent)
  no-forget like `new`, with service.telemetry_forget_reports set out of reach: what
            the coordinator did before per-VM state was forgotten

The child prints its RSS after every tenth of the rounds; the parent prints the growth
of each mode over the second half of the run (flat means bounded) and against the
baseline's RSS at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import agent_pb2, agent_pb2_grpc
from coordinator.config import Config
from coordinator.service.main import start

MODES = ("same", "new", "no-forget")


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _report(round_: int, vms: int, mode: str) -> agent_pb2.AgentMessage:
    prefix = "steady" if mode == "same" else f"r{round_}"
    samples = [
        agent_pb2.VmSample(instance_uuid=f"{prefix}-{i:05d}", name=f"vm{i}", vcpus=4,
                           domain_id=1, cpu_time_ns=10**12 + round_ * 10**9,
                           steal_ns=10**10 + round_ * 10**8, memory_bytes=8 << 30)
        for i in range(vms)
    ]  # fmt: skip
    report = agent_pb2.HostReport(seq=round_ + 1, monotonic_ns=(round_ + 1) * 10**10, vms=samples)
    return agent_pb2.AgentMessage(report=report)


async def _child(mode: str, rounds: int, vms: int) -> list[float]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    nova = SimCompute(clock=time.time)
    nova.add_hypervisor("h0", "az1")
    forget = 10**9 if mode == "no-forget" else Config().service.telemetry_forget_reports
    config = Config.model_validate({"service": {
        "agent_listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "metrics_listen": "",
        "journal_path": os.path.join(tempfile.mkdtemp(), "journal.sqlite"),
        "plan_interval_s": 3600, "inventory_interval_s": 3600,
        "max_vms_per_report": vms, "telemetry_forget_reports": forget}})  # fmt: skip
    running = await start(config, nova)
    registry = running.coordinator.metrics.registry
    queue: asyncio.Queue[agent_pb2.AgentMessage | None] = asyncio.Queue(maxsize=2)

    async def messages() -> AsyncIterator[agent_pb2.AgentMessage]:
        while (m := await queue.get()) is not None:
            yield m

    rss = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.agent_port}") as channel:
        call = agent_pb2_grpc.AgentLinkStub(channel).Connect(messages())
        register = agent_pb2.Register(host="h0", availability_zone="az1", pcpus=64)
        await queue.put(agent_pb2.AgentMessage(register=register))
        await call.read()
        step = max(rounds // 10, 1)
        for r in range(rounds):
            await queue.put(_report(r, vms, mode))
            if (r + 1) % step == 0:
                while (registry.get_sample_value("stealbalancer_agent_reports_total") or 0) < r + 1:
                    await asyncio.sleep(0.01)
                rss.append(_rss_mib())
        await queue.put(None)
        call.cancel()
    await running.stop()
    return rss


def _measure(mode: str, rounds: int, vms: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_memory", "--child", mode,
         "--rounds", str(rounds), "--vms", str(vms)],
        capture_output=True, text=True, check=True, timeout=1800,
    ).stdout  # fmt: skip
    figures: list[float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, args.rounds, args.vms))))
        return
    results: dict[str, Any] = {m: _measure(m, args.rounds, args.vms) for m in MODES}
    base_end = results["same"][-1]
    print(f"memory: {args.rounds} reports of {args.vms} VMs through the real ingest path")
    print(f"  {'mode':10} {'RSS at 10%':>11} {'at 50%':>8} {'at end':>8} "
          f"{'2nd-half growth':>16} {'end vs baseline':>16}")  # fmt: skip
    for mode, rss in results.items():
        half = rss[len(rss) // 2 - 1]
        print(f"  {mode:10} {rss[0]:9.1f} MiB {half:6.1f} {rss[-1]:8.1f} "
              f"{rss[-1] - half:+13.1f} MiB {rss[-1] / base_end:15.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
