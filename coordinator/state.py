"""Folds raw agent counters into smoothed per-VM metrics.

Agents send cumulative counters (ns) with their monotonic clock; rates are computed
here, once, for every source (real agents and the simulator alike):

    steal ratio = Δsteal_ns / (vCPUs × Δmonotonic_ns)     stolen share of each vCPU
    busy ratio  = Δcpu_ns   / (vCPUs × Δmonotonic_ns)     share each vCPU actually ran
    load        = guest load / vCPUs if the guest agent gave one,
                  else busy + steal (runnable demand per vCPU seen from the host)

Counters go backwards when a domain restarts (a migrated-in VM starts at zero) and
reports can arrive after a long gap or twice (replayed from an agent's buffer): such
a reading only re-bases the counters and never yields a rate, so no negative or huge
rate can reach the policy. Ratios are smoothed with an EWMA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from coordinator.config import PolicyConfig
from coordinator.model import VmMetrics

# A vCPU thread cannot wait or run longer than wall time; allow for clock jitter
# between the counter reads of one collection before calling a reading corrupt.
_RATIO_TOLERANCE = 1.05


class SampleRejected(ValueError):
    """A counter sample is not physically possible (negative, NaN, zero vCPUs)."""


@dataclass(frozen=True, slots=True)
class CounterSample:
    """One VM's raw counters from one host report."""

    at: float  # coordinator clock, seconds
    monotonic_ns: int  # agent clock at collection
    vcpus: int
    cpu_time_ns: int
    steal_ns: int
    domain_id: int = 0
    guest_load: float | None = None
    memory_mib: float = 0.0
    disk_gib: float = 0.0
    # Measured by the agent (libvirt's dirty-rate calculation); None = none this report.
    dirty_rate_mib_s: float | None = None

    def validate(self) -> None:
        """Raise SampleRejected naming the first impossible field."""
        if self.vcpus <= 0:
            raise SampleRejected(f"vcpus must be positive, got {self.vcpus}")
        # Counters are typed int, but a JSON/replay path can hand over a float NaN,
        # which no comparison rejects and which would poison every later rate.
        # (Spelled out rather than looped over names: this runs for every VM of
        # every report.)
        checks = (
            ("monotonic_ns", self.monotonic_ns),
            ("cpu_time_ns", self.cpu_time_ns),
            ("steal_ns", self.steal_ns),
            ("at", self.at),
            ("memory_mib", self.memory_mib),
            ("disk_gib", self.disk_gib),
        )
        for name, value in checks:
            if not (0 <= value < math.inf):  # False for NaN, inf and negatives
                raise SampleRejected(f"{name} must be a finite non-negative number")
        if self.guest_load is not None and (
            not math.isfinite(self.guest_load) or self.guest_load < 0
        ):
            raise SampleRejected("guest_load must be a finite non-negative number")
        if self.dirty_rate_mib_s is not None and not 0 <= self.dirty_rate_mib_s < math.inf:
            raise SampleRejected("dirty_rate_mib_s must be a finite non-negative number")


@dataclass(frozen=True, slots=True)
class FoldSettings:
    """How counters become metrics."""

    smoothing: float = 0.5  # EWMA weight of the newest rate
    # The demand trend weighs readings by the time they cover: one of this many seconds
    # gets `smoothing`, shorter ones less (see _trend_weight).
    trend_span_s: float = 60.0
    max_gap_s: float = 60.0  # a longer gap between two readings re-bases instead
    steal_threshold: float = 0.10
    load_threshold: float = 0.60

    @staticmethod
    def from_policy(config: PolicyConfig, interval_s: float = 10.0) -> FoldSettings:
        return FoldSettings(
            max_gap_s=max(config.freshness_s, 3 * interval_s),
            steal_threshold=config.steal_threshold,
            load_threshold=config.load_threshold,
        )


@dataclass(frozen=True, slots=True)
class _Baseline:
    sample: CounterSample
    metrics: VmMetrics | None


class TelemetryFolder:
    """Keeps the last reading per VM and the smoothed metrics derived from them."""

    def __init__(self, settings: FoldSettings | PolicyConfig | None = None) -> None:
        if settings is None:
            settings = FoldSettings()
        elif isinstance(settings, PolicyConfig):
            settings = FoldSettings.from_policy(settings)
        self._settings = settings
        self._state: dict[str, _Baseline] = {}

    def observe(self, vm_uuid: str, sample: CounterSample) -> VmMetrics | None:
        """Fold one reading; the VM's new metrics, or None when it only re-based."""
        sample.validate()
        previous = self._state.get(vm_uuid)
        if previous is None:
            self._state[vm_uuid] = _Baseline(sample, None)
            return None
        if sample.dirty_rate_mib_s is None and previous.sample.dirty_rate_mib_s is not None:
            # A measurement stands until the next, even one that came with a re-base.
            sample = replace(sample, dirty_rate_mib_s=previous.sample.dirty_rate_mib_s)
        rates = _rates(previous.sample, sample, self._settings.max_gap_s)
        if rates is None:
            # Keep the smoothed history: a restart or gap says nothing about contention.
            self._state[vm_uuid] = _Baseline(sample, previous.metrics)
            return None
        # After a re-base the last metrics predate the baseline: no trend spans the gap.
        rebased = previous.metrics is not None and previous.metrics.sampled_at != previous.sample.at
        metrics = _smooth(previous.metrics, rates, sample, self._settings, rebased)
        self._state[vm_uuid] = _Baseline(sample, metrics)
        return metrics

    def metrics(self, vm_uuid: str) -> VmMetrics | None:
        baseline = self._state.get(vm_uuid)
        return baseline.metrics if baseline else None

    def forget(self, vm_uuid: str) -> None:
        self._state.pop(vm_uuid, None)

    def known(self) -> list[str]:
        return list(self._state)


@dataclass(frozen=True, slots=True)
class _Rates:
    steal: float
    busy: float
    load: float
    wall_s: float  # the interval the rates cover


def _rates(old: CounterSample, new: CounterSample, max_gap_s: float) -> _Rates | None:
    """Per-vCPU ratios between two readings, or None when they cannot be compared."""
    wall_ns = new.monotonic_ns - old.monotonic_ns
    if wall_ns <= 0 or wall_ns > max_gap_s * 1e9:
        return None  # replayed/duplicate report, agent restart, or too long a gap
    if new.domain_id != old.domain_id or new.vcpus != old.vcpus:
        return None  # the domain restarted (e.g. migrated in) or was resized
    d_steal = new.steal_ns - old.steal_ns
    d_cpu = new.cpu_time_ns - old.cpu_time_ns
    if d_steal < 0 or d_cpu < 0:
        return None  # counters reset
    capacity_ns = new.vcpus * wall_ns
    steal, busy = d_steal / capacity_ns, d_cpu / capacity_ns
    if steal + busy > _RATIO_TOLERANCE:
        # Corrupt: a vCPU thread cannot run and wait for longer than wall time.
        return None
    steal, busy = min(steal, 1.0), min(busy, 1.0)
    demand = min(busy + steal, 1.0)
    # A guest load average above its vCPU count says "more than busy", which the
    # policy's thresholds (at most 1.0 per vCPU) cannot use: keep load in [0, 1].
    load = min(new.guest_load / new.vcpus, 1.0) if new.guest_load is not None else demand
    return _Rates(steal=steal, busy=busy, load=load, wall_s=wall_ns / 1e9)


def _smooth(
    previous: VmMetrics | None,
    rates: _Rates,
    sample: CounterSample,
    settings: FoldSettings,
    rebased: bool,
) -> VmMetrics:
    alpha = settings.smoothing
    if previous is None or previous.sampled_at is None:
        steal, load = rates.steal, rates.load
        contended_before = 0.0
    else:
        steal = alpha * rates.steal + (1 - alpha) * previous.steal
        load = alpha * rates.load + (1 - alpha) * previous.load
        contended_before = previous.contended_s
    # "Sustained" sums raw readings' intervals, so one calm reading resets it even if the
    # EWMA still sits above the threshold.
    contended_now = rates.steal > settings.steal_threshold and rates.load > settings.load_threshold
    demand = min(rates.busy + rates.steal, 1.0) * sample.vcpus
    # Built directly rather than with dataclasses.replace: this runs for every VM
    # of every report, and replace() was the largest cost of a simulated day.
    return VmMetrics(
        steal=steal,
        load=load,
        cpu_demand=demand,
        demand_trend=0.0 if rebased else _trend(previous, demand, rates.wall_s, settings),
        dirty_rate_mib_s=_dirty_rate(previous, sample),
        contended_s=contended_before + rates.wall_s if contended_now else 0.0,
        sampled_at=sample.at,
    )


_MIN_TREND_INTERVAL_S = 1.0


def _trend(
    previous: VmMetrics | None, demand: float, wall_s: float, settings: FoldSettings
) -> float:
    """The smoothed rate at which the VM's demand changes, vCPUs per second, over the
    readings' own interval (the agent's clock: reports delivered in a burst after a
    network blip arrive milliseconds apart but still cover their seconds)."""
    if previous is None or previous.sampled_at is None:
        return 0.0
    # Readings closer than a second (a burst) cannot make a trend steeper than a
    # second's change: whatever the interval, the demand moved at most all vCPUs.
    interval_s = max(wall_s, _MIN_TREND_INTERVAL_S)
    rising = (demand - previous.cpu_demand) / interval_s
    weight = _trend_weight(settings.smoothing, interval_s, settings.trend_span_s)
    return weight * rising + (1 - weight) * previous.demand_trend


def _trend_weight(alpha: float, interval_s: float, span_s: float) -> float:
    """The newest reading's weight in the trend: `alpha` for a reading of `span_s`
    seconds, and such that n readings of span_s / n seconds weigh as much as one.

    A rate is a difference divided by the interval, so its noise grows as the interval
    shrinks: 10 s reports carry six times the noise per reading of 60 s ones. Weighted
    per reading, that noise went straight into the relief lookahead, which projects the
    trend a minute ahead: at the agents' 10 s interval the reference day's morning
    moved twice the GiB it moves at 60 s readings, for little less pain. Weighted by
    time, the trend averages over the same span whatever the interval (BENCHMARKS.md,
    "At the agents' 10 s interval").
    """
    return 1.0 - math.pow(1.0 - alpha, interval_s / span_s)


def _dirty_rate(previous: VmMetrics | None, sample: CounterSample) -> float:
    """The newest measured dirty rate: measurements come every few reports, and the
    last one stands until the next (the cost model's estimate applies while 0)."""
    if sample.dirty_rate_mib_s is not None:
        return sample.dirty_rate_mib_s
    return previous.dirty_rate_mib_s if previous is not None else 0.0
