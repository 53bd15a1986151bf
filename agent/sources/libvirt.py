"""Per-domain counters from libvirt: one `getAllDomainStats` call per cycle.

Identity (Nova metadata), vCPU thread ids and guest-agent presence are looked up
once per domain lifetime — keyed by (libvirt UUID, domain id), so a restarted or
migrated-in domain is looked up afresh — and cached, which keeps the steady-state
cost at one bulk stats call plus one job-stats call per domain.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import libvirt
import libvirt_qemu
import structlog

from agent.errors import DomainNotFound, SourceError
from agent.sources.base import DomainReading, LoadOrigin, MigrationJobReading, StealOrigin
from agent.sources.procfs import ProcFs

# Nova writes <nova:instance> under 1.1 since it added <nova:ports>; older releases
# wrote 1.0. Both carry <nova:name>; the instance UUID is the domain's own UUID.
NOVA_NAMESPACES = (
    "http://openstack.org/xmlns/libvirt/nova/1.1",
    "http://openstack.org/xmlns/libvirt/nova/1.0",
)

_STATS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_BLOCK
    # libvirt >= 7.2: the result of the last virDomainStartDirtyRateCalc.
    | getattr(libvirt, "VIR_DOMAIN_STATS_DIRTYRATE", 0)
)
# NOWAIT: a domain whose QEMU job is stuck (a monitor call waiting on dead storage) would
# otherwise add libvirt's 30 s job timeout to every cycle — two of them outlast the
# systemd watchdog. With it libvirt leaves out that domain's job-bound fields (balloon,
# block) and answers at once; the vCPU counters it reads without a job.
_BULK_FLAGS = (
    libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
    | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
)
_DIRTYRATE_MEASURING = 1
_DIRTYRATE_MEASURED = 2
_GUEST_AGENT_TIMEOUT_S = 1
_GUEST_AGENT_RETRY_CYCLES = 30

_log = structlog.get_logger("agent.libvirt")

# libvirt prints every error to stderr by default; ours are wrapped and logged.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


class StealMode(enum.Enum):
    """Which counter feeds steal: libvirt's vcpu.<n>.delay, schedstat, or the first
    available (libvirt delay, falling back to schedstat on older libvirt)."""

    AUTO = "auto"
    LIBVIRT = "libvirt"
    SCHEDSTAT = "schedstat"


@dataclass(frozen=True)
class ParsedStats:
    """The fields the agent uses from one getAllDomainStats record."""

    vcpus: int
    vcpu_time_ns: tuple[int, ...]
    vcpu_delay_ns: tuple[int, ...] | None
    memory_bytes: int
    disk_bytes: int
    dirty_rate_mib_s: float | None = None  # the last finished dirty-rate calculation
    dirty_rate_measuring: bool = False


def parse_domain_stats(stats: Mapping[str, Any]) -> ParsedStats:
    """Purely computational: a getAllDomainStats record → the counters we report."""
    vcpus = int(stats.get("vcpu.current", 0))
    times = tuple(int(stats.get(f"vcpu.{n}.time", 0)) for n in range(vcpus))
    have_delay = vcpus > 0 and all(f"vcpu.{n}.delay" in stats for n in range(vcpus))
    delays = tuple(int(stats[f"vcpu.{n}.delay"]) for n in range(vcpus)) if have_delay else None
    balloon_kib = stats.get("balloon.current", stats.get("balloon.maximum", 0))
    disks = int(stats.get("block.count", 0))
    disk_bytes = sum(int(stats.get(f"block.{n}.capacity", 0)) for n in range(disks))
    status = int(stats.get("dirtyrate.calc_status", 0))
    # QEMU's "megabytes" are MiB (pages × page size / 2^20 per second).
    dirty = (
        float(stats.get("dirtyrate.megabytes_per_second", 0))
        if status == _DIRTYRATE_MEASURED
        else None
    )
    return ParsedStats(
        vcpus,
        times,
        delays,
        int(balloon_kib) * 1024,
        disk_bytes,
        dirty_rate_mib_s=dirty,
        dirty_rate_measuring=status == _DIRTYRATE_MEASURING,
    )


def parse_nova_metadata(xml: str) -> str | None:
    """The display name from a <nova:instance> element, whatever its prefix."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rpartition("}")[2] == "name" and element.text:
            return element.text.strip()
    return None


def parse_job_stats(job: Mapping[str, Any], cap_mib_s: int) -> MigrationJobReading | None:
    """A running job's progress, or None when no job runs."""
    if int(job.get("type", libvirt.VIR_DOMAIN_JOB_NONE)) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    page = int(job.get("memory_page_size", 4096))
    return MigrationJobReading(
        data_processed_bytes=int(job.get("data_processed", 0)),
        data_remaining_bytes=int(job.get("data_remaining", 0)),
        data_total_bytes=int(job.get("data_total", 0)),
        bandwidth_mib_s=cap_mib_s,
        memory_dirty_rate_bytes_s=int(job.get("memory_dirty_rate", 0)) * page,
        elapsed_ms=int(job.get("time_elapsed", 0)),
    )


def vcpu_threads_from_qmp(reply: str) -> tuple[int, ...]:
    """vCPU thread ids, in vCPU order, from a `query-cpus-fast` QMP reply."""
    cpus = json.loads(reply).get("return", [])
    ordered = sorted(cpus, key=lambda cpu: int(cpu.get("cpu-index", 0)))
    return tuple(int(cpu["thread-id"]) for cpu in ordered)


@dataclass(frozen=True)
class _Identity:
    instance_uuid: str
    name: str
    nova_metadata: bool
    threads: tuple[int, ...] = ()
    guest_agent: bool = False


class LibvirtSource:
    """DomainSource over a libvirt connection; reconnects after libvirtd restarts.

    Threads: `domains()` runs in the collection thread, the cap methods in command and
    cap-worker threads. They share one connection and call libvirt concurrently (a
    virConnect is thread-safe: libvirt multiplexes calls on it and libvirt-python
    releases the GIL around each), so no lock is ever held across a libvirt call — a
    bulk call stalled on a busy host must not hold up a cap for a healthy VM. `_lock`
    guards only the caches the threads share (`_capped`, `_speeds`), `_conn_lock` the
    connection, `_cycle_lock` the state only collection touches (one cycle at a time).
    """

    def __init__(
        self,
        uri: str = "qemu:///system",
        steal: StealMode = StealMode.AUTO,
        procfs: ProcFs | None = None,
        opener: Callable[[str], libvirt.virConnect] = libvirt.open,
        job_sweep_cycles: int = 6,
        dirty_rate_cycles: int = 6,
        dirty_rate_calc_s: int = 2,
    ) -> None:
        self._uri = uri
        self._steal = steal
        self._procfs = procfs or ProcFs()
        self._opener = opener
        self._conn: libvirt.virConnect | None = None
        self._identities: dict[tuple[str, int], _Identity] = {}
        self._agent_backoff: dict[tuple[str, int], int] = {}
        self._capped: set[str] = set()
        # The cap in force per domain UUID, as last read back off the collection path
        # (migrateGetMaxSpeed can block for seconds while a migration runs).
        self._speeds: dict[str, int] = {}
        self._migrating: set[str] = set()
        self._job_sweep_cycles = job_sweep_cycles
        # Every `dirty_rate_cycles` cycles each domain gets a dirty-rate calculation of
        # `dirty_rate_calc_s` seconds (QEMU samples pages and compares their hashes:
        # cheap, and it runs in QEMU while the agent goes on); its result is read from
        # the next cycles' bulk stats. Domains that refused one are not asked again.
        self._dirty_rate_cycles = dirty_rate_cycles
        self._dirty_rate_calc_s = dirty_rate_calc_s
        self._no_dirty_rate: set[str] = set()
        self._cycle = 0
        self._lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._cycle_lock = threading.Lock()

    def domains(self) -> list[DomainReading]:
        with self._cycle_lock:
            records = self._call(lambda conn: conn.getAllDomainStats(_STATS, _BULK_FLAGS))
            self._cycle += 1
            with self._lock:
                capped_before = set(self._capped)
            readings = [r for dom, stats in records if (r := self._try_reading(dom, stats))]
            self._forget_departed({(r.domain_uuid, r.domain_id) for r in readings}, capped_before)
            return readings

    def _forget_departed(self, live: set[tuple[str, int]], capped_before: set[str]) -> None:
        uuids = {uuid for uuid, _ in live}
        self._identities = {k: v for k, v in self._identities.items() if k in live}
        self._agent_backoff = {k: v for k, v in self._agent_backoff.items() if k in live}
        self._migrating &= uuids
        self._no_dirty_rate &= uuids
        with self._lock:
            # Only caps given before this cycle's bulk call: one given while it ran may
            # be for a domain that call could not see yet.
            self._capped -= capped_before - uuids
            self._speeds = {u: v for u, v in self._speeds.items() if u in self._migrating
                            or u in self._capped}  # fmt: skip

    def set_migration_speed(self, instance_uuid: str, bandwidth_mib_s: int) -> int:
        dom = self._lookup(instance_uuid)
        with self._lock:  # its job is worth watching every cycle from now on
            self._capped.add(dom.UUIDString())
        try:
            dom.migrateSetMaxSpeed(bandwidth_mib_s, 0)
            return int(dom.migrateGetMaxSpeed(0))
        except libvirt.libvirtError as exc:
            raise _wrap(exc) from exc

    def migration_speed(self, instance_uuid: str) -> int:
        dom = self._lookup(instance_uuid)
        try:
            speed = int(dom.migrateGetMaxSpeed(0))
            uuid = dom.UUIDString()
        except libvirt.libvirtError as exc:
            raise _wrap(exc) from exc
        # Reports carry the cap as this read-back (the cap worker's) last saw it: the cap
        # a job actually ran with before ours was re-applied shows up in the next report.
        with self._lock:
            self._speeds[uuid] = speed
        return speed

    def close(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            # Already gone after a libvirtd restart: nothing left to release.
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def _lookup(self, instance_uuid: str) -> libvirt.virDomain:
        # Nova makes the libvirt UUID equal to the instance UUID.
        try:
            return self._call(lambda conn: conn.lookupByUUIDString(instance_uuid))
        except SourceError as exc:
            if "no domain" in str(exc).lower() or isinstance(exc, DomainNotFound):
                raise DomainNotFound(f"unknown domain {instance_uuid}") from exc
            raise

    def _call(self, action: Callable[[libvirt.virConnect], Any]) -> Any:
        conn = self._connection()
        try:
            return action(conn)
        except libvirt.libvirtError as exc:
            if not _connection_alive(conn):
                self._drop(conn)  # libvirtd restarted: reopen on the next call
            raise _wrap(exc) from exc

    def _connection(self) -> libvirt.virConnect:
        # Held while opening: a caller that finds no connection waits for the one being
        # opened rather than opening (and leaking) a second.
        with self._conn_lock:
            if self._conn is None:
                try:
                    self._conn = self._opener(self._uri)
                except libvirt.libvirtError as exc:
                    raise SourceError(f"cannot connect to {self._uri}: {exc}") from exc
            return self._conn

    def _drop(self, conn: libvirt.virConnect) -> None:
        with self._conn_lock:
            if self._conn is conn:  # not one another thread has opened since
                self._conn = None

    def _try_reading(
        self, dom: libvirt.virDomain, stats: Mapping[str, Any]
    ) -> DomainReading | None:
        # A domain that stops between the bulk call and its follow-up calls must not
        # cost the whole cycle; it is simply absent from this report.
        try:
            return self._reading(dom, stats)
        except (SourceError, libvirt.libvirtError) as exc:
            _log.warning("domain skipped", domain=_safe_name(dom), error=str(exc))
            return None

    def _reading(self, dom: libvirt.virDomain, stats: Mapping[str, Any]) -> DomainReading:
        parsed = parse_domain_stats(stats)
        key = (dom.UUIDString(), dom.ID())
        ident = self._identity(dom, key, parsed)
        delays, origin = self._delays(dom, ident, parsed)
        reading = DomainReading(
            instance_uuid=ident.instance_uuid,
            name=ident.name,
            domain_uuid=key[0],
            domain_id=key[1],
            vcpus=parsed.vcpus,
            cpu_time_ns=sum(parsed.vcpu_time_ns),
            vcpu_delay_ns=delays,
            steal_origin=origin,
            memory_bytes=parsed.memory_bytes,
            disk_bytes=parsed.disk_bytes,
            nova_metadata=ident.nova_metadata,
            migration=self._job(dom, key[0]),
            dirty_rate_mib_s=parsed.dirty_rate_mib_s,
        )
        self._start_dirty_rate(dom, key[0], parsed)
        load = self._guest_load(dom, key) if ident.guest_agent else None
        if load is None:
            return reading
        return replace(reading, load_origin=LoadOrigin.GUEST_AGENT, guest_load_1m=load)

    def _job(self, dom: libvirt.virDomain, domain_uuid: str) -> MigrationJobReading | None:
        # Job stats cost one call per domain: asked every cycle only of domains that
        # were given a cap or were migrating last cycle, of all of them every
        # `job_sweep_cycles` cycles (migrations nobody told us about).
        with self._lock:
            capped = domain_uuid in self._capped
            cap_mib_s = self._speeds.get(domain_uuid, 0)
        watched = capped or domain_uuid in self._migrating
        if not watched and self._cycle % self._job_sweep_cycles:
            return None
        job = _job(dom, cap_mib_s)
        if job is None:
            self._migrating.discard(domain_uuid)
        else:
            self._migrating.add(domain_uuid)
        return job

    def _start_dirty_rate(
        self, dom: libvirt.virDomain, domain_uuid: str, parsed: ParsedStats
    ) -> None:
        # From the first cycle on (the counter is 1 then), every `dirty_rate_cycles`.
        every = self._dirty_rate_cycles
        due = every > 0 and (self._cycle - 1) % every == 0
        if not due or parsed.dirty_rate_measuring or domain_uuid in self._no_dirty_rate:
            return
        start = getattr(dom, "startDirtyRateCalc", None)
        try:
            if start is None:
                raise libvirt.libvirtError("libvirt too old for virDomainStartDirtyRateCalc")
            start(self._dirty_rate_calc_s, 0)
        except libvirt.libvirtError as exc:
            self._no_dirty_rate.add(domain_uuid)
            _log.info("no dirty-rate calculation", domain=_safe_name(dom), error=str(exc))

    def _delays(
        self, dom: libvirt.virDomain, ident: _Identity, parsed: ParsedStats
    ) -> tuple[tuple[int, ...], StealOrigin]:
        use_libvirt = self._steal is StealMode.LIBVIRT or (
            self._steal is StealMode.AUTO and parsed.vcpu_delay_ns is not None
        )
        if use_libvirt:
            if parsed.vcpu_delay_ns is None:
                raise SourceError(f"{dom.name()}: libvirt reports no vcpu.<n>.delay")
            return parsed.vcpu_delay_ns, StealOrigin.LIBVIRT_DELAY
        return self._procfs.threads_delay_ns(ident.threads), StealOrigin.SCHEDSTAT

    def _identity(
        self, dom: libvirt.virDomain, key: tuple[str, int], parsed: ParsedStats
    ) -> _Identity:
        known = self._identities.get(key)
        if known is None:
            known = self._identities[key] = self._look_up_identity(dom, parsed)
        return known

    def _look_up_identity(self, dom: libvirt.virDomain, parsed: ParsedStats) -> _Identity:
        name = _nova_name(dom)
        need_threads = parsed.vcpus > 0 and (
            self._steal is StealMode.SCHEDSTAT
            or (self._steal is StealMode.AUTO and parsed.vcpu_delay_ns is None)
        )
        threads = _vcpu_threads(dom) if need_threads else ()
        return _Identity(
            instance_uuid=dom.UUIDString(),
            name=name or dom.name(),
            nova_metadata=name is not None,
            threads=threads,
            guest_agent=_has_guest_agent(dom),
        )

    def _guest_load(self, dom: libvirt.virDomain, key: tuple[str, int]) -> float | None:
        # An agent channel without an agent answering costs a timeout per call: after a
        # failure, wait some cycles before asking that domain again.
        skip = self._agent_backoff.get(key, 0)
        if skip > 0:
            self._agent_backoff[key] = skip - 1
            return None
        load = _guest_load(dom)
        if load is None:
            self._agent_backoff[key] = _GUEST_AGENT_RETRY_CYCLES
        return load


def _vcpu_threads(dom: libvirt.virDomain) -> tuple[int, ...]:
    try:
        reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-cpus-fast"}', 0)
    except libvirt.libvirtError as exc:
        raise _wrap(exc) from exc
    return vcpu_threads_from_qmp(reply)


def _safe_name(dom: libvirt.virDomain) -> str:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return "?"


def _nova_name(dom: libvirt.virDomain) -> str | None:
    for namespace in NOVA_NAMESPACES:
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, 0)
        except libvirt.libvirtError:
            continue  # not a Nova domain, or the other schema version
        name = parse_nova_metadata(xml)
        if name is not None:
            return name
    return None


def _has_guest_agent(dom: libvirt.virDomain) -> bool:
    try:
        return "org.qemu.guest_agent.0" in dom.XMLDesc(0)
    except libvirt.libvirtError:
        return False


def _guest_load(dom: libvirt.virDomain) -> float | None:
    """The guest's own 1-minute load average, when its agent answers in time."""
    try:
        reply = libvirt_qemu.qemuAgentCommand(
            dom, '{"execute":"guest-get-load"}', _GUEST_AGENT_TIMEOUT_S, 0
        )
    except libvirt.libvirtError:
        return None  # agent absent, too old for guest-get-load, or not answering
    return parse_guest_load(reply)


def parse_guest_load(reply: str) -> float | None:
    """The 1-minute load from a `guest-get-load` reply (qemu-ga ≥ 9.1), if well formed.

    The reply comes from inside the tenant's VM: json.loads turns `Infinity` and
    `1e400` into inf, and one non-finite figure makes the coordinator drop the VM's
    whole sample (steal included), every report. Only finite, non-negative loads count.
    """
    try:
        load = float(json.loads(reply)["return"]["load1m"])
    except (KeyError, ValueError, TypeError):
        return None
    return load if math.isfinite(load) and load >= 0 else None


def _job(dom: libvirt.virDomain, cap_mib_s: int) -> MigrationJobReading | None:
    """The domain's job; its cap is the last one read back (0 = not read yet)."""
    try:
        job = dom.jobStats(0)
        if int(job.get("type", 0)) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return parse_job_stats(job, cap_mib_s)
    except libvirt.libvirtError:
        return None  # the job ended between the two calls, or the driver has none


def _connection_alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def _wrap(exc: libvirt.libvirtError) -> SourceError:
    if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
        return DomainNotFound(f"unknown domain: {exc.get_error_message()}")
    return SourceError(str(exc.get_error_message() or exc))
