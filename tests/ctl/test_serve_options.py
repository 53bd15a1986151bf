"""The `serve` options added for operators: the token from the environment and the
accelerated-time adaptation of `serve --simulate`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.config import Config
from coordinator.service.main import with_env_token
from coordinator.service.simulated import AcceleratedClock, simulated_config
from coordinator.sim.scenario import reference_scenario


@pytest.mark.parametrize(
    ("env", "configured", "expected"),
    [
        pytest.param("from-secret", "", "from-secret", id="env-sets"),
        pytest.param("from-secret", "in-file", "from-secret", id="env-wins"),
        pytest.param(None, "in-file", "in-file", id="file-when-no-env"),
    ],
)
def test_admin_token_from_environment(
    monkeypatch: pytest.MonkeyPatch, env: str | None, configured: str, expected: str
) -> None:
    if env is None:
        monkeypatch.delenv("STEALBALANCER_ADMIN_TOKEN", raising=False)
    else:
        monkeypatch.setenv("STEALBALANCER_ADMIN_TOKEN", env)
    config = Config.model_validate({"service": {"admin_token": configured}})
    result = with_env_token(config)
    assert result.service.admin_token == expected
    assert result.policy == config.policy


@pytest.mark.parametrize("speed", [1.0, 20.0, 600.0])
def test_simulated_config_keeps_telemetry_fresh(speed: float) -> None:
    scenario = reference_scenario()
    config = simulated_config(Config(), scenario, speed, journal=Path("j"))
    service = config.service
    assert service.agent_interval_s == scenario.step_s
    assert config.policy.freshness_s >= 3 * service.agent_interval_s
    assert config.workflow.verify_timeout_s >= 3 * service.agent_interval_s
    assert service.plan_interval_s == pytest.approx(max(scenario.step_s / speed, 0.2))
    assert service.tls is None and service.journal_path == "j"


def test_accelerated_clock_runs_faster() -> None:
    clock = AcceleratedClock(speed=100.0, start_unix=1000.0)
    time.sleep(0.05)
    assert 1004.0 <= clock.now() <= 1100.0
    assert clock.elapsed() == pytest.approx(clock.now() - 1000.0, abs=1.0)


def test_serve_needs_a_config_unless_simulated() -> None:
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "serve"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "--config FILE is required" in done.stderr
