"""Waiting, bounded, for something a real process or server does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def eventually(
    check: Callable[[], Any], timeout_s: float = 30.0, what: str = "", step_s: float = 0.3
) -> Any:
    """Poll `check` until it returns something truthy, and return that (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out waiting for {what or check}")
