"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """CLIs under test configure structlog with the stream pytest captured for that
    test; later tests would log into a closed file. Reset after every test."""
    yield
    structlog.reset_defaults()
