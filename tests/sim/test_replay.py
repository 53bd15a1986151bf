"""`simulate --replay`: reports recorded by a real `serve --simulate` coordinator,
replayed through the policy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.cli import EXIT_BAD_INPUT, main
from coordinator.config import Config
from coordinator.service.recorder import read_recording
from coordinator.sim.replay import replay

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "ctl" / "scenario.yaml"  # one hot host, three quiet ones
REPORTS = 40


def _record(directory: Path) -> Path:
    """Run a paused coordinator on the simulated cluster until it recorded REPORTS."""
    recording = directory / "reports.jsonl"
    config = directory / "coordinator.yaml"
    config.write_text(
        "service:\n"
        "  agent_listen: 127.0.0.1:0\n"
        "  admin_listen: 127.0.0.1:0\n"
        "  metrics_listen: ''\n"
        "  start_paused: true\n"
        f"  record_reports: {recording}\n"
    )
    command = [
        sys.executable, "-m", "coordinator.cli", "serve", "--simulate", "--config", str(config),
        "--scenario", str(SCENARIO), "--speed", "100", "--journal", str(directory / "j.sqlite"),
    ]  # fmt: skip
    log = directory / "coordinator.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    try:
        deadline = time.monotonic() + 90
        while _lines(recording) < REPORTS:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"no recording:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return recording


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("replay"))


def test_the_recording_holds_what_the_coordinator_ingested(recording: Path) -> None:
    reports = read_recording(recording).reports
    assert len(reports) >= REPORTS
    assert {r.host for r in reports} == {f"az1-hv-{i:03d}" for i in range(4)}
    assert {r.az for r in reports} == {"az1"}
    assert all(r.pcpus == 8 for r in reports)
    assert sum(len(r.report.vms) for r in reports if r.host == "az1-hv-000") > 0


def test_replay_says_what_the_policy_would_have_moved(recording: Path) -> None:
    result = replay(recording, Config())
    assert result.hosts == 4 and result.vms == 12
    assert result.pain_vm_intervals > 0  # the hot host's six VMs share 8 pCPUs
    assert result.first_moves
    for _, move in result.first_moves.values():
        assert move.source == "az1-hv-000"
        assert move.vm_name.startswith("hot-")
    assert not replay(recording, Config(), "none").first_moves


def test_simulate_replay_prints_the_moves(
    recording: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--replay", str(recording), "--policy", "naive"]) == 0
    printed = capsys.readouterr().out
    assert "VMs naive would have moved" in printed
    assert "az1-hv-000" in printed


def test_a_broken_recording_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at": 1}\n')
    assert main(["simulate", "--replay", str(bad)]) == EXIT_BAD_INPUT
    assert "bad.jsonl:1: not a recorded report" in capsys.readouterr().err


def test_a_torn_line_is_skipped_and_said(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torn = tmp_path / "torn.jsonl"
    text = recording.read_text(encoding="utf-8")
    torn.write_text(text + text[:100] + "\n" + text, encoding="utf-8")
    assert main(["simulate", "--replay", str(torn)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"1 unreadable line(s) of {torn} skipped (line {_lines(recording) + 1})" in printed
