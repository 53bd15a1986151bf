"""Target selection: the hard filters, then the preference order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from coordinator.model import ClusterSnapshot, GroupPolicy, Vm, VmMetrics
from coordinator.policy import plan
from coordinator.policy.explain import explain
from tests.policy.builders import NOW, config, filler, flight, group, host, hot, snapshot, vm

DEFAULT = config()


def _with_role(vms: list[Vm], role: str) -> list[Vm]:
    return [replace(v, role=role) for v in vms]


def _only_target(**h2_fields: Any) -> tuple[list[Any], list[Vm]]:
    return [host("h1"), host("h2", **h2_fields)], [vm("a", "h1", metrics=hot())]


def _unmeasured(count: int, running: bool = True) -> list[Vm]:
    """VMs Nova places on h2 that its agent gives no numbers for."""
    return [vm(f"u-{i}", "h2", metrics=VmMetrics(), running=running) for i in range(count)]


def _case(
    h2: dict[str, Any] | None = None,
    on_h2: list[Vm] | None = None,
    vm_fields: dict[str, Any] | None = None,
    groups_members: list[tuple[str, GroupPolicy, list[str]]] | None = None,
    in_flight: tuple[Any, ...] = (),
    quarantined: dict[str, float] | None = None,
) -> ClusterSnapshot:
    fields: dict[str, Any] = {"metrics": hot()}
    fields.update(vm_fields or {})
    hosts = [host("h1"), host("h2", **(h2 or {})), host("h9", az="az2")]
    vms = [vm("a", "h1", **fields), *(on_h2 or [])]
    groups = [group(g, p, m) for g, p, m in groups_members or []]
    return snapshot(hosts, vms, groups, in_flight=in_flight, quarantined_targets=quarantined)


@pytest.mark.parametrize(
    ("snap", "reason"),
    [
        # h2 would be fine but is in another AZ: only the (hot) source is left to consider.
        pytest.param(_case(h2={"az": "az3"}), "steal 30.0%", id="other-az-never-offered"),
        pytest.param(_case(h2={"enabled": False}), "compute service disabled", id="disabled"),
        pytest.param(_case(h2={"up": False}), "compute service down", id="down"),
        pytest.param(_case(h2={"last_report_at": NOW - 31}), "telemetry stale", id="stale-agent"),
        pytest.param(_case(h2={"last_report_at": None}), "telemetry stale", id="never-reported"),
        pytest.param(
            _case(on_h2=filler("f", "h2", 2, 0.2, steal=0.03)), "not below 3.0%", id="steal-at-max"
        ),
        pytest.param(
            _case(h2={"cpu_allocation_ratio": 0.1}), "vCPU allocation", id="vcpu-allocation"
        ),
        pytest.param(
            _case(h2={"pcpus": 3, "cpu_allocation_ratio": 1.0}, on_h2=filler("f", "h2", 1, 0.1)),
            "vCPU allocation",
            id="vcpu-allocation-with-residents",
        ),
        pytest.param(_case(h2={"ram_mib": 4095}), "RAM would exceed", id="ram"),
        pytest.param(
            _case(h2={"ram_mib": 8190, "ram_allocation_ratio": 0.5}), "RAM", id="ram-ratio"
        ),
        pytest.param(
            _case(on_h2=filler("f", "h2", 4, 2.75)), "predicted CPU demand", id="predicted-fill"
        ),
        pytest.param(
            _case(on_h2=_unmeasured(6)),
            "12 vCPUs of its VMs unmeasured and counted busy",
            id="agent-gives-no-numbers-for-its-vms",
        ),
        pytest.param(
            _case(
                on_h2=[vm("b", "h2", server_group="g")],
                vm_fields={"server_group": "g"},
                groups_members=[("g", GroupPolicy.ANTI_AFFINITY, ["a", "b"])],
            ),
            "anti-affinity",
            id="hard-anti-affinity",
        ),
        pytest.param(
            _case(in_flight=(flight("x", "h7", "h2"),)), "per-target migration cap", id="target-cap"
        ),
        pytest.param(
            _case(quarantined={"h2": NOW + 1}), "quarantined as a target", id="quarantined"
        ),
        pytest.param(
            _case(in_flight=(flight("x", "h2", "h7"),)),
            "a migration is leaving it",
            id="shedding-load-in-flight",
        ),
    ],
)
def test_target_filters(snap: ClusterSnapshot, reason: str) -> None:
    result = plan(snap, DEFAULT)
    assert result.moves == ()
    assert len(result.skipped) == 1
    assert result.skipped[0].reason.startswith("no eligible target")
    assert reason in result.skipped[0].reason


@pytest.mark.parametrize(
    "snap",
    [
        pytest.param(_case(), id="plain"),
        pytest.param(_case(on_h2=filler("f", "h2", 2, 0.2, steal=0.029)), id="steal-below-max"),
        pytest.param(_case(on_h2=filler("f", "h2", 4, 2.7)), id="fill-just-below-max"),
        pytest.param(_case(h2={"ram_mib": 4096}), id="ram-exactly-fits"),
        pytest.param(_case(on_h2=_unmeasured(2)), id="a-few-unmeasured-counted-busy-still-fit"),
        pytest.param(_case(on_h2=_unmeasured(6, running=False)), id="shut-off-vms-want-no-cpu"),
        pytest.param(_case(quarantined={"h2": NOW}), id="target-quarantine-expired"),
        pytest.param(
            _case(
                on_h2=[vm("b", "h2", server_group="g")],
                vm_fields={"server_group": "g"},
                groups_members=[("g", GroupPolicy.SOFT_ANTI_AFFINITY, ["a", "b"])],
            ),
            id="soft-anti-affinity-is-not-a-filter",
        ),
        pytest.param(
            _case(
                on_h2=[vm("b", "h2", server_group="other")],
                vm_fields={"server_group": "g"},
                groups_members=[
                    ("g", GroupPolicy.ANTI_AFFINITY, ["a"]),
                    ("other", GroupPolicy.ANTI_AFFINITY, ["b"]),
                ],
            ),
            id="anti-affinity-of-another-group",
        ),
    ],
)
def test_target_accepted(snap: ClusterSnapshot) -> None:
    result = plan(snap, DEFAULT)
    assert [(m.source, m.target) for m in result.moves] == [("h1", "h2")]


def _choose(
    on_h2: list[Vm],
    on_h3: list[Vm],
    vm_fields: dict[str, Any] | None = None,
    groups: list[tuple[str, GroupPolicy, list[str]]] | None = None,
    **policy: Any,
) -> str:
    fields: dict[str, Any] = {"metrics": hot(), "role": "web"}
    fields.update(vm_fields or {})
    snap = snapshot(
        [host("h1"), host("h2"), host("h3")],
        [vm("a", "h1", **fields), *on_h2, *on_h3],
        [group(g, p, m) for g, p, m in groups or []],
    )
    result = plan(snap, config(policy=policy) if policy else DEFAULT)
    assert len(result.moves) == 1, result.skipped
    return result.moves[0].target


@pytest.mark.parametrize(
    ("on_h2", "on_h3", "expected"),
    [
        pytest.param(
            filler("s", "h2", 1, 0.5, steal=0.025),
            filler("c", "h3", 4, 2.0),
            "h3",
            id="least-steal-beats-headroom",
        ),
        pytest.param(
            filler("s", "h2", 1, 0.5, steal=0.005),
            _with_role(filler("w", "h3", 1, 0.1), "web"),
            "h2",
            id="steal-tie-band-then-fewest-same-role",
        ),
        pytest.param(
            _with_role(filler("w", "h2", 2, 0.1), "web"),
            _with_role(filler("w3", "h3", 1, 4.0), "web"),
            "h3",
            id="fewer-same-role-beats-headroom",
        ),
        pytest.param(
            _with_role(filler("d", "h2", 3, 0.1), "db"),
            filler("c", "h3", 1, 1.0),
            "h2",
            id="other-roles-do-not-count",
        ),
        pytest.param(filler("c", "h2", 1, 3.0), filler("c3", "h3", 1, 1.0), "h3", id="headroom"),
        pytest.param([], [], "h2", id="full-tie-by-name"),
    ],
)
def test_target_order(on_h2: list[Vm], on_h3: list[Vm], expected: str) -> None:
    assert _choose(on_h2, on_h3) == expected


def test_soft_anti_affinity_breaks_role_tie_before_headroom() -> None:
    member = vm("b", "h2", server_group="g", opt_out=True)
    chosen = _choose(
        [member],
        filler("c", "h3", 1, 3.0),
        vm_fields={"server_group": "g"},
        groups=[("g", GroupPolicy.SOFT_ANTI_AFFINITY, ["a", "b"])],
    )
    assert chosen == "h3"


def test_zero_tie_band_compares_raw_steal() -> None:
    on_h2 = filler("s", "h2", 1, 0.5, steal=0.005)
    on_h3 = _with_role(filler("w", "h3", 1, 0.1), "web")
    assert _choose(on_h2, on_h3, steal_tie_band=0.0) == "h3"


def test_move_records_chosen_first_and_rejected_reasons() -> None:
    snap = snapshot(
        [host("h1"), host("h2"), host("h3", enabled=False), host("h4", az="az2")],
        [vm("a", "h1", metrics=hot())],
    )
    (move,) = plan(snap, DEFAULT).moves
    assert move.targets[0].host == "h2"
    assert move.targets[0].eligible
    rejected = {s.host: s.rejected_because for s in move.targets if not s.eligible}
    # The hot source fails the steal filter before the "is the source host" check.
    assert rejected == {"h1": "steal 30.0% not below 3.0%", "h3": "compute service disabled"}


def test_a_host_shedding_load_this_round_takes_no_vm_in_the_same_round() -> None:
    """Two hot hosts: once h1's VM is planned away, h1 must not receive h2's VM."""
    hosts = [host("h1"), host("h2"), host("h3")]
    vms = [vm("a", "h1", metrics=hot()), vm("b", "h2", metrics=hot())]
    busy_h3 = filler("f", "h3", 4, 2.5)  # room for one hot VM, and one arrival a round
    result = plan(snapshot(hosts, [*vms, *busy_h3]), DEFAULT)
    assert [(m.vm_uuid, m.source, m.target) for m in result.moves] == [("a", "h1", "h3")]
    (skipped,) = result.skipped
    assert skipped.vm_uuid == "b" and "a migration is leaving it" in skipped.reason


def _peaky(
    prefix: str, on: str, count: int, now: float, peak: float, steal: float = 0.0
) -> list[Vm]:
    """Background VMs wanting `now` vCPUs each, whose remembered peak is `peak`."""
    return [
        replace(v, metrics=replace(v.metrics, peak_demand=peak))
        for v in filler(prefix, on, count, now, steal=steal)
    ]


def test_a_host_over_its_pcpus_at_its_vms_peaks_ranks_after_one_that_fits() -> None:
    """h2 is idle between its tenants' peaks (4 × 0.4 vCPUs now, 4 × 4 at their peak:
    all 16 pCPUs before the VM); h3 is busier now but fits at its peaks."""
    on_h2 = _peaky("p", "h2", 4, now=0.4, peak=4.0)
    on_h3 = filler("c", "h3", 1, 3.0)
    assert _choose(on_h2, on_h3) == "h3"
    snap = snapshot([host("h1"), host("h2")], [vm("a", "h1", metrics=hot()), *on_h2])
    move = plan(snap, DEFAULT).moves[0]
    # With h3 gone, h2 still takes it: a preference, never a filter.
    assert move.target == "h2"
    assert move.targets[0].peak_headroom_cpus == pytest.approx(16 - 16 - 1.9)
    assert "(-1.9 at its VMs' recent peaks)" in move.reason


def test_the_peak_tier_comes_before_steal_and_the_usual_order_within_it() -> None:
    fits_but_stealier = filler("s", "h2", 1, 0.5, steal=0.025)
    over_at_peaks = _peaky("p", "h3", 4, now=0.4, peak=4.0)
    assert _choose(fits_but_stealier, over_at_peaks) == "h2"
    both_over_h2_stealier = _peaky("s", "h2", 4, now=0.4, peak=4.0, steal=0.025)
    assert _choose(both_over_h2_stealier, over_at_peaks) == "h3"


def test_explain_says_a_target_ranked_lower_is_over_at_its_vms_peaks() -> None:
    on_h2 = _peaky("p", "h2", 4, now=0.4, peak=4.0)
    snap = snapshot(
        [host("h1"), host("h2"), host("h3")],
        [vm("a", "h1", metrics=hot()), *on_h2, *filler("c", "h3", 1, 3.0)],
    )
    reasons = explain(snap, DEFAULT, "a").reasons
    assert (
        "target h2: eligible, ranked lower (steal 0.0%, 0 same-role, over by 1.9 pCPUs "
        "at its VMs' recent peaks)" in reasons
    )
