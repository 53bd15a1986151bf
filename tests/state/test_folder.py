"""TelemetryFolder: raw counters in, smoothed and safe per-VM metrics out."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.config import PolicyConfig
from coordinator.model import Vm, VmMetrics
from coordinator.policy import is_contended
from coordinator.policy.detect import clog_ratio
from coordinator.state import CounterSample, FoldSettings, SampleRejected, TelemetryFolder

S = 1_000_000_000  # ns per second
SETTINGS = FoldSettings(smoothing=0.5, max_gap_s=60.0, steal_threshold=0.10, load_threshold=0.60)


def sample(t: float, cpu_s: float, steal_s: float, vcpus: int = 2, **fields: Any) -> CounterSample:
    """A reading at t seconds with cumulative cpu/steal seconds (over all vCPUs)."""
    return CounterSample(
        at=t,
        monotonic_ns=int(t * S),
        vcpus=vcpus,
        cpu_time_ns=int(cpu_s * S),
        steal_ns=int(steal_s * S),
        **fields,
    )


def fold(*samples: CounterSample, settings: FoldSettings = SETTINGS) -> list[VmMetrics | None]:
    folder = TelemetryFolder(settings)
    return [folder.observe("vm", s) for s in samples]


@pytest.mark.parametrize(
    ("second", "steal", "load", "demand"),
    [
        # 2 vCPUs over 10 s = 20 vCPU-seconds of capacity.
        pytest.param(sample(10, 10, 4), 0.2, 0.7, 1.4, id="half-busy-20pct-steal"),
        pytest.param(sample(10, 20, 0), 0.0, 1.0, 2.0, id="fully-busy-no-steal"),
        pytest.param(sample(10, 0, 0), 0.0, 0.0, 0.0, id="idle"),
        pytest.param(sample(10, 2, 18), 0.9, 1.0, 2.0, id="mostly-waiting"),
        pytest.param(sample(10, 4, 2, guest_load=1.6), 0.1, 0.8, 0.6, id="guest-load-per-vcpu"),
        pytest.param(sample(10, 4, 2, guest_load=9.0), 0.1, 1.0, 0.6, id="guest-load-clamped"),
        # Clock jitter: a hair over wall time is clamped, not rejected.
        pytest.param(sample(10, 20.5, 0), 0.0, 1.0, 2.0, id="jitter-clamped"),
    ],
)
def test_ratios_from_counters(
    second: CounterSample, steal: float, load: float, demand: float
) -> None:
    first, metrics = fold(sample(0, 0, 0), second)
    assert first is None  # one reading gives no rate
    assert metrics is not None
    assert metrics.steal == pytest.approx(steal)
    assert metrics.load == pytest.approx(load)
    assert metrics.cpu_demand == pytest.approx(demand)
    assert metrics.sampled_at == 10


def test_ewma_smooths_with_the_configured_weight() -> None:
    readings = [sample(0, 0, 0), sample(10, 10, 4), sample(20, 20, 4), sample(30, 20, 12)]
    metrics = [m for m in fold(*readings) if m is not None]
    # raw steal: 0.2, 0.0, 0.4 -> EWMA(0.5): 0.2, 0.1, 0.25
    assert [m.steal for m in metrics] == pytest.approx([0.2, 0.1, 0.25])
    slow = fold(*readings, settings=replace(SETTINGS, smoothing=0.25))[-1]
    assert slow is not None
    assert slow.steal == pytest.approx(0.25 * 0.4 + 0.75 * (0.25 * 0.0 + 0.75 * 0.2))


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([(16, 4)] * 4, [1, 2, 3, 4], id="busy-and-stolen-counts-up"),
        pytest.param([(16, 4), (16, 4), (20, 0), (16, 4)], [1, 2, 0, 1], id="calm-reading-resets"),
        pytest.param([(5, 4), (5, 4)], [0, 0], id="stolen-but-idle-never-counts"),
        pytest.param([(18, 2), (16, 4)], [0, 1], id="steal-at-threshold-is-not-above"),
    ],
)
def test_sustained_sample_counting(steps: list[tuple[float, float]], expected: list[int]) -> None:
    cpu = steal = 0.0
    readings = [sample(0, 0, 0)]
    for k, (d_cpu, d_steal) in enumerate(steps, start=1):
        cpu, steal = cpu + d_cpu, steal + d_steal
        readings.append(sample(10 * k, cpu, steal))
    counts = [m.contended_s / 10 for m in fold(*readings)[1:] if m is not None]
    assert counts == expected


@pytest.mark.parametrize(
    "disruption",
    [
        pytest.param(sample(20, 1, 0.1, domain_id=2), id="domain-restart-new-id"),
        pytest.param(sample(20, 1, 0.1), id="counters-went-backwards"),
        pytest.param(sample(20, 20, 4, vcpus=4), id="resized"),
        pytest.param(sample(5, 5, 2), id="replayed-older-report"),
        pytest.param(sample(10, 10, 4), id="duplicate-report"),
        pytest.param(sample(200, 100, 40), id="long-gap"),
        pytest.param(sample(20, 100, 0), id="more-cpu-than-wall-time"),
        pytest.param(sample(20, 25, 14), id="run-plus-wait-exceeds-wall"),
    ],
)
def test_disruptions_rebase_without_a_rate(disruption: CounterSample) -> None:
    folder = TelemetryFolder(SETTINGS)
    folder.observe("vm", sample(0, 0, 0))
    before = folder.observe("vm", sample(10, 10, 4))
    assert folder.observe("vm", disruption) is None
    # The smoothed history is kept: a restart says nothing about contention.
    assert folder.metrics("vm") == before
    # The next regular reading is a rate against the re-based counters.
    follow = replace(
        disruption,
        at=disruption.at + 10,
        monotonic_ns=disruption.monotonic_ns + 10 * S,
        cpu_time_ns=disruption.cpu_time_ns + disruption.vcpus * 5 * S,
        steal_ns=disruption.steal_ns + disruption.vcpus * 1 * S,
    )
    after = folder.observe("vm", follow)
    assert after is not None
    # The EWMA starts again from that rate (0.1): the old 0.2 described other counters.
    assert after.steal == pytest.approx(0.1)
    assert 0.0 <= after.load <= 1.0


def test_domain_restart_after_migration_starts_counting_from_zero() -> None:
    """A migrated-in VM reports small counters under a new domain id: no negative rate."""
    metrics = fold(
        sample(0, 0, 0),
        sample(10, 1000, 400, domain_id=1),
        sample(20, 0.5, 0.0, domain_id=7),
        sample(30, 10.5, 0.0, domain_id=7),
    )
    assert metrics[2] is None
    last = metrics[3]
    assert last is not None
    assert last.steal >= 0


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        pytest.param({"vcpus": 0}, "vcpus", id="zero-vcpus"),
        pytest.param({"cpu_time_ns": -1}, "cpu_time_ns", id="negative-cpu"),
        pytest.param({"steal_ns": -5}, "steal_ns", id="negative-steal"),
        pytest.param({"monotonic_ns": -1}, "monotonic_ns", id="negative-clock"),
        pytest.param({"steal_ns": math.nan}, "steal_ns", id="nan-steal"),
        pytest.param({"cpu_time_ns": math.inf}, "cpu_time_ns", id="inf-cpu"),
        pytest.param({"at": math.nan}, "at", id="nan-time"),
        pytest.param({"guest_load": math.nan}, "guest_load", id="nan-guest-load"),
        pytest.param({"guest_load": -0.5}, "guest_load", id="negative-guest-load"),
        pytest.param({"memory_mib": -1.0}, "memory_mib", id="negative-memory"),
        pytest.param({"disk_gib": math.inf}, "disk_gib", id="inf-disk"),
    ],
)
def test_impossible_samples_are_rejected_naming_the_field(
    fields: dict[str, Any], field_name: str
) -> None:
    folder = TelemetryFolder(SETTINGS)
    folder.observe("vm", sample(0, 0, 0))
    good = folder.observe("vm", sample(10, 10, 4))
    with pytest.raises(SampleRejected, match=field_name):
        folder.observe("vm", replace(sample(20, 20, 8), **fields))
    assert folder.metrics("vm") == good  # a rejected sample changes nothing
    assert folder.observe("vm", sample(20, 20, 8)) is not None


def test_settings_from_policy_config_and_forget() -> None:
    policy = PolicyConfig(steal_threshold=0.2, load_threshold=0.3, freshness_s=45)
    settings = FoldSettings.from_policy(policy, interval_s=20.0)
    assert (settings.max_gap_s, settings.steal_threshold, settings.load_threshold) == (
        60.0,
        0.2,
        0.3,
    )
    folder = TelemetryFolder(policy)
    folder.observe("a", sample(0, 0, 0))
    folder.observe("b", sample(0, 0, 0))
    assert sorted(folder.known()) == ["a", "b"]
    folder.forget("a")
    assert folder.known() == ["b"]
    assert folder.metrics("a") is None


_readings = st.lists(
    st.tuples(
        st.integers(-30, 120),  # Δt in s (negative = replay)
        st.floats(-5, 25),  # Δcpu in s (negative = reset)
        st.floats(-5, 25),  # Δsteal in s
        st.sampled_from([1, 2, 2, 4]),  # vCPUs
        st.integers(1, 3),  # domain id
        st.one_of(st.none(), st.floats(0, 50)),  # guest load
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(readings=_readings, smoothing=st.floats(0.05, 1.0))
def test_no_sequence_yields_rates_outside_bounds(
    readings: list[tuple[int, float, float, int, int, float | None]], smoothing: float
) -> None:
    folder = TelemetryFolder(replace(SETTINGS, smoothing=smoothing))
    t = 1000.0
    cpu = steal = 100.0
    for dt, d_cpu, d_steal, vcpus, domain, guest in readings:
        t, cpu, steal = t + dt, max(cpu + d_cpu, 0.0), max(steal + d_steal, 0.0)
        folder.observe(
            "vm",
            sample(t, cpu, steal, vcpus=vcpus, domain_id=domain, guest_load=guest),
        )
        metrics = folder.metrics("vm")
        if metrics is None:
            continue
        for value in (metrics.steal, metrics.load):
            assert not math.isnan(value)
            assert 0.0 <= value <= 1.0
        assert 0.0 <= metrics.cpu_demand <= vcpus * 1.0 + 1e-9 or metrics.sampled_at != t
        assert metrics.contended_s >= 0


def test_folding_knows_every_metrics_field() -> None:
    """`_smooth` builds VmMetrics field by field (for speed): a new field in the model
    must be carried over there too, or it would silently reset on every sample."""
    from dataclasses import fields

    assert {f.name for f in fields(VmMetrics)} == {
        "steal",
        "load",
        "cpu_demand",
        "dirty_rate_mib_s",
        "contended_s",
        "sampled_at",
        "demand_trend",
        "peak_demand",
    }, "coordinator/state.py:_smooth must carry the new VmMetrics field"


# A 10 s reading's weight in the trend: one 60 s reading weighs `smoothing` (0.5).
W10 = 1 - 0.5 ** (10 / 60)


def test_demand_trend_follows_a_rising_then_flat_demand() -> None:
    """2 vCPUs going from 0.5 to 1.5 busy over 10 s readings: the trend is the rise per
    second (smoothed by time), and it decays once the demand stops rising."""
    t, cpu, trends = 0.0, 0.0, []
    folder = TelemetryFolder(SETTINGS)
    for busy in (0.5, 0.5, 1.0, 1.5, 1.5, 1.5, 1.5):
        t, cpu = t + 10.0, cpu + busy * 10.0
        metrics = folder.observe("vm", sample(t, cpu, 0.0))
        if metrics is not None:  # the first reading is only a baseline
            trends.append(metrics.demand_trend)
    assert trends[0] == 0.0  # a steady 0.5 vCPUs
    trends.insert(0, 0.0)  # index as the readings
    assert trends[2] == pytest.approx(W10 * 0.05)  # +0.5 vCPU in 10 s
    assert trends[3] == pytest.approx(W10 * 0.05 + (1 - W10) * trends[2])
    assert trends[3] > trends[4] > trends[5] > trends[6] > 0  # flat: it decays


def test_no_trend_spans_a_rebase_or_a_burst() -> None:
    folder = TelemetryFolder(SETTINGS)
    folder.observe("vm", sample(0, 0, 0))
    folder.observe("vm", sample(10, 5, 0))  # 0.5 vCPU busy
    # The domain restarted (migrated in): its counters start again at 1.5 vCPU busy.
    folder.observe("vm", sample(20, 0, 0, domain_id=2))
    after = folder.observe("vm", sample(30, 15, 0, domain_id=2))
    assert after is not None and after.cpu_demand == pytest.approx(1.5)
    assert after.demand_trend == 0.0  # not 1 vCPU over the 10 s since the re-base
    # A report covering a millisecond after the last, both vCPUs busy (+0.5 vCPU).
    burst = folder.observe("vm", sample(30.001, 15.002, 0, domain_id=2))
    assert burst is not None and burst.cpu_demand == pytest.approx(2.0)
    # +0.5 vCPU taken over a second at the steepest, weighed as a second: not 500 per
    # second, and not as much as a whole reading either.
    assert burst.demand_trend == pytest.approx(0.5 * (1 - 0.5 ** (1 / 60)))


def _ramp_trend(interval_s: float, minutes: int, rise_per_s: float = 0.001) -> float:
    """The trend after `minutes` of a steady rise (vCPUs per second) read every
    `interval_s`, from a flat start."""
    folder = TelemetryFolder(SETTINGS)
    t = cpu = 0.0
    demand = 0.5  # vCPUs
    folder.observe("vm", sample(t, cpu, 0.0))
    for _ in range(2):
        t, cpu = t + interval_s, cpu + demand * interval_s
        metrics = folder.observe("vm", sample(t, cpu, 0.0))
    assert metrics is not None and metrics.demand_trend == 0.0
    for _ in range(int(minutes * 60 / interval_s)):
        demand += rise_per_s * interval_s
        t, cpu = t + interval_s, cpu + demand * interval_s
        metrics = folder.observe("vm", sample(t, cpu, 0.0))
    assert metrics is not None
    return metrics.demand_trend


def test_the_trend_weighs_time_not_readings() -> None:
    """Six 10 s readings move the trend as far as one 60 s reading: an agent reporting
    every 10 s and the simulator's 60 s steps project the same rise a minute ahead.
    Weighed per reading, each 10 s reading (six times the noise of a 60 s one, being a
    difference over a sixth of the time) took half the weight."""
    one = _ramp_trend(60.0, minutes=1)
    six = _ramp_trend(10.0, minutes=1)
    assert one == pytest.approx(six)  # both half of the true 0.001 vCPU/s...
    assert one == pytest.approx(0.0005)
    # ...and a sustained rise is followed in full at either interval.
    assert _ramp_trend(10.0, minutes=10) == pytest.approx(0.001, rel=0.02)
    assert _ramp_trend(60.0, minutes=10) == pytest.approx(0.001, rel=0.02)


def test_one_noisy_short_reading_moves_the_trend_by_its_share_of_time() -> None:
    """+1 vCPU for one 10 s reading, then back: the trend moves by a sixth of what a
    60 s reading's jump would, not by half of a ten-second rate."""
    folder = TelemetryFolder(SETTINGS)
    folder.observe("vm", sample(0, 0, 0))
    folder.observe("vm", sample(10, 5, 0))  # 0.5 vCPU
    jumped = folder.observe("vm", sample(20, 20, 0))  # 1.5 vCPU
    assert jumped is not None
    assert jumped.demand_trend == pytest.approx(W10 * 0.1)  # +1 vCPU over 10 s
    assert jumped.demand_trend < 0.5 * 0.1 / 4


# -- what counts as current evidence ------------------------------------------------
POLICY_15S = PolicyConfig(sustained_s=15.0)


def _contended_for_20s(folder: TelemetryFolder) -> VmMetrics:
    """Two 10 s readings of 60% run and 40% steal on 2 vCPUs: a 20 s streak."""
    folder.observe("vm", sample(0, 0, 0))
    folder.observe("vm", sample(10, 12, 8))
    metrics = folder.observe("vm", sample(20, 24, 16))
    assert metrics is not None and metrics.contended_s == 20
    return metrics


@pytest.mark.parametrize(
    ("rebase", "replayed"),
    [
        pytest.param(sample(3620, 24 + 4320, 16 + 2880), False, id="an-hour-of-silence"),
        pytest.param(sample(30, 0, 0, domain_id=2), False, id="guest-rebooted-new-domain"),
        pytest.param(sample(30, 1, 0.5), False, id="counters-reset"),
        pytest.param(sample(30, 36, 24), True, id="replayed"),
    ],
)
def test_the_ewma_and_streak_start_again_after_a_rebase(
    rebase: CounterSample, replayed: bool
) -> None:
    """What came before a re-base describes other counters: the first rate after it is
    taken as it is, not blended with the old steal, and no streak carries over."""
    folder = TelemetryFolder(FoldSettings.from_policy(POLICY_15S))
    _contended_for_20s(folder)
    assert folder.observe("vm", rebase, replayed=replayed) is None
    # 90% run and 5% steal, then 60% run and 40% steal, 10 s each.
    after = folder.observe("vm", _later(rebase, 10, run_s=18, steal_s=1))
    assert after is not None
    assert after.contended_s == 0  # calm: the streak is over, and nothing carried over
    assert after.steal == pytest.approx(0.05)  # not 0.5 * 0.4 + 0.5 * 0.05
    contended = folder.observe("vm", _later(rebase, 20, run_s=18 + 12, steal_s=1 + 8))
    assert contended is not None and contended.contended_s == 10


@pytest.mark.parametrize(
    "rebase",
    [
        pytest.param(sample(3620, 24 + 4320, 16 + 2880), id="an-hour-of-silence"),
        pytest.param(sample(30, 0, 0, domain_id=2), id="guest-rebooted-new-domain"),
    ],
)
def test_a_streak_does_not_span_a_rebase(rebase: CounterSample) -> None:
    """Still contended after the re-base: one 10 s reading after it is 10 s of evidence
    (under sustained_s = 15 s), not 30 s carried across an hour or a guest reboot."""
    folder = TelemetryFolder(FoldSettings.from_policy(POLICY_15S))
    _contended_for_20s(folder)
    assert folder.observe("vm", rebase) is None
    after = folder.observe("vm", _later(rebase, 10, run_s=12, steal_s=8))
    assert after is not None and after.contended_s == 10
    assert not is_contended(_vm(after), POLICY_15S)


def test_replayed_readings_only_keep_the_counters_baseline() -> None:
    """Readings an agent replays from its buffer arrive stamped now but were measured up
    to an hour ago: they yield no metrics, leave the last ones (and their sampled_at)
    alone, and the next live reading is a rate against the newest of them."""
    folder = TelemetryFolder(SETTINGS)
    folder.observe("vm", sample(0, 0, 0))
    live = folder.observe("vm", sample(10, 10, 0))  # calm: 50% run, no steal
    assert live is not None
    # Buffered while the stream was down: heavy steal, but all of it in the past.
    cpu = steal = 0.0
    for k in range(1, 7):
        cpu, steal = 10 + 12 * k, 8 * k
        replayed = replace(sample(10 + 10 * k, cpu, steal), at=100.0)  # arrived at 100
        assert folder.observe("vm", replayed, replayed=True) is None
        assert folder.metrics("vm") == live  # nothing new counts as measured
    after = folder.observe("vm", sample(80, cpu + 12, steal + 8))
    assert after is not None
    assert after.steal == pytest.approx(0.4)  # a rate from the newest replayed counters
    assert after.contended_s == 10  # and a streak that starts there


@pytest.mark.parametrize(
    ("guest_load", "load"),
    [
        pytest.param(0.0, 1.0, id="guest-says-idle-host-saw-it-busy"),
        pytest.param(0.4, 1.0, id="guest-below-host"),
        pytest.param(None, 1.0, id="no-guest-agent"),
    ],
)
def test_a_guest_load_below_what_the_host_saw_does_not_make_a_vm_clogged(
    guest_load: float | None, load: float
) -> None:
    """95% run and 6% steal, seen from the host: the VM waited for 6% of its work. A
    guest agent (inside the tenant's VM) saying it wants less cannot shrink "wanted"
    until the 6% is all of it and the shared migration budget is spent on it."""
    folder = TelemetryFolder(FoldSettings.from_policy(PolicyConfig()))
    metrics = None
    for n in range(4):
        reading = sample(10 * n, n * 10 * 4 * 0.94, n * 10 * 4 * 0.06, vcpus=4)
        metrics = folder.observe("vm", replace(reading, guest_load=guest_load)) or metrics
    assert metrics is not None
    assert metrics.load == pytest.approx(load)
    assert clog_ratio(_vm(metrics)) == pytest.approx(0.06)
    assert not is_contended(_vm(metrics), PolicyConfig())


def _later(base: CounterSample, seconds: int, run_s: float, steal_s: float) -> CounterSample:
    """A reading `seconds` after `base` on the same counters, with run and steal seconds
    (over all vCPUs) added."""
    return replace(
        base,
        at=base.at + seconds,
        monotonic_ns=base.monotonic_ns + seconds * S,
        cpu_time_ns=base.cpu_time_ns + int(run_s * S),
        steal_ns=base.steal_ns + int(steal_s * S),
    )


def _vm(metrics: VmMetrics) -> Vm:
    return Vm(uuid="vm", name="vm", host="h", vcpus=2, ram_mib=1, metrics=metrics)


def test_peak_demand_is_remembered_and_fades_by_half_each_half_life() -> None:
    settings = replace(SETTINGS, peak_half_life_s=100.0)
    # Both vCPUs busy for 10 s (2.0 vCPUs wanted), then 0.02 vCPUs for 100 s.
    *_, busy, calm_50, calm_100 = fold(
        sample(0, 0, 0), sample(10, 20, 0), sample(60, 21, 0), sample(110, 22, 0), settings=settings
    )
    assert busy is not None and calm_50 is not None and calm_100 is not None
    assert busy.peak_demand == pytest.approx(2.0)
    assert calm_50.cpu_demand == pytest.approx(0.02)
    assert calm_50.peak_demand == pytest.approx(2.0 * 0.5**0.5)
    assert calm_100.peak_demand == pytest.approx(1.0)


def test_peak_demand_spans_a_rebase_and_zero_half_life_remembers_nothing() -> None:
    settings = replace(SETTINGS, peak_half_life_s=100.0)
    # The domain restarted (a migration landed): the averages start again, the peak
    # is the VM's own and carries over, faded by the 20 s since.
    *_, rebased, after = fold(
        sample(0, 0, 0),
        sample(10, 20, 0),
        sample(20, 0, 0, domain_id=2),
        sample(30, 0.2, 0, domain_id=2),
        settings=settings,
    )
    assert rebased is None and after is not None
    assert after.peak_demand == pytest.approx(2.0 * 0.5**0.2)
    *_, forgetful = fold(
        sample(0, 0, 0),
        sample(10, 20, 0),
        sample(20, 20.2, 0),
        settings=replace(settings, peak_half_life_s=0.0),
    )
    assert forgetful is not None and forgetful.peak_demand == pytest.approx(forgetful.cpu_demand)


def test_the_policy_sets_the_peak_half_life() -> None:
    assert FoldSettings.from_policy(PolicyConfig(peak_half_life_s=7.0)).peak_half_life_s == 7.0


def test_a_vm_new_to_the_folder_takes_only_the_peak_it_left_behind() -> None:
    settings = replace(SETTINGS, peak_half_life_s=100.0)
    elsewhere = VmMetrics(steal=0.5, cpu_demand=1.5, peak_demand=9.0, sampled_at=0.0)
    folder = TelemetryFolder(settings)
    assert folder.observe("vm", sample(100, 0, 0), left_behind=elsewhere) is None
    landed = folder.observe("vm", sample(110, 2, 0))
    assert landed is not None
    # Rates from this host's counters alone; the peak capped at the VM's 2 vCPUs here
    # and faded by the 110 s since it was read.
    assert landed.steal == 0.0 and landed.cpu_demand == pytest.approx(0.2)
    assert landed.peak_demand == pytest.approx(2.0 * 0.5**1.1)
