"""`stealbalancer-coordinator serve --simulate`: the real coordinator on a live,
simulated cluster in accelerated time.

Everything above the ports is the production code path: the gRPC agent port and
its ingest validation, telemetry folding, the Nova-joined snapshot, the policy,
the workflow and journal, the Admin API coordctl talks to, the metrics. Below the
ports, the simulator's `World` (the numpy contention model) stands in for the
hypervisors: one simulated agent per host streams the World's counters over a real
gRPC stream and answers bandwidth-cap commands; the simulated Nova (`SimCompute`)
executes live migrations, and a finished one moves the VM in the World, whose
contention then changes. Time runs `speed` times faster than the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog

from coordinator.adapters.sim.compute import SimCompute
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.api.v1 import agent_pb2, agent_pb2_grpc
from coordinator.config import Config, ConfigError, load_config
from coordinator.model import Orchestrator
from coordinator.policy.cost import transfer
from coordinator.service.metrics import Metrics
from coordinator.sim.scenario import Scenario, load_scenario, reference_scenario
from coordinator.sim.world import World

log = structlog.get_logger("stealbalancer.simulate")
_NS = 1_000_000_000


class AcceleratedClock:
    """Wall-clock-anchored time that runs `speed` times faster (the Clock protocol)."""

    def __init__(self, speed: float, start_unix: float | None = None) -> None:
        self.speed = speed
        self._start = time.time() if start_unix is None else start_unix
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self._t0) * self.speed

    def now(self) -> float:
        return self._start + self.elapsed()


@dataclass(frozen=True, slots=True)
class SimOptions:
    scenario: Scenario
    speed: float = 60.0
    start_hour: float = 11.0  # the lunch peak starts shortly after
    journal: Path | None = None


def simulated_config(config: Config, scenario: Scenario, speed: float, journal: Path) -> Config:
    """`config` adapted to accelerated time: agents report once per simulation step,
    staleness and the post-move verification allow three steps, and the loops run at
    the step's pace in real time."""
    step = scenario.step_s
    real_step = max(step / speed, 0.2)
    service = config.service.model_copy(
        update={
            "agent_interval_s": step,
            "plan_interval_s": real_step,
            "inventory_interval_s": real_step,
            "journal_path": str(journal),
            "tls": None,  # the simulated agents are in this process, on loopback
        }
    )
    policy = config.policy.model_copy(
        update={"freshness_s": max(config.policy.freshness_s, 3 * step)}
    )
    # The target's agent reports once per step: give it three to show the moved VM.
    workflow = config.workflow.model_copy(
        update={
            "poll_s": min(config.workflow.poll_s, 0.5),
            "verify_timeout_s": max(config.workflow.verify_timeout_s, 3 * step),
        }
    )
    return config.model_copy(update={"service": service, "policy": policy, "workflow": workflow})


class SimulatedCluster:
    """The World, the simulated Nova that mirrors it, and the reports its agents send."""

    def __init__(
        self, scenario: Scenario, clock: AcceleratedClock, start_hour: float, config: Config
    ) -> None:
        self.world = World(scenario)
        self.clock = clock
        self.start_s = start_hour * 3600.0
        self.cost = config.cost
        self.default_cap_mib_s = config.limits.grant_mib_s
        self.caps: dict[str, float] = {}  # the bandwidth cap each VM's agent was told
        self.compute = SimCompute(clock=clock.now, duration_s=self.migration_seconds)
        self.index = {vm.uuid: vm.index for vm in self.world.vms}
        self.simulated_s = 0.0
        self._populate()

    def _populate(self) -> None:
        for host in self.world.hosts:
            self.compute.add_hypervisor(host.name, host.az, host.pcpus, host.ram_mib)
        for vm in self.world.vms:
            metadata = {"role": vm.role, "stealbalancer.orchestrator": vm.orchestrator.value}
            if vm.opt_out:
                metadata["stealbalancer.opt_out"] = "true"
            self.compute.add_server(vm.uuid, self.world.host_name(vm.index), vm.name,
                                    vm.vcpus, vm.ram_mib, metadata)  # fmt: skip

    def migration_seconds(self, vm_uuid: str, target_host: str) -> float:
        """What the move really takes in the World (`policy.cost.transfer` at its true
        dirty rate and the cap the agent applied); pre-copy that cannot converge runs
        until the controller's time budget aborts it, as it would under Nova."""
        i = self.index[vm_uuid]
        vm, w = self.world.vms[i], self.world
        cap = self.caps.get(vm_uuid, self.default_cap_mib_s)
        shared = w.hosts[int(w.host_of[i])].shared_storage
        disk_gib = 0.0 if shared else vm.disk_gib
        move = transfer(vm.ram_mib, w.dirty_rate_mib_s(i), disk_gib, cap, self.cost)
        return move.seconds if move.converges else float("inf")

    def advance(self) -> None:
        """Step the World up to the clock, after applying finished migrations."""
        self._follow_migrations()
        target = self.clock.elapsed()
        dt = target - self.simulated_s
        if dt > 0:
            self.world.step(self.start_s + self.simulated_s, dt)
            self.simulated_s = target

    def _follow_migrations(self) -> None:
        for server in self.compute.list_servers():
            i = self.index[server.uuid]
            if server.status == "ACTIVE" and server.host != self.world.host_name(i):
                self.world.move(i, server.host)
                log.info("simulated VM moved", vm=server.uuid, host=server.host)

    def register(self, host_index: int) -> agent_pb2.AgentMessage:
        host = self.world.hosts[host_index]
        return agent_pb2.AgentMessage(
            register=agent_pb2.Register(
                host=host.name, availability_zone=host.az, pcpus=host.pcpus,
                memory_bytes=host.ram_mib << 20, agent_version="simulated",
                report_interval_s=int(self.world.scenario.step_s), boot_id="simulated",
            )
        )  # fmt: skip

    def report(self, host_index: int, seq: int) -> agent_pb2.AgentMessage:
        w = self.world
        vms = [
            agent_pb2.VmSample(
                instance_uuid=vm.uuid, name=vm.name, domain_uuid=vm.uuid,
                domain_id=int(w.domain_id[vm.index]), vcpus=vm.vcpus,
                cpu_time_ns=int(w.cpu_ns[vm.index]), steal_ns=int(w.steal_ns[vm.index]),
                steal_source=agent_pb2.STEAL_SOURCE_SIMULATED,
                load_source=agent_pb2.LOAD_SOURCE_SIMULATED,
                memory_bytes=vm.ram_mib << 20, disk_bytes=int(vm.disk_gib * (1 << 30)),
            )
            for vm in w.vms
            if int(w.host_of[vm.index]) == host_index
        ]  # fmt: skip
        report = agent_pb2.HostReport(
            seq=seq,
            monotonic_ns=_NS + int(self.simulated_s * _NS),
            wall_time_unix_ns=int(self.clock.now() * _NS),
            vms=vms,
        )
        return agent_pb2.AgentMessage(report=report)


class SimulatedAgent:
    """One hypervisor's agent: a real AgentLink stream to the coordinator."""

    def __init__(self, cluster: SimulatedCluster, host_index: int, target: str) -> None:
        self.cluster, self.host_index, self.target = cluster, host_index, target
        self.outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue(maxsize=4)
        self.seq = 0

    async def run(self) -> None:
        """Stream until cancelled; reconnect after a second if the stream breaks."""
        while True:
            try:
                await self._stream()
            except grpc.aio.AioRpcError as exc:
                log.warning("simulated agent reconnecting", host=self.host_index,
                            code=exc.code().name)  # fmt: skip
            await asyncio.sleep(1.0)

    async def _stream(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = agent_pb2_grpc.AgentLinkStub(channel).Connect(self._messages())
            async for message in call:
                if message.HasField("command"):
                    await self._answer(message.command)

    async def _messages(self) -> AsyncIterator[agent_pb2.AgentMessage]:
        yield self.cluster.register(self.host_index)
        while True:
            yield await self.outbox.get()

    async def _answer(self, command: agent_pb2.Command) -> None:
        applied = command.set_migration_speed.bandwidth_mib_s
        self.cluster.caps[command.set_migration_speed.instance_uuid] = applied
        result = agent_pb2.CommandResult(command_id=command.id, ok=True,
                                         applied_bandwidth_mib_s=applied)  # fmt: skip
        await self.outbox.put(agent_pb2.AgentMessage(command_result=result))

    def offer_report(self) -> None:
        """Queue this step's report; a full queue (slow stream) drops it, as agents do."""
        self.seq += 1
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(self.cluster.report(self.host_index, self.seq))


async def drive(cluster: SimulatedCluster, agents: list[SimulatedAgent], real_step: float) -> None:
    """Advance the World and have every agent report, once per simulation step."""
    while True:
        cluster.advance()
        for agent in agents:
            agent.offer_report()
        await asyncio.sleep(real_step)


async def run_simulated(config: Config, options: SimOptions) -> int:
    from coordinator.service.endpoints import Readiness, start_endpoints
    from coordinator.service.main import readiness_of, start

    clock = AcceleratedClock(options.speed)
    cluster = SimulatedCluster(options.scenario, clock, options.start_hour, config)
    metrics = Metrics()
    metrics_port = 0
    readiness = Readiness()
    if config.service.metrics_listen:
        httpd = start_endpoints(config.service.metrics_listen, metrics.registry, readiness)
        metrics_port = httpd.server_port
    detacher = SimDetacher()
    detachers = {o.value: detacher for o in Orchestrator}
    running = await start(config, cluster.compute, detachers, clock, metrics=metrics)
    readiness.check = readiness_of(running)
    target = f"127.0.0.1:{running.agent_port}"
    agents = [SimulatedAgent(cluster, i, target) for i in range(len(cluster.world.hosts))]
    tasks = [asyncio.ensure_future(a.run()) for a in agents]
    tasks.append(asyncio.ensure_future(drive(cluster, agents, config.service.plan_interval_s)))
    print(
        f"LISTENING agent={running.agent_port} admin={running.admin_port} "
        f"metrics={metrics_port} "
        f"simulated hosts={len(cluster.world.hosts)} vms={len(cluster.world.vms)} "
        f"speed={options.speed:g}x",
        flush=True,
    )
    await _until_signal()
    for task in tasks:
        task.cancel()
    await running.stop()
    return 0


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` options that only make sense with --simulate."""
    group = parser.add_argument_group("simulation (with --simulate)")
    group.add_argument(
        "--simulate",
        action="store_true",
        help="run on a live simulated cluster (the reference day) instead of Nova",
    )
    group.add_argument("--scenario", type=Path, help="scenario file (default: reference day)")
    group.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    group.add_argument("--start-hour", type=float, default=11.0, help="simulated time of day")
    group.add_argument("--journal", type=Path, help="journal file (default: a temporary one)")


def serve_simulated(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.speed) and args.speed > 0):
        raise ConfigError(f"serve --speed: {args.speed} is not a positive, finite number")
    if not (math.isfinite(args.start_hour) and 0 <= args.start_hour < 24):
        raise ConfigError(f"serve --start-hour: {args.start_hour} is not an hour in [0, 24)")
    scenario = load_scenario(args.scenario) if args.scenario else reference_scenario()
    from coordinator.service.main import check_exposure, with_env_token

    base = with_env_token(load_config(args.config) if args.config else scenario.config)
    check_exposure(base)
    with tempfile.TemporaryDirectory(prefix="stealbalancer-sim-") as tmp:
        journal = args.journal or Path(tmp) / "journal.sqlite"
        config = simulated_config(base, scenario, args.speed, journal)
        options = SimOptions(scenario, args.speed, args.start_hour, journal)
        return asyncio.run(run_simulated(config, options))
