"""Recording the agent reports a coordinator ingests, for `simulate --replay`.

With `service.record_reports: PATH` every report the coordinator accepts is appended
to PATH as one JSON line: the coordinator's clock, the registering host's name, AZ,
pCPUs and memory, and the HostReport itself as base64 protobuf (the wire form, so a
replay parses it with the same `rpc.report` the service used). An operator records a
day of their own cluster and replays it through the policy with other thresholds.
Nothing in a recording is trusted on replay: every report is validated again.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from coordinator.api.v1 import agent_pb2
from coordinator.rpc import Registration

log = structlog.get_logger("stealbalancer.recorder")


@dataclass(frozen=True, slots=True)
class RecordedReport:
    at: float
    host: str
    az: str
    pcpus: int
    memory_mib: int
    report: agent_pb2.HostReport


class ReportRecorder:
    """Appends accepted reports to a file; a failing write never costs the report."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("a", encoding="utf-8")
        self.failed = False

    @staticmethod
    def open(path: str) -> ReportRecorder | None:
        """A recorder for `service.record_reports`, or None when it is empty (off)."""
        return ReportRecorder(Path(path)) if path else None

    def record(self, at: float, reg: Registration, message: agent_pb2.HostReport) -> None:
        line = json.dumps(
            {
                "at": at,
                "host": reg.host,
                "az": reg.az,
                "pcpus": reg.pcpus,
                "memory_mib": reg.memory_mib,
                "report": base64.b64encode(message.SerializeToString()).decode("ascii"),
            }
        )
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                # A full disk must not stop the coordinator; the recording just ends,
                # said once: every later report would repeat it.
                self.failed = True
                self._close_quietly()
                log.warning("report recording stopped: a write failed",
                            path=str(self._path), error=exc.strerror)  # fmt: skip

    def _close_quietly(self) -> None:
        """Close after a failed write: the flush on close fails the same way."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_recording(path: Path) -> list[RecordedReport]:
    """Every report in a recording, in file order (ValueError naming the bad line)."""
    reports = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                message = agent_pb2.HostReport.FromString(base64.b64decode(data["report"]))
                reports.append(
                    RecordedReport(
                        at=float(data["at"]),
                        host=str(data["host"])[:255],
                        az=str(data["az"])[:255],
                        pcpus=int(data["pcpus"]),
                        memory_mib=int(data["memory_mib"]),
                        report=message,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a recorded report ({exc})") from None
    return reports
