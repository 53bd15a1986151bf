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
from google.protobuf.message import DecodeError

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
        if _ends_torn(path):
            # The last run was killed (or the disk filled) mid-line: end that line, so
            # the torn record stays one unreadable line instead of swallowing the next.
            self._append("\n")

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
        self._append(line + "\n")

    def _append(self, text: str) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text)
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


@dataclass(frozen=True, slots=True)
class Recording:
    reports: list[RecordedReport]
    # Line numbers that held no readable report: a coordinator killed mid-write leaves
    # one torn line per crash, and the reports around it are still the day's.
    unreadable: tuple[int, ...] = ()


def read_recording(path: Path) -> Recording:
    """Every readable report in a recording, in file order, and which lines were not.
    ValueError (naming the first bad line) when no line is a report: not a recording."""
    reports: list[RecordedReport] = []
    unreadable: list[int] = []
    first_error = ""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                reports.append(_parse(line))
            except (ValueError, KeyError, TypeError, DecodeError) as exc:
                unreadable.append(number)
                first_error = first_error or f"{path}:{number}: not a recorded report ({exc})"
    if unreadable and not reports:
        raise ValueError(first_error)
    return Recording(reports, tuple(unreadable))


def _parse(line: str) -> RecordedReport:
    data = json.loads(line)
    return RecordedReport(
        at=float(data["at"]),
        host=str(data["host"])[:255],
        az=str(data["az"])[:255],
        pcpus=int(data["pcpus"]),
        memory_mib=int(data["memory_mib"]),
        report=agent_pb2.HostReport.FromString(base64.b64decode(data["report"])),
    )


def _ends_torn(path: Path) -> bool:
    """Whether a regular file is non-empty and its last line has no newline (a pipe, a
    socket or a device has no last line to look at)."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as raw:
            if raw.seek(0, 2) == 0:
                return False
            raw.seek(-1, 2)
            return raw.read(1) != b"\n"
    except OSError:
        return False
