"""Tenant- and agent-chosen text shown literally by every coordctl command.

A real coordinator (`serve --simulate`) runs tests/ctl/hostile_scenario.yaml, whose
VM names and roles carry unbalanced rich markup and terminal escape
sequences; the real `coordctl` runs in its own process, its stdout a pipe like a
script's. Nothing may crash, no control character may reach the output, and the
markup must be shown as typed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.ctl.connection import Exit
from tests.ctl.coordinator_process import (
    HERE,
    REPO,
    TOKEN,
    CoordinatorProcess,
    start_coordinator_with,
)
from tests.polling import eventually

HOT_PREFIX = "[/bold]x\x1b[31m"
ROLE = "[/]role\x1b]0;pwned\x07"
# What must never reach the operator's terminal raw.
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    directory = tmp_path_factory.mktemp("hostile")
    process = start_coordinator_with(directory, HERE / "hostile_scenario.yaml", speed=20.0)
    try:
        yield process
    finally:
        process.stop()


def coordctl(coordinator: CoordinatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COORDCTL_ADDRESS": coordinator.admin, "COORDCTL_TOKEN": TOKEN,
           "PYTHONPATH": str(REPO), "HOME": "/nonexistent", "COLUMNS": "300"}  # fmt: skip
    env.pop("COORDCTL_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "coordinator.ctl", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def shown_safely(done: subprocess.CompletedProcess[str]) -> str:
    """stdout, after checking the command succeeded and printed no raw control text."""
    assert done.returncode == Exit.OK, done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    for control in CONTROLS:
        assert control not in done.stdout + done.stderr, (control, done.stdout)
    return done.stdout


def as_json(coordinator: CoordinatorProcess, *args: str) -> dict[str, Any]:
    done = coordctl(coordinator, "--json", *args)
    assert done.returncode == Exit.OK, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_tables_show_names_and_roles_as_typed(hostile: CoordinatorProcess) -> None:
    vms = eventually(lambda: as_json(hostile, "vms")["vms"], what="inventory")
    assert any(v["name"].startswith(HOT_PREFIX) for v in vms)  # JSON keeps the exact text
    assert any(v["role"] == ROLE for v in vms)
    out = shown_safely(coordctl(hostile, "vms"))
    assert "[/bold]x\\x1b[31m-0000" in out and "[/]role\\x1b]0;pwned\\x07" in out
    assert "q\\x9b2J\\u202e-0000" in out and "idle[bold" in out
    hosts = shown_safely(coordctl(hostile, "hosts"))
    assert "hv-000" in hosts
    assert "idle[bold" in shown_safely(coordctl(hostile, "vms", "--role", "idle[bold"))


def test_plan_explain_status_and_watch(hostile: CoordinatorProcess) -> None:
    eventually(lambda: as_json(hostile, "plan")["moves"], what="a planned move")
    plan = shown_safely(coordctl(hostile, "plan"))
    assert "[/bold]x\\x1b[31m-00" in plan and "hv-000" in plan
    explained = shown_safely(coordctl(hostile, "explain", f"{HOT_PREFIX}-0000"))
    assert "[/bold]x\\x1b[31m-0000" in explained
    try:
        paused = coordctl(hostile, "pause", "--reason", "[/]freeze\x1b]2;title\x07")
        assert paused.returncode == Exit.OK, paused.stderr
        status = shown_safely(coordctl(hostile, "status"))
        assert "[/]freeze\\x1b]2;title\\x07" in status
    finally:
        coordctl(hostile, "pause", "--reason", "tests")
    watched = shown_safely(coordctl(hostile, "watch", "--count", "2", "--interval", "0.2"))
    assert "[/bold]x\\x1b[31m-00" in watched


def test_migrations_and_errors_escape_what_the_server_echoes(hostile: CoordinatorProcess) -> None:
    vm = next(v for v in as_json(hostile, "vms")["vms"] if v["name"] == f"{HOT_PREFIX}-0001")
    started = coordctl(hostile, "migrate", vm["uuid"], "--to", "hv-002", "--force")
    shown_safely(started)
    out = shown_safely(coordctl(hostile, "migrations"))
    assert "[/bold]x\\x1b[31m-0001" in out and "hv-000 → hv-002" in out
    unknown = coordctl(hostile, "explain", "[/]nope\x1b[2J")
    assert unknown.returncode == Exit.USAGE
    assert "\x1b" not in unknown.stderr and "\\x1b[2J" in unknown.stderr
