"""The agent's measured dirty rate against real QEMU guests that dirty known memory.

One guest rewrites 64 MiB of a tmpfs pass after pass (with new content each time, as
QEMU's page sampling compares hashes) and prints a console line per pass, so the host
times the true rate: passes × 64 MiB / window. A second guest runs the same loop over
0 MiB. The agent starts libvirt's dirty-rate calculation (virDomainStartDirtyRateCalc)
and reads the result from its bulk stats; the quiet guest must measure near 0 and the
dirtying one within a factor of the truth (sampling 512 pages per GiB is coarse, and
under TCG on shared cores a pass takes seconds). Then the reading crosses the wire and
the coordinator's folding into VmMetrics.dirty_rate_mib_s, which the cost model reads.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import pytest

from agent.sources.base import DomainReading
from agent.sources.libvirt import LibvirtSource
from agent.wire import vm_sample
from coordinator.api.v1 import agent_pb2
from coordinator.config import CostConfig
from coordinator.model import Vm
from coordinator.policy.cost import dirty_rate_mib_s
from coordinator.rpc import report
from coordinator.state import TelemetryFolder
from tests.agent.guests import Guest, burning_guests, open_system

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

DIRTY_MIB = 64
WINDOW_S = 21.0
FACTOR = 2.5  # measured within [truth / FACTOR, truth × FACTOR]
QUIET_MAX_MIB_S = 1.0  # median of the quiet guest's readings
MIN_TRUTH_MIB_S = 2.5  # below this the busy guest proves nothing (a starved TCG vCPU)
_PASS = re.compile(r"STEALBALANCER-PASS (\d+)")


def _passes(guest: Guest) -> int:
    found = _PASS.findall(guest.console.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def _measure(source: LibvirtSource, guests: list[Guest]) -> dict[str, list[float]]:
    """Every dirty rate the agent reported per guest over the window: each cycle reads
    the calculation the previous one started (3 s apart, calculations last 2 s)."""
    seen: dict[str, list[float]] = {g.uuid: [] for g in guests}
    deadline = time.monotonic() + WINDOW_S
    while time.monotonic() < deadline:
        for reading in source.domains():
            if reading.domain_uuid in seen and reading.dirty_rate_mib_s is not None:
                seen[reading.domain_uuid].append(reading.dirty_rate_mib_s)
        time.sleep(3.0)
    return seen


def _run(tmp_path: Path, dirty_mib: int) -> tuple[list[float], float, DomainReading]:
    """(the agent's dirty rates, the true rate, the last reading) for one guest."""
    conn = open_system()
    try:
        with burning_guests(conn, 1, tmp_path, "0-1", dirty_mib=dirty_mib) as (guest,):
            source = LibvirtSource(dirty_rate_cycles=1, dirty_rate_calc_s=2)
            try:
                time.sleep(3.0)  # the first pass is under way
                first, started = _passes(guest), time.monotonic()
                seen = _measure(source, [guest])[guest.uuid]
                passes = _passes(guest) - first
                truth = passes * dirty_mib / (time.monotonic() - started)
                (last,) = [r for r in source.domains() if r.domain_uuid == guest.uuid]
            finally:
                source.close()
    finally:
        conn.close()
    return seen, truth, last


def test_measured_dirty_rate_matches_what_the_guest_dirties(tmp_path: Path) -> None:
    quiet, _, _ = _run(tmp_path, 0)
    busy, truth, reading = _run(tmp_path, DIRTY_MIB)
    seen = {"quiet": quiet, "busy": busy}
    assert len(busy) >= 3 and len(quiet) >= 3, seen
    measured, idle = statistics.median(busy), statistics.median(quiet)
    assert truth >= MIN_TRUTH_MIB_S, f"the guest dirtied only {truth:.1f} MiB/s: {seen}"
    assert idle <= QUIET_MAX_MIB_S, seen
    assert truth / FACTOR <= measured <= truth * FACTOR, (truth, seen)
    assert measured >= idle + 2.0, seen
    # Through the wire and the folding into what the cost model reads.
    assert reading.dirty_rate_mib_s is not None
    folder = TelemetryFolder()
    metrics = None
    for step in (1, 2):
        message = agent_pb2.HostReport(monotonic_ns=step * 10**10, vms=[vm_sample(reading)])
        (folded,) = report(message, at=10.0 * step, max_vms=10).vms
        metrics = folder.observe(folded.uuid, folded.sample)
    assert metrics is not None
    assert metrics.dirty_rate_mib_s == reading.dirty_rate_mib_s
    vm = Vm(uuid="x", name="x", host="h", vcpus=1, ram_mib=192, metrics=metrics)
    assert dirty_rate_mib_s(vm, CostConfig()) == reading.dirty_rate_mib_s
