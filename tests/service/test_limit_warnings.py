"""`serve` warns at start-up about limits that let only one or two migrations run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from coordinator.adapters.sim.compute import SimCompute
from tests.service.harness import service, service_config


def _warnings(
    tmp_path: Path, limits: dict[str, float], event: str = "limits too tight", **sections: Any
) -> list[str]:
    config = service_config(tmp_path, limits=limits, **sections)

    async def start_and_stop() -> None:
        async with service(config, SimCompute(clock=time.time)):
            pass

    with capture_logs() as logs:
        asyncio.run(asyncio.wait_for(start_and_stop(), 60))
    return [e["problem"] for e in logs if e["event"] == event]


def test_two_migrations_at_most_is_warned(tmp_path: Path) -> None:
    problems = _warnings(
        tmp_path, {"bandwidth_budget_mib_s": 2000.0, "max_bandwidth_per_migration_mib_s": 1000.0}
    )
    assert len(problems) == 1
    assert "at most 2 migration(s) can ever run at once" in problems[0]


def test_the_defaults_start_quietly(tmp_path: Path) -> None:
    assert _warnings(tmp_path, {}) == []


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        pytest.param({"max_per_source": 0}, "limits.max_per_source is 0", id="per-source"),
        pytest.param({"max_per_target": 0}, "limits.max_per_target is 0", id="per-target"),
        pytest.param({"max_per_hour": 0}, "limits.max_per_hour is 0", id="per-hour"),
    ],
)
def test_a_zero_cap_that_forbids_every_move_is_warned(
    tmp_path: Path, limits: dict[str, float], problem: str
) -> None:
    assert any(problem in p for p in _warnings(tmp_path, limits))


@pytest.mark.parametrize("threshold", ["steal_threshold", "clog_threshold"])
def test_a_threshold_no_vm_can_exceed_is_warned(tmp_path: Path, threshold: str) -> None:
    problems = _warnings(tmp_path, {}, "detection impossible", policy={threshold: 1.0})
    assert problems == [f"policy.{threshold} is 1: no VM can be above it, so none is ever detected"]
