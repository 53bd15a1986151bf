"""Known truth under contention, measured on real QEMU guests through the agent.

n always-runnable 1-vCPU guests pinned to one host CPU share it fairly, so each
waits (n−1)/n of the time: 0 %, 50 %, 66.7 %. Where something else already loads
that CPU (another test run on a developer box; not in CI, which runs alone) by a
share f — measured in the same window from /proc/stat's line for that CPU, less
what the guests themselves ran — the guests split the rest: 1 − (1 − f)/n. The agent's
steal must match within 2 percentage points through libvirt's vcpu.<n>.delay and
through /proc/<tid>/schedstat.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import libvirt
import pytest

from agent.collector import Collector
from agent.sampling import steal_table
from agent.sources.libvirt import LibvirtSource, StealMode
from agent.sources.procfs import ProcFs
from tests.agent.guests import (
    CACHE,
    Guest,
    burning_guests,
    cpu_idle_fractions,
    destroy,
    open_system,
    pin,
)

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

TOLERANCE = 0.02
MAX_FOREIGN = 0.10
SETTLE_S = 1.0
WINDOW_S = 4.0
ACCURACY_FILE = Path(os.environ.get("STEALBALANCER_ACCURACY_FILE", str(CACHE / "accuracy.json")))


@dataclass(frozen=True)
class Row:
    guests: int
    source: str
    vm: str
    expected: float
    nominal: float
    reported: float
    host_cpu: int
    foreign_load: float


def _cpu_ticks(cpu: int) -> tuple[int, int]:
    """(busy, total) ticks of one host CPU; outer-hypervisor steal counts as busy:
    it is time the guests did not get either."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:9]]
            return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    raise AssertionError(f"cpu{cpu} missing from /proc/stat")


def _measure(collectors: dict[str, Collector], guests: list[Guest], cpu: int) -> list[Row]:
    names = {g.uuid: g.name for g in guests}
    n = len(guests)
    time.sleep(SETTLE_S)
    busy0, total0 = _cpu_ticks(cpu)
    before = {key: collector.collect() for key, collector in collectors.items()}
    time.sleep(WINDOW_S)
    after = {key: collector.collect() for key, collector in collectors.items()}
    busy1, total1 = _cpu_ticks(cpu)
    rows = []
    for key in collectors:
        first, last = before[key], after[key]
        elapsed = last.monotonic_ns - first.monotonic_ns
        table = [
            r for r in steal_table(first.domains, last.domains, elapsed) if r.instance_uuid in names
        ]
        # What ran on that CPU besides our guests (another engineer's tests on a
        # developer box; about nothing in CI, which runs alone).
        cpu_busy = (busy1 - busy0) / max(1, total1 - total0)
        foreign = min(1.0, max(0.0, cpu_busy - sum(r.busy for r in table)))
        for r in table:
            rows.append(
                Row(n, key, names[r.instance_uuid], 1 - (1 - foreign) / n, (n - 1) / n,
                    r.steal, cpu, foreign)
            )  # fmt: skip
    return rows


def _quietest_window(collectors: dict[str, Collector], guests: list[Guest], cpu: int) -> list[Row]:
    """A window where little else ran on that CPU; a burst of other work (a daemon
    waking up) gets up to two more tries before the quietest window is kept."""
    tries = [_measure(collectors, guests, cpu)]
    while len(tries) < 3 and max(r.foreign_load for r in tries[-1]) > MAX_FOREIGN:
        tries.append(_measure(collectors, guests, cpu))
    return min(tries, key=lambda rows: max(r.foreign_load for r in rows))


@pytest.fixture(scope="module")
def contention(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Row]]:
    conn = open_system()
    host_cpus = conn.getInfo()[2]
    idle = cpu_idle_fractions(1.0)
    cpu = max(range(len(idle)), key=lambda n: idle[n])  # the quietest CPU
    sources = {
        "libvirt_delay": LibvirtSource(steal=StealMode.LIBVIRT),
        "schedstat": LibvirtSource(steal=StealMode.SCHEDSTAT),
    }
    collectors = {key: Collector(src, ProcFs()) for key, src in sources.items()}
    rows: list[Row] = []
    workdir = tmp_path_factory.mktemp("guests")
    # Boot on every CPU (three TCG boots on one CPU take three times as long), then pin.
    with burning_guests(conn, 3, workdir, cpuset=f"0-{host_cpus - 1}") as guests:
        for guest in guests:
            pin(guest, cpu, host_cpus)
        live = list(guests)
        while live:
            rows += _quietest_window(collectors, live, cpu)
            destroy(live.pop().dom)
    for src in sources.values():
        src.close()
    conn.close()
    ACCURACY_FILE.parent.mkdir(parents=True, exist_ok=True)
    ACCURACY_FILE.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    yield rows


@pytest.mark.parametrize("source", ["libvirt_delay", "schedstat"])
@pytest.mark.parametrize(
    "guests",
    [
        pytest.param(1, id="alone"),
        pytest.param(2, id="two-share-a-cpu"),
        pytest.param(3, id="three-share-a-cpu"),
    ],
)
def test_reported_steal_matches_fair_share(contention: list[Row], guests: int, source: str) -> None:
    rows = [r for r in contention if r.guests == guests and r.source == source]
    assert len(rows) == guests, f"every guest must be reported: {rows}"
    busiest = max(row.foreign_load for row in rows)
    if busiest > MAX_FOREIGN and os.environ.get("CI") != "true":
        # Fair share with heavy, bursty neighbours of unknown weight is no known truth;
        # CI runs alone and always asserts.
        pytest.skip(f"host CPU {rows[0].host_cpu} {busiest:.0%} busy with other work")
    for row in rows:
        assert abs(row.reported - row.expected) <= TOLERANCE, (
            f"{row.vm}: reported {row.reported:.3%}, expected {row.expected:.3%} "
            f"(nominal {row.nominal:.1%}, foreign load {row.foreign_load:.1%} "
            f"on CPU {row.host_cpu})"
        )


def test_identity_comes_from_nova_metadata(tmp_path: Path) -> None:
    conn = open_system()
    source = LibvirtSource()
    try:
        with burning_guests(conn, 1, tmp_path, cpuset="0", boot_timeout_s=90) as [guest]:
            [reading] = [d for d in source.domains() if d.domain_uuid == guest.uuid]
    finally:
        source.close()
        conn.close()
    assert reading.nova_metadata
    assert reading.name == f"{guest.name}-display"
    assert reading.instance_uuid == guest.uuid
    assert reading.vcpus == 1 and len(reading.vcpu_delay_ns) == 1


def test_unknown_domain_is_reported_not_raised() -> None:
    from agent.errors import DomainNotFound

    source = LibvirtSource()
    try:
        with pytest.raises(DomainNotFound):
            source.set_migration_speed("00000000-0000-0000-0000-000000000000", 10)
    finally:
        source.close()
    assert isinstance(libvirt.getVersion(), int)
