"""Tiny scenarios for simulator tests: seconds, not minutes."""

from __future__ import annotations

import copy
from typing import Any

from coordinator.sim.scenario import Scenario

TINY: dict[str, Any] = {
    "seed": 3,
    "duration_h": 2.0,
    "step_s": 60.0,
    "hosts": [{"prefix": "hv", "count": 4, "az": "az1", "pcpus": 8, "ram_gib": 64}],
    "roles": {"web": {"base": 0.3, "peaks": [{"hour": 1.0, "width_h": 0.5, "height": 0.7}]}},
    "vms": [
        {
            "prefix": "web",
            "count": 24,
            "role": "web",
            "vcpus": [2, 4],
            "ram_gib": [4],
            "intensity": {"min": 0.6, "max": 0.9},
        }
    ],
}


def tiny_data(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(TINY)
    data.update(overrides)
    return data


def tiny(**overrides: Any) -> Scenario:
    return Scenario.model_validate(tiny_data(**overrides))


def busy_two_az(**overrides: Any) -> Scenario:
    """Two AZs, two services peaking apart (web twice), short cooldowns and flaky
    migrations: four hours see every outcome and VMs moved more than once."""
    data = tiny_data(
        duration_h=4.0,
        hosts=[
            {"prefix": "a", "count": 4, "az": "az1", "pcpus": 8, "ram_gib": 64},
            {"prefix": "b", "count": 4, "az": "az2", "pcpus": 8, "ram_gib": 64},
        ],
        roles={
            "web": {
                "base": 0.2,
                "peaks": [
                    {"hour": 1.0, "width_h": 0.5, "height": 0.8},
                    {"hour": 3.3, "width_h": 0.4, "height": 0.8},
                ],
            },
            "api": {"base": 0.2, "peaks": [{"hour": 2.2, "width_h": 0.5, "height": 0.8}]},
        },
        config={
            "policy": {"cooldown_s": 300, "quarantine_s": 450, "verify_window_s": 300},
            "limits": {"bandwidth_budget_mib_s": 600, "max_bandwidth_per_migration_mib_s": 250},
        },
        migration_failure_probability=0.2,
    )
    web = data["vms"][0]
    data["vms"] = [web, {**web, "prefix": "api", "role": "api"}]
    data.update(overrides)
    return Scenario.model_validate(data)
