"""`service.record_reports` when its disk fails: the coordinator goes on, the recording
ends, and an operator hears of it once (not once per report) and from a gauge an alert
watches."""

from __future__ import annotations

import asyncio
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
    assert [r.host for r in read_recording(path)] == ["hv-1"]


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
