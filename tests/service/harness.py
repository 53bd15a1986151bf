"""Start a real coordinator service (real gRPC on loopback) for a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from coordinator.api.v1 import admin_pb2_grpc
from coordinator.config import Config
from coordinator.controller import Clock
from coordinator.journal import MigrationRecord
from coordinator.ports import Compute, Detacher
from coordinator.service.main import Running, start
from tests.service.fake_agent import FakeAgent


def service_config(tmp_path: Path, **sections: Mapping[str, Any]) -> Config:
    data: dict[str, Any] = {
        "service": {
            "agent_listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "metrics_listen": "",
            "journal_path": str(tmp_path / "journal.sqlite"),
            "plan_interval_s": 3600,  # tests call tick() themselves unless they say otherwise
            "inventory_interval_s": 3600,
            "register_timeout_s": 1.0,
            "plan_on_contention": False,
        },
        "workflow": {"poll_s": 0.2, "verify_timeout_s": 20},
        "policy": {"sustained_s": 15.0, "cooldown_s": 3600},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Config.model_validate(data)


@asynccontextmanager
async def service(
    config: Config,
    compute: Compute,
    detachers: Mapping[str, Detacher] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Running]:
    running = await start(config, compute, detachers, clock)
    try:
        yield running
    finally:
        await running.stop()
        running.coordinator.journal.close()


def admin(running: Running) -> tuple[grpc.aio.Channel, admin_pb2_grpc.AdminStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.admin_port}")
    return channel, admin_pb2_grpc.AdminStub(channel)


async def agents_for(running: Running, hosts: Mapping[str, str]) -> dict[str, FakeAgent]:
    agents = {h: FakeAgent(f"127.0.0.1:{running.agent_port}", h, az) for h, az in hosts.items()}
    for agent in agents.values():
        await agent.connect()
    return agents


async def report_all(agents: Mapping[str, FakeAgent], rounds: int, dt_s: float = 10.0) -> None:
    for _ in range(rounds):
        for agent in agents.values():
            await agent.report(dt_s)
        await asyncio.sleep(0.05)


async def until(predicate: Any, timeout_s: float = 30.0, step_s: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step_s)


async def until_over(running: Running, migration_id: str, timeout_s: float = 30.0) -> None:
    """Wait while the service's own loop follows the migration to its end."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        record = running.coordinator.journal.get(migration_id)
        if record is not None and record.state.terminal:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"migration {migration_id} still open after {timeout_s}s")


async def started(running: Running) -> tuple[MigrationRecord, ...]:
    """One planning tick; the migrations it started."""
    tick = await running.coordinator.tick()
    assert tick is not None, "the service has no inventory yet"
    return tick.started
