"""`coordctl watch` in a real terminal: tmux runs it, capture-pane reads the screen,
send-keys presses Ctrl-C. tmux is installed by tests/setup/10-apt.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ctl.coordinator_process import TOKEN, CoordinatorProcess

pytestmark = pytest.mark.slow
# The console script imports this checkout, whatever an editable install points at.
REPO = Path(__file__).resolve().parents[2]


def tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


@pytest.fixture
def session() -> Iterator[str]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux missing in CI: tests/setup/10-apt.sh should have installed it")
        pytest.skip("tmux is not installed (tests/setup/10-apt.sh installs it)")
    name = f"coordctl-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=10)


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, text: str, timeout_s: float = 45.0) -> str:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; screen:\n{shown}")


def test_watch_refreshes_and_quits_on_ctrl_c(
    session: str, coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    coordctl = Path(sys.executable).parent / "coordctl"
    # The shell prints coordctl's exit status after it, and stays to be read.
    command = (
        f"PYTHONPATH={REPO} COORDCTL_ADDRESS={coordinator.admin} COORDCTL_TOKEN={TOKEN} "
        f"{coordctl} watch --interval 0.3 --limit 5; echo EXITED=$?; sleep 60"
    )
    tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "45",
         "-e", "TERM=xterm-256color", command)  # fmt: skip
    first = wait_for(session, "cluster steal")
    for expected in ("4 total", "12 total", "VMs", "running migrations", "PAUSED"):
        assert expected in first
    # It redraws in place: the snapshot time moves on, and the view is drawn once.
    stamp = next(line for line in first.splitlines() if line.startswith("snapshot"))
    deadline = time.monotonic() + 45
    while stamp in screen(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    later = screen(session)
    assert stamp not in later, "the view did not refresh"
    assert later.count("cluster steal") == 1, "watch must redraw in place, not scroll"
    tmux("send-keys", "-t", session, "C-c")
    wait_for(session, "EXITED=0")
