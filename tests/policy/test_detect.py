"""Detection: who is a candidate, and which candidates may not be moved (and why)."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.model import GroupPolicy, Plan
from coordinator.policy import is_contended, plan
from tests.policy.builders import NOW, config, group, host, hot, metrics, snapshot, vm

DEFAULT = config()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, True, id="hot-vm"),
        pytest.param({"steal": 0.05, "load": 0.3}, False, id="steal-at-threshold-is-not-above"),
        pytest.param({"steal": 0.0501, "load": 0.3}, True, id="steal-just-above-threshold"),
        # Clogging, not busyness (issue 11): what counts is the share of the CPU the
        # VM wanted that it waited for, steal / (steal + run).
        pytest.param({"steal": 0.10, "load": 0.45}, True, id="wants-45-gets-35-is-clogged"),
        pytest.param({"steal": 0.09, "load": 0.95}, False, id="busy-but-barely-held-up"),
        pytest.param({"steal": 0.10, "load": 1.0}, False, id="clog-at-threshold-is-not-above"),
        pytest.param({"steal": 0.11, "load": 1.0}, True, id="clog-just-above-threshold"),
        pytest.param({"steal": 0.06, "load": 0.0}, True, id="steal-without-load-reading"),
        pytest.param({"steal": 0.0, "load": 1.0}, False, id="busy-but-no-steal"),
        pytest.param({"contended_s": 10.0}, False, id="one-10s-reading-is-not-sustained"),
        pytest.param({"contended_s": 20.0}, True, id="two-10s-readings-are-sustained"),
        pytest.param({"contended_s": 60.0}, True, id="one-60s-reading-is-sustained"),
        pytest.param({"contended_s": 0.0}, False, id="calm-last-reading"),
    ],
)
def test_is_contended_thresholds(fields: dict[str, Any], expected: bool) -> None:
    assert is_contended(vm("a", "h1", metrics=hot(**fields)), DEFAULT.policy) is expected


@pytest.mark.parametrize(
    ("policy", "fields", "expected"),
    [
        pytest.param({"steal_threshold": 0.2}, {"steal": 0.15}, False, id="higher-steal-threshold"),
        pytest.param({"load_threshold": 0.99}, {"load": 0.95}, False, id="higher-load-threshold"),
        pytest.param({"sustained_s": 60.0}, {"contended_s": 50.0}, False, id="need-60s"),
        pytest.param({"sustained_s": 10.0}, {"contended_s": 10.0}, True, id="need-10s"),
    ],
)
def test_is_contended_follows_config(
    policy: dict[str, Any], fields: dict[str, Any], expected: bool
) -> None:
    cfg = config(policy=policy)
    assert is_contended(vm("a", "h1", metrics=hot(**fields)), cfg.policy) is expected


def _plan_for(**vm_fields: Any) -> Plan:
    """A hot VM on h1, a calm empty h2: only the VM's own fields vary."""
    fields: dict[str, Any] = {"metrics": hot()}
    fields.update(vm_fields)
    groups = [
        group("aff", GroupPolicy.AFFINITY, ["a"]),
        group("soft-aff", GroupPolicy.SOFT_AFFINITY, ["a"]),
    ]
    return plan(snapshot([host("h1"), host("h2")], [vm("a", "h1", **fields)], groups), DEFAULT)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({"cooldown_until": NOW + 60}, "in cooldown for 60s more", id="cooldown"),
        pytest.param({"quarantined_until": NOW + 120}, "quarantined for 120s", id="quarantine"),
        pytest.param({"opt_out": True}, "opted out", id="opt-out"),
        pytest.param({"migrating": True}, "already migrating", id="migrating"),
        pytest.param(
            {"metrics": hot(sampled_at=NOW - 31)}, "telemetry is stale", id="stale-telemetry"
        ),
        pytest.param({"metrics": hot(sampled_at=None)}, "telemetry is stale", id="never-sampled"),
        pytest.param({"server_group": "aff"}, "affinity server group", id="affinity-group"),
        pytest.param({"known_to_nova": False}, "not known to Nova", id="unknown-to-nova"),
        pytest.param({"reported_by_agent": False}, "no agent reports", id="no-agent"),
    ],
)
def test_blocked_candidates_are_skipped_with_reason(fields: dict[str, Any], reason: str) -> None:
    result = _plan_for(**fields)
    assert result.moves == ()
    assert len(result.skipped) == 1
    assert reason in result.skipped[0].reason


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="plain"),
        pytest.param({"cooldown_until": NOW}, id="cooldown-just-expired"),
        pytest.param({"quarantined_until": NOW - 1}, id="quarantine-expired"),
        pytest.param({"metrics": hot(sampled_at=NOW - 30)}, id="telemetry-exactly-fresh"),
        pytest.param({"server_group": "soft-aff"}, id="soft-affinity-does-not-block"),
    ],
)
def test_eligible_candidates_move(fields: dict[str, Any]) -> None:
    result = _plan_for(**fields)
    assert [(m.vm_uuid, m.source, m.target) for m in result.moves] == [("a", "h1", "h2")]


def test_calm_vms_are_neither_moved_nor_listed_as_skipped() -> None:
    result = plan(
        snapshot([host("h1"), host("h2")], [vm("a", "h1", metrics=metrics(steal=0.5))]), DEFAULT
    )
    assert result.empty
    assert result.skipped == ()


@pytest.mark.parametrize(
    ("source_fields", "reason"),
    [
        pytest.param({"last_report_at": NOW - 31}, "source host's telemetry is stale", id="stale"),
        pytest.param({"last_report_at": None}, "source host's telemetry is stale", id="never"),
    ],
)
def test_source_host_freshness(source_fields: dict[str, Any], reason: str) -> None:
    snap = snapshot([host("h1", **source_fields), host("h2")], [vm("a", "h1", metrics=hot())])
    result = plan(snap, DEFAULT)
    assert result.moves == ()
    assert reason in result.skipped[0].reason


def test_vm_on_host_missing_from_inventory_is_skipped() -> None:
    result = plan(snapshot([host("h2")], [vm("a", "ghost", metrics=hot())]), DEFAULT)
    assert result.moves == ()
    assert "not in the inventory" in result.skipped[0].reason
