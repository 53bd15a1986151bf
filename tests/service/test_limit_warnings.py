"""`serve` warns at start-up about limits that let only one or two migrations run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from structlog.testing import capture_logs

from coordinator.adapters.sim.compute import SimCompute
from tests.service.harness import service, service_config


def _warnings(tmp_path: Path, limits: dict[str, float]) -> list[str]:
    async def start_and_stop() -> None:
        async with service(service_config(tmp_path, limits=limits), SimCompute(clock=time.time)):
            pass

    with capture_logs() as logs:
        asyncio.run(asyncio.wait_for(start_and_stop(), 60))
    return [e["problem"] for e in logs if e["event"] == "limits too tight"]


def test_two_migrations_at_most_is_warned(tmp_path: Path) -> None:
    problems = _warnings(
        tmp_path, {"bandwidth_budget_mib_s": 2000.0, "max_bandwidth_per_migration_mib_s": 1000.0}
    )
    assert len(problems) == 1
    assert "at most 2 migration(s) can ever run at once" in problems[0]


def test_the_defaults_start_quietly(tmp_path: Path) -> None:
    assert _warnings(tmp_path, {}) == []
