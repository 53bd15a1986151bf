"""A real coordinator service (real gRPC on loopback, the simulated Nova) run in a
background thread, so a test can drive the real `coordctl` process against it
with inventories a scenario cannot express (two VMs with one name, 50,000 VMs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from coordinator.config import Config
from coordinator.ports import Compute
from tests.ctl.coordinator_process import REPO
from tests.service.harness import service


@contextmanager
def running_service(config: Config, compute: Compute) -> Iterator[str]:
    """The admin address of the service while the block runs."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    address: list[str] = []
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            async with service(config, compute) as running:
                address.append(f"127.0.0.1:{running.admin_port}")
                started.set()
                await stop.wait()
        except BaseException as exc:  # re-raised in the test's thread below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(120)
    if not address:
        raise RuntimeError("the service did not start") from (failure[0] if failure else None)
    try:
        yield address[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def coordctl(address: str, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """The real coordctl, in its own process, against `address`."""
    env = {**os.environ, "COORDCTL_ADDRESS": address, "PYTHONPATH": str(REPO),
           "HOME": "/nonexistent", "COLUMNS": "200"}  # fmt: skip
    for name in ("COORDCTL_CONFIG", "COORDCTL_TOKEN", "COORDCTL_TOKEN_FILE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "coordinator.ctl", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """stderr of a refused command: exactly one line, no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr
