"""The host reader the agent used before psutil (hand-parsed /proc/stat, loadavg,
meminfo), kept as bench_agent's baseline so that both are measured in the same run."""

from __future__ import annotations

import os
from pathlib import Path

from agent.sources.base import HostReading

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def read_host(root: Path = Path("/proc")) -> HostReading:
    stat = (root / "stat").read_text(encoding="ascii").splitlines()
    pcpus = sum(1 for line in stat if line.startswith("cpu") and line[3:4].isdigit())
    aggregate = next(line for line in stat if line.startswith("cpu "))
    ticks = [int(field) for field in aggregate.split()[1:9]]
    ticks += [0] * (8 - len(ticks))
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    memory = _meminfo(root)
    return HostReading(
        user_ns=(user + nice) * _TICK_NS,
        system_ns=(system + irq + softirq) * _TICK_NS,
        idle_ns=idle * _TICK_NS,
        iowait_ns=iowait * _TICK_NS,
        steal_ns=steal * _TICK_NS,
        total_ns=sum(ticks) * _TICK_NS,
        loadavg_1m=float((root / "loadavg").read_text(encoding="ascii").split()[0]),
        memory_total_bytes=memory.get("MemTotal", 0),
        memory_available_bytes=memory.get("MemAvailable", memory.get("MemFree", 0)),
        pcpus=pcpus,
    )


def _meminfo(root: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (root / "meminfo").read_text(encoding="ascii").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values
