"""The host's own counters (through psutil) and per-thread run delay (from procfs).

`ProcFs(root)` reads under any directory shaped like /proc, so the tests point it at
the checked-in tree in tests/fixtures/proc/ instead of patching the filesystem:
psutil reads through `psutil.PROCFS_PATH`, set to the root before each reading.
psutil (the design card's choice) costs no more than the hand-parsed reader it
replaced (tests/benchmarks/bench_agent.py measures both); it has no per-thread
schedstat, so that reader stays here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psutil

from agent.errors import SourceError
from agent.sources.base import HostReading

_NS = 1_000_000_000


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


class ProcFs:
    """Host CPU times, load average and memory; /proc/<tid>/schedstat; the boot id.

    Not for concurrent use with different roots: psutil's procfs path is one
    module-wide setting (the agent has a single ProcFs)."""

    def __init__(self, root: Path = Path("/proc")) -> None:
        self._root = root

    def host(self) -> HostReading:
        psutil.PROCFS_PATH = str(self._root)
        try:
            cpu = psutil.cpu_times()
            pcpus = len(psutil.cpu_times(percpu=True))
            memory = psutil.virtual_memory()
        except (OSError, ValueError, IndexError) as exc:
            raise SourceError(f"{self._root}/stat or meminfo: {exc}") from exc
        # guest time is already inside user (psutil keeps /proc/stat's columns), so
        # the total stops at steal.
        user, system = _ns(cpu.user) + _ns(cpu.nice), _ns(cpu.system) + _ns(cpu.irq)
        system += _ns(cpu.softirq)
        idle, iowait, steal = _ns(cpu.idle), _ns(cpu.iowait), _ns(cpu.steal)
        return HostReading(
            user_ns=user,
            system_ns=system,
            idle_ns=idle,
            iowait_ns=iowait,
            steal_ns=steal,
            total_ns=user + system + idle + iowait + steal,
            # psutil.getloadavg() is os.getloadavg(), which ignores PROCFS_PATH.
            loadavg_1m=float(self._read("loadavg").split()[0]),
            memory_total_bytes=memory.total,
            memory_available_bytes=memory.available,
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

    def _read(self, relative: str) -> str:
        path = self._root / relative
        try:
            return path.read_text(encoding="ascii")
        except OSError as exc:
            raise SourceError(f"{path}: {exc.strerror or exc}") from exc
