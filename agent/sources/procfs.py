"""The host's own counters and per-thread run delay, read straight from procfs.

`ProcFs(root)` reads under any directory shaped like /proc, so the tests point it at
the checked-in tree in tests/fixtures/proc/ instead of patching the filesystem.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from agent.errors import SourceError
from agent.sources.base import HostReading

# /proc/stat counts in USER_HZ ticks, whatever the kernel's HZ.
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class ProcFs:
    """Host /proc/stat, /proc/loadavg, /proc/meminfo and /proc/<tid>/schedstat."""

    def __init__(self, root: Path = Path("/proc"), tick_ns: int = _TICK_NS) -> None:
        self._root = root
        self._tick_ns = tick_ns

    def host(self) -> HostReading:
        cpu, pcpus = self._stat()
        memory = self._meminfo()
        return HostReading(
            user_ns=cpu["user"],
            system_ns=cpu["system"],
            idle_ns=cpu["idle"],
            iowait_ns=cpu["iowait"],
            steal_ns=cpu["steal"],
            total_ns=cpu["total"],
            loadavg_1m=float(self._read("loadavg").split()[0]),
            memory_total_bytes=memory.get("MemTotal", 0),
            memory_available_bytes=memory.get("MemAvailable", memory.get("MemFree", 0)),
            pcpus=pcpus,
        )

    def boot_id(self) -> str:
        return self._read("sys/kernel/random/boot_id").strip()

    def thread_delay_ns(self, tid: int) -> int:
        """Field 2 of /proc/<tid>/schedstat: ns spent runnable on a run queue."""
        fields = self._read(f"{tid}/schedstat").split()
        if len(fields) < 2:
            raise SourceError(f"{self._root}/{tid}/schedstat: expected 3 fields")
        return int(fields[1])

    def threads_delay_ns(self, tids: Iterable[int]) -> tuple[int, ...]:
        return tuple(self.thread_delay_ns(tid) for tid in tids)

    def _stat(self) -> tuple[dict[str, int], int]:
        lines = self._read("stat").splitlines()
        pcpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        for line in lines:
            if line.startswith("cpu "):
                return self._cpu_line(line), pcpus
        raise SourceError(f"{self._root}/stat: no aggregate cpu line")

    def _cpu_line(self, line: str) -> dict[str, int]:
        # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time
        # is already inside user, so the total stops at steal.
        ticks = [int(field) for field in line.split()[1:9]]
        ticks += [0] * (8 - len(ticks))
        user, nice, system, idle, iowait, irq, softirq, steal = ticks
        as_ns = self._tick_ns
        return {
            "user": (user + nice) * as_ns,
            "system": (system + irq + softirq) * as_ns,
            "idle": idle * as_ns,
            "iowait": iowait * as_ns,
            "steal": steal * as_ns,
            "total": sum(ticks) * as_ns,
        }

    def _meminfo(self) -> dict[str, int]:
        values: dict[str, int] = {}
        for line in self._read("meminfo").splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                scale = 1024 if parts[1:] == ["kB"] else 1
                values[key] = int(parts[0]) * scale
        return values

    def _read(self, relative: str) -> str:
        path = self._root / relative
        try:
            return path.read_text(encoding="ascii")
        except OSError as exc:
            raise SourceError(f"{path}: {exc.strerror or exc}") from exc
