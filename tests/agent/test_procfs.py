"""The procfs source against the checked-in fake /proc (tests/fixtures/proc/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import SourceError
from agent.sources.procfs import ProcFs

FAKE = Path(__file__).resolve().parent.parent / "fixtures" / "proc"
TICK_NS = 10_000_000  # USER_HZ, 100 on every Linux architecture we run on


@pytest.fixture
def procfs() -> ProcFs:
    return ProcFs(FAKE)


def test_host_counters_convert_ticks_to_ns(procfs: ProcFs) -> None:
    host = procfs.host()
    # cpu  user=10132153 nice=290696 system=3084719 idle=46828483 iowait=16683
    #      irq=0 softirq=25195 steal=1500 (guest columns already inside user)
    assert host.user_ns == (10132153 + 290696) * TICK_NS
    assert host.system_ns == (3084719 + 0 + 25195) * TICK_NS
    assert host.idle_ns == 46828483 * TICK_NS
    assert host.iowait_ns == 16683 * TICK_NS
    assert host.steal_ns == 1500 * TICK_NS
    parts = host.user_ns + host.system_ns + host.idle_ns + host.iowait_ns + host.steal_ns
    assert host.total_ns == parts
    assert host.pcpus == 4
    assert host.loadavg_1m == 2.45
    assert host.memory_total_bytes == 65843088 * 1024
    assert host.memory_available_bytes == 41226880 * 1024


def test_boot_id(procfs: ProcFs) -> None:
    assert procfs.boot_id() == "6d2f3e52-0d3a-4c6b-9a4f-1c2d3e4f5a6b"


@pytest.mark.parametrize(
    ("tids", "delays"),
    [
        pytest.param((4242,), (23456789012,), id="one-thread"),
        pytest.param((4242, 4243), (23456789012, 3456789012), id="vcpu-order-kept"),
        pytest.param((), (), id="no-threads"),
    ],
)
def test_schedstat_field_two_is_run_delay(
    procfs: ProcFs, tids: tuple[int, ...], delays: tuple[int, ...]
) -> None:
    assert procfs.threads_delay_ns(tids) == delays


@pytest.mark.parametrize(
    "tid",
    [pytest.param(4244, id="truncated"), pytest.param(999999, id="thread-gone")],
)
def test_bad_or_missing_schedstat_is_a_source_error(procfs: ProcFs, tid: int) -> None:
    with pytest.raises(SourceError, match=str(tid)):
        procfs.thread_delay_ns(tid)


def test_missing_root_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="stat"):
        ProcFs(tmp_path).host()


def test_a_reading_of_the_fake_root_does_not_leak_into_the_real_one(procfs: ProcFs) -> None:
    """psutil's procfs path is module-wide: each reading sets its own root."""
    fake = procfs.host()
    real = ProcFs().host()
    assert real.total_ns != fake.total_ns
    assert procfs.host() == fake


def test_real_proc_is_readable() -> None:
    real = ProcFs()
    host = real.host()
    assert host.pcpus >= 1 and host.total_ns > 0 and host.memory_total_bytes > 0
    assert real.thread_delay_ns(1) >= 0
