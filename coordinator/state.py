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
rate can reach the policy. Ratios are smoothed with an EWMA; the first rate after a
re-base starts the EWMA and the contended streak afresh (see _smooth).

A guest agent's load can only raise "wanted" above what the host measured (busy +
steal), never lower it: the figure comes from inside the tenant's VM, and a lower one
would make a barely-stolen VM look clogged (clog ratio = steal / wanted).
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
    peak_half_life_s: float = 24 * 3600.0  # how fast a VM's remembered peak fades

    @staticmethod
    def from_policy(config: PolicyConfig, interval_s: float = 10.0) -> FoldSettings:
        return FoldSettings(
            max_gap_s=max(config.freshness_s, 3 * interval_s),
            steal_threshold=config.steal_threshold,
            load_threshold=config.load_threshold,
            peak_half_life_s=config.peak_half_life_s,
        )


@dataclass(frozen=True, slots=True)
class _Baseline:
    sample: CounterSample
    metrics: VmMetrics | None
    # The counters were re-based since `metrics` were computed: they predate `sample`.
    rebased: bool = False
    # (peak demand, read at) the VM brought from the host it left (see `observe`).
    inherited_peak: tuple[float, float] | None = None


class TelemetryFolder:
    """Keeps the last reading per VM and the smoothed metrics derived from them."""

    def __init__(self, settings: FoldSettings | PolicyConfig | None = None) -> None:
        if settings is None:
            settings = FoldSettings()
        elif isinstance(settings, PolicyConfig):
            settings = FoldSettings.from_policy(settings)
        self._settings = settings
        self._state: dict[str, _Baseline] = {}

    def observe(
        self,
        vm_uuid: str,
        sample: CounterSample,
        replayed: bool = False,
        left_behind: VmMetrics | None = None,
    ) -> VmMetrics | None:
        """Fold one reading; the VM's new metrics, or None when it only re-based.

        `left_behind` is the VM's metrics on the host it was on before, for a VM this
        folder has no state of: only its peak demand is taken from them (capped at this
        reading's vCPUs), since the service keeps one folder per host and the peak is
        the VM's own (see `_peak`); every rate starts from this host's counters.

        A `replayed` reading (sent from an agent's buffer after a reconnect) only
        re-bases: `sample.at` is when it arrived, not when it was measured, which may be
        an hour earlier, so a rate from it would pass old contention off as current. Its
        counters still become the baseline, so the next live reading yields a rate.
        """
        sample.validate()
        previous = self._state.get(vm_uuid)
        if previous is None:
            self._state[vm_uuid] = _Baseline(sample, None, False, _peak_of(left_behind, sample))
            return None
        if sample.dirty_rate_mib_s is None and previous.sample.dirty_rate_mib_s is not None:
            # A measurement stands until the next, even one that came with a re-base.
            sample = replace(sample, dirty_rate_mib_s=previous.sample.dirty_rate_mib_s)
        rates = None if replayed else _rates(previous.sample, sample, self._settings.max_gap_s)
        if rates is None:
            # The last metrics stay until the next rate replaces them (they go stale by
            # their sampled_at); they no longer describe the counters from here on.
            self._state[vm_uuid] = replace(previous, sample=sample, rebased=True)
            return None
        metrics = _smooth(previous, rates, sample, self._settings)
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
    load = demand if new.guest_load is None else _guest_load(new.guest_load / new.vcpus, demand)
    return _Rates(steal=steal, busy=busy, load=load, wall_s=wall_ns / 1e9)


def _guest_load(guest_per_vcpu: float, host_demand: float) -> float:
    """The guest agent's load per vCPU, never below what the host saw the VM run and
    wait for: the guest agent runs inside the tenant's VM, and a lower figure would
    shrink "wanted" until a barely-stolen VM looks clogged and spends the shared
    migration budget. It may raise it: the guest sees its own run queue, the host
    only the time its vCPU threads ran or waited. A load average above the vCPU count
    says "more than busy", which the policy's thresholds (at most 1.0 per vCPU) cannot
    use: kept in [0, 1]."""
    return max(min(guest_per_vcpu, 1.0), host_demand)


def _smooth(
    baseline: _Baseline, rates: _Rates, sample: CounterSample, settings: FoldSettings
) -> VmMetrics:
    previous, rebased = baseline.metrics, baseline.rebased
    alpha = settings.smoothing
    # After a re-base (a gap, a restarted or migrated-in domain, a counter reset, a
    # replay) the EWMA and the streak start again from this rate, as for a VM's first:
    # what came before describes another period or another QEMU process (after a
    # migration: another host's contention). Carried over, one reading after an hour's
    # silence or a guest reboot was "sustained", and half of old steal stood in the
    # smoothed figure a calm VM showed. The first rate alone is noisier, but it takes
    # `sustained_s` of consecutive readings to act on it.
    if previous is None or previous.sampled_at is None or rebased:
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
        peak_demand=_peak(
            _last_peak(previous, baseline.inherited_peak), demand, sample.at, settings
        ),
    )


_MIN_TREND_INTERVAL_S = 1.0


def _peak(
    last: tuple[float, float] | None, demand: float, at: float, settings: FoldSettings
) -> float:
    """The VM's remembered peak demand: this reading's if higher, else the last peak
    faded by the time since (halved every `peak_half_life_s`; 0 remembers nothing).

    It spans re-bases, unlike the averages, and a migration (`observe`'s
    `left_behind`): how much CPU the VM wants at its busiest is the VM's, not its
    host's. Readings come from the host's counters (run + wait), never from the guest,
    so a tenant cannot raise it above its vCPUs; it only orders targets."""
    if last is None or settings.peak_half_life_s <= 0:
        return demand
    peak, read_at = last
    fade = math.pow(0.5, max(at - read_at, 0.0) / settings.peak_half_life_s)
    return max(demand, peak * fade)


def _last_peak(
    previous: VmMetrics | None, inherited: tuple[float, float] | None
) -> tuple[float, float] | None:
    if previous is not None and previous.sampled_at is not None:
        return previous.peak_demand, previous.sampled_at
    return inherited


def _peak_of(metrics: VmMetrics | None, sample: CounterSample) -> tuple[float, float] | None:
    """The peak a VM brings from the host it left, no more than all its vCPUs here
    (the host it left may have claimed anything for it)."""
    if metrics is None or metrics.sampled_at is None:
        return None
    return min(metrics.peak_demand, float(sample.vcpus)), metrics.sampled_at


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
