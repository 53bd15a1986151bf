"""Reaction benchmark: from steal onset in the telemetry to the Nova live-migrate call.

    python -m tests.benchmarks.bench_reaction [--interval 0.5] [--trials 5]

The real coordinator service (real gRPC on loopback, the simulated Nova) is fed by
scripted agents reporting every `--interval` seconds (a scaled-down agent interval:
the result is printed in intervals, so it holds for 10 s as well). In each trial one
VM starts being starved at a random moment; the time until the coordinator asks Nova
to live-migrate it is measured. The baseline printed beside it is the detection floor
of the policy in force: contended readings covering `sustained_s` (scaled like the
interval: production's 15 s over 10 s reports = two readings) must arrive before any
planner may act. Target: <= 3 agent intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import structlog

from coordinator.adapters.sim.compute import SimCompute
from coordinator.config import Config
from coordinator.service.main import start
from tests.service.fake_agent import FakeAgent, FakeVm


class TimedCompute(SimCompute):
    """The simulated Nova, noting when live-migrate was asked for."""

    def __init__(self) -> None:
        super().__init__(clock=time.time, migration_s=0.2)
        self.called_at: float | None = None

    def live_migrate(self, uuid: str, target_host: str) -> None:
        if self.called_at is None:
            self.called_at = time.monotonic()
        super().live_migrate(uuid, target_host)


async def trial(interval: float, seed: int) -> tuple[float, int]:
    nova = TimedCompute()
    hosts = {"h1": "az1", "h2": "az1", "h3": "az1"}
    for host, az in hosts.items():
        nova.add_hypervisor(host, az)
    for i in range(10):
        nova.add_server(f"vm{i}", f"h{i % 3 + 1}")
    config = Config.model_validate({
        "service": {"agent_listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                    "metrics_listen": "", "agent_interval_s": interval,
                    "plan_interval_s": interval,
                    "journal_path": str(Path(tempfile.mkdtemp()) / "journal.sqlite")},
        "policy": {"freshness_s": 3 * interval, "sustained_s": 1.5 * interval},
        # Only the call to Nova is timed; end the migration quickly afterwards.
        "workflow": {"poll_s": 0.05, "verify_timeout_s": 0.2},
    })  # fmt: skip
    running = await start(config, nova)
    agents = {h: FakeAgent(f"127.0.0.1:{running.agent_port}", h, az) for h, az in hosts.items()}
    for host, agent in agents.items():
        await agent.connect()
        agent.vms = {u: FakeVm(u, busy=0.5) for u, s in nova.servers.items() if s.host == host}
    rng = random.Random(seed)
    onset = time.monotonic() + 3 * interval + rng.uniform(0, interval)
    onset_at: float | None = None
    last = time.monotonic()
    try:
        while nova.called_at is None and time.monotonic() < onset + 20 * interval:
            await asyncio.sleep(max(0.0, last + interval - time.monotonic()))
            now = time.monotonic()
            for agent in agents.values():
                hot = agent.vms.get("vm0")
                if hot is not None and now > onset:
                    # Steal accrues only from the onset on, so the report straddling it
                    # carries a partial share, as a real one would.
                    hot.steal = 0.4 * min(1.0, (now - onset) / (now - last))
                    onset_at = onset_at or onset
                await agent.report(now - last)
            last = now
        await asyncio.sleep(interval)
    finally:
        for agent in agents.values():
            await agent.close()
        await running.stop()
    assert nova.called_at is not None and onset_at is not None, "no migration was started"
    return (nova.called_at - onset_at) / interval, math.ceil(config.policy.sustained_s / interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results = [asyncio.run(trial(args.interval, seed)) for seed in range(args.trials)]
    reactions = [r for r, _ in results]
    floor = results[0][1]
    print(f"reaction: {args.trials} trials, agent interval {args.interval:g}s (scaled)")
    median = statistics.median(reactions)
    listed = ", ".join(f"{r:.2f}" for r in reactions)
    print(f"  onset -> live-migrate call, in agent intervals: median {median:.2f}"
          f"  max {max(reactions):.2f}  all {listed}")  # fmt: skip
    print(f"  detection floor (sustained_s): {floor} intervals; "
          f"median / floor = {median / floor:.2f}")  # fmt: skip
    print(f"  target <= 3 intervals: {'met' if max(reactions) <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
