"""A real coordinator process (`stealbalancer-coordinator serve --simulate`) on
loopback ephemeral ports, for coordctl's tests and the dashboard's metric check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]  # imported by the subprocess, whatever `pip -e` points at
TOKEN = "test-admin-token"
_LISTENING = re.compile(r"LISTENING agent=(\d+) admin=(\d+) metrics=(\d+)")


@dataclass
class CoordinatorProcess:
    process: subprocess.Popen[str]
    admin: str
    metrics: str
    log: Path
    agent: str = ""  # the AgentLink endpoint real agents connect to

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def write_config(directory: Path, extra: str = "", paused: bool = True) -> Path:
    path = directory / "coordinator.yaml"
    path.write_text(
        f"""\
service:
  agent_listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
  admin_token: {TOKEN}
  start_paused: {"true" if paused else "false"}
# Generous in simulated time (x20 = real seconds): a busy 2-core CI machine can
# stall the process for seconds, and these tests check coordctl, not timeouts.
policy:
  freshness_s: 300
workflow:
  verify_timeout_s: 600
{extra}""",
        encoding="utf-8",
    )
    return path


def start_coordinator(directory: Path, speed: float = 20.0) -> CoordinatorProcess:
    """The test cluster (scenario.yaml), started paused."""
    return start_coordinator_with(directory, HERE / "scenario.yaml", speed)


def start_coordinator_with(
    directory: Path, scenario: Path | None, speed: float, paused: bool = True
) -> CoordinatorProcess:
    """Start one (scenario None = the reference day) and wait, bounded, for its
    LISTENING line; its output goes to a file."""
    config = write_config(directory, paused=paused)
    log = directory / "coordinator.log"
    command = [
        sys.executable, "-m", "coordinator.cli", "serve", "--simulate",
        "--config", str(config), "--speed", str(speed), "--start-hour", "12",
        "--journal", str(directory / "j.sqlite"),
    ]  # fmt: skip
    if scenario is not None:
        command += ["--scenario", str(scenario)]
    # stdout (structlog's lines too) goes to the file, so no pipe can fill and block it.
    with log.open("w") as sink:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            return CoordinatorProcess(
                process, f"127.0.0.1:{match[2]}", f"127.0.0.1:{match[3]}", log,
                agent=f"127.0.0.1:{match[1]}",
            )  # fmt: skip
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=5)
    raise RuntimeError(f"coordinator did not start:\n{log.read_text()[-2000:]}")
