"""`service.start_paused`: a fresh install moves nothing unasked, and a restart keeps
what an operator last chose (it used to pause again on every start)."""

from __future__ import annotations

from pathlib import Path

from coordinator.config import Config
from coordinator.journal import PauseState
from tests.service.harness import service, service_config
from tests.service.test_service import run, sim_nova


async def _pause_after_start(config: Config, operator: PauseState | None = None) -> PauseState:
    """Start the service on `config`'s journal, optionally record `operator`'s choice,
    stop it; then start again and return the pause state that second start leaves."""
    async with service(config, sim_nova()) as running:
        if operator is not None:
            running.coordinator.set_pause(operator)
    async with service(config, sim_nova()) as running:
        return running.coordinator.pause


def test_a_fresh_journal_starts_paused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path, service={"start_paused": True}),
                           sim_nova()) as running:  # fmt: skip
            assert running.coordinator.pause.paused
            assert running.coordinator.pause.reason == "start_paused"

    run(scenario())


def test_a_resume_survives_a_restart(tmp_path: Path) -> None:
    config = service_config(tmp_path, service={"start_paused": True})
    resumed = PauseState(False, "", "ops@laptop", 1_700_000_000.0)

    async def scenario() -> None:
        assert not (await _pause_after_start(config, resumed)).paused

    run(scenario())


def test_an_operators_pause_keeps_its_reason_across_a_restart(tmp_path: Path) -> None:
    config = service_config(tmp_path, service={"start_paused": True})
    paused = PauseState(True, "network maintenance", "ops@laptop", 1_700_000_000.0)

    async def scenario() -> None:
        assert await _pause_after_start(config, paused) == paused

    run(scenario())


def test_without_start_paused_nothing_is_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with service(service_config(tmp_path), sim_nova()) as running:
            assert running.coordinator.pause == PauseState(paused=False)

    run(scenario())
