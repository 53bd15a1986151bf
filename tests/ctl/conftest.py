from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ctl.coordinator_process import CoordinatorProcess, start_coordinator


@pytest.fixture(scope="package")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    """One simulated coordinator for the whole package (starting one costs ~2 s)."""
    process = start_coordinator(tmp_path_factory.mktemp("coordinator"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def ctl_env(monkeypatch: pytest.MonkeyPatch, coordinator: CoordinatorProcess) -> Path:
    """coordctl's environment pointing at the test coordinator, with its token."""
    from tests.ctl.coordinator_process import TOKEN

    monkeypatch.setenv("COORDCTL_ADDRESS", coordinator.admin)
    monkeypatch.setenv("COORDCTL_TOKEN", TOKEN)
    monkeypatch.delenv("COORDCTL_CONFIG", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no user config file leaks in
    return coordinator.log
