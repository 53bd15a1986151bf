"""stealbalancer_agent_last_report_age_seconds{host}: what the agent-stale alert
(packaging/prometheus/rules.yaml) watches, for hosts that report, went silent, or
never reported at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.service.main import Running
from tests.service.harness import agents_for, report_all, service, service_config
from tests.service.test_service import run, sim_nova


def _age(running: Running, host: str) -> float | None:
    return running.coordinator.metrics.registry.get_sample_value(
        "stealbalancer_agent_last_report_age_seconds", {"host": host}
    )


def test_ages_of_reporting_silent_and_never_seen_hosts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), sim_nova()) as running:
            agents = await agents_for(running, {"host-a": "az1", "host-b": "az1"})
            await report_all(agents, rounds=2)
            await asyncio.sleep(1.5)
            await report_all({"host-a": agents["host-a"]}, rounds=1)
            fresh, silent = _age(running, "host-a"), _age(running, "host-b")
            assert fresh is not None and 0.0 <= fresh < 1.0
            assert silent is not None and silent >= 1.5
            # Nova lists host-c, whose agent never came: counted from the start.
            never = _age(running, "host-c")
            assert never is not None and never >= silent
            assert _age(running, "not-a-nova-host") is None
            rejected = running.coordinator.metrics.registry.get_sample_value(
                "stealbalancer_agent_rejected_total", {"reason": "unknown_host"}
            )
            assert rejected == 0.0, "created at zero, so a rate of it is 0 rather than absent"

    run(scenario())
