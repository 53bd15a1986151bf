"""`service.record_reports` when its disk fails: the coordinator goes on, the recording
ends, and an operator hears of it once (not once per report) and from a gauge an alert
watches."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from coordinator.api.v1 import agent_pb2
from coordinator.rpc import Registration
from coordinator.service.main import Running
from coordinator.service.recorder import ReportRecorder, read_recording
from tests.service.fake_agent import FakeVm
from tests.service.harness import agents_for, report_all, service, service_config, until
from tests.service.test_service import sim_nova

REG = Registration("hv-1", "az1", 8, 65536, "test", 10, "boot")
FULL = Path("/dev/full")  # opens for append; every write fails with ENOSPC


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
def test_a_failed_write_ends_the_recording_with_one_warning() -> None:
    recorder = ReportRecorder(FULL)
    with capture_logs() as logs:
        for at in range(3):
            recorder.record(float(at), REG, agent_pb2.HostReport())
    recorder.close()
    assert recorder.failed
    (warning,) = [e for e in logs if e["event"] == "report recording stopped: a write failed"]
    assert warning["log_level"] == "warning" and warning["path"] == str(FULL)
    assert warning["error"]


def test_a_working_recording_is_quiet(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    recorder = ReportRecorder(path)
    with capture_logs() as logs:
        recorder.record(1.0, REG, agent_pb2.HostReport())
    recorder.close()
    assert not recorder.failed and logs == []
    assert [r.host for r in read_recording(path).reports] == ["hv-1"]


def _recording_failed(running: Running) -> float | None:
    registry = running.coordinator.metrics.registry
    return registry.get_sample_value("stealbalancer_report_recording_failed")


@pytest.mark.parametrize(
    ("record_to", "failed"),
    [
        pytest.param(str(FULL), 1.0, id="disk-full", marks=pytest.mark.skipif(
            not FULL.exists(), reason="needs /dev/full")),
        pytest.param("reports.jsonl", 0.0, id="recording"),
        pytest.param("", 0.0, id="off"),
    ],
)  # fmt: skip
def test_a_stopped_recording_shows_on_the_metrics_port(
    tmp_path: Path, record_to: str, failed: float
) -> None:
    """One log line is easy to miss: the gauge an alert watches says it until a restart."""
    path = str(tmp_path / record_to) if record_to and not record_to.startswith("/") else record_to
    config = service_config(tmp_path, service={"record_reports": path})

    async def scenario() -> None:
        async with service(config, sim_nova()) as running:
            assert _recording_failed(running) == 0.0
            agents = await agents_for(running, {"host-a": "az1"})
            agents["host-a"].vms["vm-a"] = FakeVm("vm-a")
            await report_all(agents, rounds=2)
            hub = running.coordinator.agents
            await until(lambda: hub.host_telemetry("host-a") is not None, timeout_s=10)
            assert _recording_failed(running) == failed
            await agents["host-a"].close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_recording_torn_by_a_crash_keeps_every_whole_report(tmp_path: Path) -> None:
    """A coordinator killed mid-write leaves half a line; the next run's recorder ends
    it before appending, so only the torn record is lost and replay reads the rest."""
    path = tmp_path / "reports.jsonl"
    recorder = ReportRecorder(path)
    recorder.record(1.0, REG, agent_pb2.HostReport())
    recorder.close()
    whole = path.read_text(encoding="utf-8")
    path.write_text(whole + whole[: len(whole) // 2], encoding="utf-8")  # killed mid-line
    recorder = ReportRecorder(path)
    recorder.record(3.0, REG, agent_pb2.HostReport())
    recorder.close()
    read = read_recording(path)
    assert [r.at for r in read.reports] == [1.0, 3.0]
    assert read.unreadable == (2,)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param('{"at": 1', id="torn-json"),
        pytest.param(
            '{"at": 1, "host": "h", "az": "a", "pcpus": 1, "memory_mib": 1, "report": "////"}',
            id="not-a-protobuf",
        ),
        pytest.param("\udcff garbage", id="not-utf8"),
    ],
)
def test_an_unreadable_line_is_skipped_and_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "reports.jsonl"
    recorder = ReportRecorder(path)
    recorder.record(1.0, REG, agent_pb2.HostReport())
    recorder.close()
    with path.open("ab") as raw:
        raw.write(line.encode("utf-8", "surrogateescape") + b"\n")
    read = read_recording(path)
    assert len(read.reports) == 1 and read.unreadable == (2,)


def test_a_file_with_no_report_is_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notes\.txt:1: not a recorded report"):
        read_recording(path)


def test_a_recording_to_a_pipe_starts(tmp_path: Path) -> None:
    """A FIFO (or /dev/stdout under systemd) has no last line to mend: not a crash."""
    fifo = tmp_path / "reports.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    recorder = ReportRecorder(fifo)
    recorder.record(1.0, REG, agent_pb2.HostReport())
    recorder.close()
    reader.join(timeout=10)
    assert not recorder.failed and b'"host": "hv-1"' in received[0]


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")
def test_mending_a_torn_line_on_a_full_disk_ends_the_recording_not_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The newline that ends a torn line is a write like any other: a full disk stops
    the recording (said once) and never the coordinator's start."""
    monkeypatch.setattr("coordinator.service.recorder._ends_torn", lambda path: True)
    with capture_logs() as logs:
        recorder = ReportRecorder(FULL)
        recorder.record(1.0, REG, agent_pb2.HostReport())
    assert recorder.failed
    assert [e["event"] for e in logs] == ["report recording stopped: a write failed"]
