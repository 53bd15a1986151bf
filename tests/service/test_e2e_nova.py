"""End to end on the real Nova: agents over real gRPC → detection → cap → live migration
→ verification → outcome; and a SIGKILL mid-migration followed by a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from coordinator.adapters.nova import NovaCompute
from coordinator.controller import CRASH_ENV, NOVA_CALLED
from coordinator.journal import SqliteJournal as Journal
from coordinator.journal import State
from coordinator.model import GroupPolicy
from coordinator.policy import is_contended
from coordinator.service.core import Coordinator
from tests.detach.conftest import CONSUL_TOKEN, agent_ref
from tests.doubles.consul_agent import ConsulCluster
from tests.service.cloud import HOSTS, NovaCloud, NovaProcess
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import service, service_config, started, until, until_over

pytestmark = [pytest.mark.nova, pytest.mark.slow]


def sync_agents(agents: Mapping[str, FakeAgent], compute: NovaCompute, mine: set[str],
                hot: str) -> None:  # fmt: skip
    """Each agent reports the test's VMs Nova has ACTIVE on its host."""
    where = {
        s.uuid: s.host for s in compute.list_servers() if s.uuid in mine and s.status == "ACTIVE"
    }
    for host, agent in agents.items():
        for uuid in list(agent.vms):
            if where.get(uuid) != host:
                del agent.vms[uuid]
        for uuid, at in where.items():
            if at == host and uuid not in agent.vms:
                # Steal only where the hot VM started: it is relieved once it moves.
                steal = 0.4 if uuid == hot and host == "host-a" else 0.0
                agent.vms[uuid] = FakeVm(uuid, steal=steal, busy=0.5, domain_id=hash(host) % 1000)


async def feed(agents: Mapping[str, FakeAgent], compute: NovaCompute, mine: set[str], hot: str,
               stop: asyncio.Event) -> None:  # fmt: skip
    while not stop.is_set():
        await asyncio.to_thread(sync_agents, agents, compute, mine, hot)
        for agent in agents.values():
            await agent.report(1.0)
        await asyncio.sleep(0.3)


def test_contended_vm_moves_to_the_right_host_respecting_anti_affinity(
    nova_cloud: NovaCloud, tmp_path: Path
) -> None:
    group = nova_cloud.make_group(GroupPolicy.ANTI_AFFINITY)
    hot = nova_cloud.boot("host-a", metadata={"role": "web"}, group=group)
    peer = nova_cloud.boot("host-b", metadata={"role": "web"}, group=group)
    calm = nova_cloud.boot("host-d", metadata={"role": "web"})
    mine = {hot, peer, calm}
    compute = NovaCompute(nova_cloud.conn)

    async def scenario() -> None:
        async with service(service_config(tmp_path), compute) as running:
            c = running.coordinator
            agents = {
                h: FakeAgent(f"127.0.0.1:{running.agent_port}", h, az) for h, az in HOSTS.items()
            }
            for agent in agents.values():
                await agent.connect()
            stop = asyncio.Event()
            feeder = asyncio.ensure_future(feed(agents, compute, mine, hot, stop))
            # A few reports make contention sustained; under load they take longer.
            await until(lambda: _contended(c, hot), timeout_s=60)
            (record,) = await started(running)
            assert (record.vm_uuid, record.source, record.target) == (hot, "host-a", "host-c")
            await until_over(running, record.id, timeout_s=90)
            stop.set()
            await feeder
            final = c.journal.get(record.id)
            assert final is not None and final.state is State.DONE, final
            assert agents["host-a"].caps == [(hot, int(record.bandwidth_mib_s))]
            assert record.bandwidth_mib_s <= c.config.limits.bandwidth_budget_mib_s
            for agent in agents.values():
                await agent.close()

    asyncio.run(asyncio.wait_for(scenario(), 150))
    assert compute.get_server(hot).host == "host-c"
    assert [(m.status, m.dest) for m in compute.list_migrations(hot)] == [("completed", "host-c")]


def _contended(coordinator: Coordinator, uuid: str) -> bool:
    vm = coordinator.snapshot().vms.get(uuid)
    return vm is not None and is_contended(vm, coordinator.config.policy)


# -- crash safety ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_coordinator(config: Path, crash_at: str | None, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--config",
                                 str(config)], stdout=out, stderr=out, env=env)  # fmt: skip


async def connect_all(port: int, agents: dict[str, FakeAgent], deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    for host, agent in agents.items():
        while True:
            try:
                await agent.connect(timeout_s=2)
                break
            except Exception:
                await agent.close()
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.3)
        agents[host] = agent


def test_sigkill_mid_migration_then_restart_finishes_once(
    nova_process: NovaProcess, nova_cloud: NovaCloud, tmp_path: Path
) -> None:
    hot = nova_cloud.boot("host-b", metadata={"role": "batch"})
    compute = NovaCompute(nova_cloud.conn)
    agent_port, admin_port, metrics_port = free_port(), free_port(), free_port()
    journal_path = tmp_path / "journal.sqlite"
    config = tmp_path / "coordinator.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"agent_listen": f"127.0.0.1:{agent_port}",
                    "admin_listen": f"127.0.0.1:{admin_port}",
                    "metrics_listen": f"127.0.0.1:{metrics_port}",
                    "journal_path": str(journal_path), "plan_interval_s": 0.5,
                    "inventory_interval_s": 1.0},
        "workflow": {"poll_s": 0.3, "verify_timeout_s": 20},
        "policy": {"sustained_s": 1.5},
        "nova": {"compute_endpoint_override": nova_process.endpoint},
    }))  # fmt: skip
    log = tmp_path / "coordinator.log"
    mine = {hot}

    def hot_on_b(agents: Mapping[str, FakeAgent]) -> None:
        sync_agents(agents, compute, mine, hot="")
        if hot in agents["host-b"].vms:
            agents["host-b"].vms[hot].steal = 0.4

    async def run_until(proc: subprocess.Popen[bytes], done: object) -> None:
        agents = {h: FakeAgent(f"127.0.0.1:{agent_port}", h, az) for h, az in HOSTS.items()}
        await connect_all(agent_port, agents)
        try:
            end = time.monotonic() + 120
            while not done() and time.monotonic() < end:  # type: ignore[operator]  # a predicate
                await asyncio.to_thread(hot_on_b, agents)
                for agent in agents.values():
                    await agent.report(1.0)
                await asyncio.sleep(0.3)
        finally:
            for agent in agents.values():
                await agent.close()

    first = start_coordinator(config, NOVA_CALLED, log)
    try:
        asyncio.run(run_until(first, lambda: first.poll() is not None))
        assert first.wait(timeout=30) == -signal.SIGKILL, log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    (open_record,) = Journal(journal_path).open_migrations()
    assert open_record.state is State.MIGRATING and open_record.vm_uuid == hot

    second = start_coordinator(config, None, log)
    try:

        def finished() -> bool:
            record = Journal(journal_path).get(open_record.id)
            return record is not None and record.state.terminal

        asyncio.run(run_until(second, finished))
        record = Journal(journal_path).get(open_record.id)
        assert record is not None and record.state is State.DONE, (record, log.read_text()[-3000:])
        assert len(Journal(journal_path).history()) == 1  # no second migration planned
        transitions = [s for _, s, _ in Journal(journal_path).transitions(record.id)]
        assert transitions[-3:] == [State.VERIFYING, State.REATTACHING, State.DONE]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            exposition = r.read().decode()
        assert 'stealbalancer_migrations_total{state="DONE"} 1.0' in exposition
        assert "stealbalancer_agent_reports_total" in exposition
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
    nova_moves = compute.list_migrations(hot)
    assert len(nova_moves) == 1 and nova_moves[0].status == "completed", nova_moves
    assert compute.get_server(hot).host == record.target


def test_sigkill_while_a_reattach_keeps_failing_then_the_restart_reattaches(
    nova_process: NovaProcess, nova_cloud: NovaCloud, tmp_path: Path
) -> None:
    """The VM moved, but its Consul agent refuses to end maintenance (500): the real
    `serve` retries with backoff, never closes the migration, and is SIGKILLed there.
    The next process finds it open in REATTACHING and puts the VM back once Consul can."""
    consul = ConsulCluster(token=CONSUL_TOKEN, failing_maintenance_off=True)
    consul.add_node("svc-vm", {"web": 8080})
    with consul.serve_agent("svc-vm") as agent_url:
        hot = nova_cloud.boot("host-b", metadata={"role": "batch",
                              "stealbalancer.orchestrator": "consul",
                              "stealbalancer.orchestrator_ref": agent_ref(agent_url)},
                              network=True)  # fmt: skip
        compute = NovaCompute(nova_cloud.conn)
        # The agent runs in the VM: it advertises the address Nova gave it.
        consul.nodes["svc-vm"].address = compute.get_server(hot).addresses[0]
        agent_port, admin_port = free_port(), free_port()
        journal_path = tmp_path / "journal.sqlite"
        config = tmp_path / "coordinator.yaml"
        config.write_text(yaml.safe_dump({
            "service": {"agent_listen": f"127.0.0.1:{agent_port}",
                        "admin_listen": f"127.0.0.1:{admin_port}", "metrics_listen": "",
                        "journal_path": str(journal_path), "plan_interval_s": 0.5,
                        "inventory_interval_s": 1.0},
            "workflow": {"poll_s": 0.3, "verify_timeout_s": 20, "retry_base_s": 0.5,
                         "retry_max_s": 1.0},
            "policy": {"sustained_s": 1.5},
            "consul": {"token": CONSUL_TOKEN, "verify_timeout_s": 5},
            "nova": {"compute_endpoint_override": nova_process.endpoint},
        }))  # fmt: skip
        log = tmp_path / "coordinator.log"

        def reattach_failing() -> bool:
            open_ = Journal(journal_path).open_migrations()
            return bool(open_) and open_[0].state is State.REATTACHING and open_[0].attempts >= 2

        first = start_coordinator(config, None, log)
        try:
            asyncio.run(_report_hot(agent_port, compute, hot, reattach_failing))
            assert reattach_failing(), log.read_text()[-3000:]
        finally:
            first.kill()
            first.wait()
        assert consul.in_maintenance("svc-vm"), "killed while the VM is still detached"
        (open_record,) = Journal(journal_path).open_migrations()

        consul.failing_maintenance_off = False
        second = start_coordinator(config, None, log)
        try:

            def finished() -> bool:
                record = Journal(journal_path).get(open_record.id)
                return record is not None and record.state.terminal

            asyncio.run(_report_hot(agent_port, compute, hot, finished))
            record = Journal(journal_path).get(open_record.id)
            assert record is not None and record.state is State.DONE, log.read_text()[-3000:]
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=20)
        assert not consul.in_maintenance("svc-vm")
    assert len(Journal(journal_path).history()) == 1
    assert len(compute.list_migrations(hot)) == 1


async def _report_hot(agent_port: int, compute: NovaCompute, hot: str, done: object) -> None:
    """Agents that follow Nova; the VM suffers steal on host-b only."""
    agents = {h: FakeAgent(f"127.0.0.1:{agent_port}", h, az) for h, az in HOSTS.items()}
    await connect_all(agent_port, agents)
    try:
        end = time.monotonic() + 120
        while not done() and time.monotonic() < end:  # type: ignore[operator]  # a predicate
            await asyncio.to_thread(sync_agents, agents, compute, {hot}, "")
            if hot in agents["host-b"].vms:
                agents["host-b"].vms[hot].steal = 0.4
            for agent in agents.values():
                await agent.report(1.0)
            await asyncio.sleep(0.3)
    finally:
        for agent in agents.values():
            await agent.close()
