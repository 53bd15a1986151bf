"""`service.record_reports` when its disk fails: the coordinator goes on, the recording
ends, and an operator hears of it once (not once per report)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from coordinator.api.v1 import agent_pb2
from coordinator.rpc import Registration
from coordinator.service.recorder import ReportRecorder, read_recording

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
    assert [r.host for r in read_recording(path)] == ["hv-1"]
