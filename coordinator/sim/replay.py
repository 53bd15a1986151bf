"""`simulate --replay FILE`: a recorded stream of real agent reports through the policy.

The reports (recorded by a running coordinator with `service.record_reports`) are
validated and folded by the same `rpc.report` and `TelemetryFolder` the service uses;
every `service.plan_interval_s` of recorded time the chosen policy plans on what the
coordinator would have seen. Nothing is moved — a recording cannot say what a move
would have changed — so the answer is what the policy *would* have started: each VM's
first proposed move (and why), the VMs it left suffering and why, and the pain in the
recording (VM-intervals with steal >= 10%). The inventory comes from the reports
themselves: hosts from their registrations (name, AZ, pCPUs, memory), VMs from their
samples (vCPUs, memory, disk); roles, server groups and opt-outs are not in a
recording, so a replay ignores them.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from coordinator import rpc
from coordinator.config import Config, ConfigError
from coordinator.model import ClusterSnapshot, Host, Move, Vm, VmMetrics
from coordinator.service.recorder import RecordedReport, read_recording
from coordinator.sim.pain import PAIN_STEAL
from coordinator.sim.policies import PlanFn, plan_fn
from coordinator.state import FoldSettings, SampleRejected, TelemetryFolder

_MIB = 1024 * 1024


@dataclass(slots=True)
class ReplayResult:
    reports: int = 0
    rejected: int = 0
    unreadable: tuple[int, ...] = ()  # line numbers of the recording that held no report
    rounds: int = 0
    first_moves: dict[str, tuple[float, Move]] = field(default_factory=dict)
    skip_reasons: Counter[str] = field(default_factory=Counter)
    pain_vm_intervals: int = 0
    vm_intervals: int = 0
    hosts: int = 0
    vms: int = 0


@dataclass(slots=True)
class _Seen:
    hosts: dict[str, Host] = field(default_factory=dict)
    vms: dict[str, Vm] = field(default_factory=dict)


def replay(path: Path, config: Config, policy: str = "stealbalancer") -> ReplayResult:
    try:
        read = read_recording(path)
    except OSError as exc:
        raise ConfigError(f"--replay {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"--replay {exc}") from None
    recording = read.reports
    if not recording:
        raise ConfigError(f"--replay {path}: no reports in it")
    plan = plan_fn(policy)
    folder = TelemetryFolder(FoldSettings.from_policy(config.policy, _interval(recording)))
    seen, result = _Seen(), ReplayResult(unreadable=read.unreadable)
    next_round = recording[0].at + config.service.plan_interval_s
    for record in recording:
        if record.at >= next_round:
            _round(seen, next_round, config, plan, result)
            next_round += config.service.plan_interval_s * max(
                1, int((record.at - next_round) // config.service.plan_interval_s) + 1
            )
        _fold(record, folder, seen, result)
    _round(seen, recording[-1].at, config, plan, result)
    result.hosts, result.vms = len(seen.hosts), len(seen.vms)
    return result


def _interval(recording: list[RecordedReport]) -> float:
    """The agents' report interval, from the recording: one host's median gap."""
    host = recording[0].host
    times = [r.at for r in recording if r.host == host]
    gaps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return gaps[len(gaps) // 2] if gaps else 10.0


def _fold(
    record: RecordedReport, folder: TelemetryFolder, seen: _Seen, result: ReplayResult
) -> None:
    result.reports += 1
    try:
        parsed = rpc.report(record.report, record.at, max_vms=100_000)
    except rpc.Rejected:
        result.rejected += 1
        return
    seen.hosts[record.host] = Host(
        name=record.host,
        az=record.az or "default",
        pcpus=max(record.pcpus, 1),
        ram_mib=max(record.memory_mib, 1),
        last_report_at=record.at,
    )
    samples = {s.instance_uuid: s for s in record.report.vms}
    for reading in parsed.vms:
        try:
            # A report the agent replayed from its buffer only re-bases, as in the service.
            metrics = folder.observe(reading.uuid, reading.sample, parsed.replayed)
        except SampleRejected:
            result.rejected += 1
            continue
        sample = samples[reading.uuid]
        seen.vms[reading.uuid] = Vm(
            uuid=reading.uuid,
            name=reading.name,
            host=record.host,
            vcpus=reading.sample.vcpus,
            ram_mib=max(int(sample.memory_bytes // _MIB), 1),
            disk_gib=sample.disk_bytes / 1024**3,
            metrics=metrics or folder.metrics(reading.uuid) or VmMetrics(),
        )


def _round(
    seen: _Seen, now: float, config: Config, plan: PlanFn | None, result: ReplayResult
) -> None:
    if plan is None or not seen.vms:
        _count_pain(seen, result)
        return
    snapshot = ClusterSnapshot.build(now, list(seen.hosts.values()), list(seen.vms.values()))
    the_plan = plan(snapshot, config)
    result.rounds += 1
    for move in the_plan.moves:
        result.first_moves.setdefault(move.vm_uuid, (now, move))
    for skip in the_plan.skipped:
        result.skip_reasons[skip.reason.split(":")[0]] += 1
    _count_pain(seen, result)


def _count_pain(seen: _Seen, result: ReplayResult) -> None:
    for vm in seen.vms.values():
        if vm.metrics.sampled_at is None:
            continue
        result.vm_intervals += 1
        result.pain_vm_intervals += vm.metrics.steal >= PAIN_STEAL
