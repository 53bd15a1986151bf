"""The round's scratch copy, `explain` and `plan_one`."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coordinator.model import GroupPolicy, Move, Skipped
from coordinator.policy import explain, plan, plan_one
from coordinator.policy.scratch import RoundState
from tests.policy.builders import NOW, config, filler, group, host, hot, snapshot, vm

ROOMY = config(limits={"max_per_target": 5, "max_per_source": 5})


def test_second_move_sees_the_first_ones_cpu() -> None:
    """h2 has room for one hot VM's demand, not two: the second finds no target."""
    snap = snapshot(
        [host("h1"), host("h2")],
        [vm("a", "h1", metrics=hot()), vm("b", "h1", metrics=hot()), *filler("f", "h2", 1, 10.0)],
    )
    result = plan(snap, ROOMY)
    assert [m.vm_uuid for m in result.moves] == ["a"]
    assert "predicted CPU demand" in result.skipped[0].reason


def test_second_move_sees_the_first_ones_role() -> None:
    web = {"metrics": hot(), "role": "web"}
    snap = snapshot(
        [host("h1"), host("h2"), host("h3")], [vm("a", "h1", **web), vm("b", "h1", **web)]
    )
    assert [(m.vm_uuid, m.target) for m in plan(snap, ROOMY).moves] == [("a", "h2"), ("b", "h3")]


def test_second_move_sees_the_first_ones_anti_affinity() -> None:
    fields = {"metrics": hot(), "server_group": "g"}
    snap = snapshot(
        [host("h1"), host("h2"), host("h3", pcpus=15)],
        [vm("a", "h1", **fields), vm("b", "h1", **fields)],
        [group("g", GroupPolicy.ANTI_AFFINITY, ["a", "b"])],
    )
    targets = {m.vm_uuid: m.target for m in plan(snap, ROOMY).moves}
    assert targets == {"a": "h2", "b": "h3"}


def test_round_state_accounts_moves_without_touching_the_snapshot() -> None:
    moved = vm("a", "h1", metrics=hot(), role="web")
    snap = snapshot([host("h1"), host("h2")], [moved, *filler("f", "h1", 1, 1.0, steal=0.1)])
    state = RoundState.of(snap)
    before = state.load("h1").steal
    state.apply_move(moved, "h2")
    assert state.load("h1").vms == 1
    assert state.load("h1").steal == pytest.approx(0.1) != before
    assert state.load("h2").vms == 1
    assert state.load("h2").roles["web"] == 1
    assert state.load("h2").steal == 0.0  # predicted relieved on the calm target
    assert state.load("h2").demand == pytest.approx(moved.metrics.cpu_demand)
    assert snap.vms["a"].host == "h1"
    assert RoundState.of(snap).load("h2").vms == 0


def test_plan_is_deterministic_and_pure() -> None:
    snap = snapshot(
        [host(f"h{i}") for i in range(6)],
        [vm(f"v{i}", f"h{i % 3}", metrics=hot(steal=0.1 + i / 100)) for i in range(9)],
    )
    first, second = plan(snap, ROOMY), plan(snap, ROOMY)
    assert first == second
    assert first.moves


# -- explain -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uuid", "verdict", "reason_part"),
    [
        pytest.param("ghost", "unknown VM", "no VM 'ghost'", id="unknown"),
        pytest.param("calm", "stays: not contended", "contended for 0 s of the 15 s", id="calm"),
        pytest.param("hot", "would move to h2", "target h2: chosen", id="moves"),
        pytest.param("cool", "stays: in cooldown", "not movable: in cooldown", id="cooldown"),
        pytest.param("opt", "stays: opted out", "not movable: opted out", id="opted-out"),
    ],
)
def test_explain(uuid: str, verdict: str, reason_part: str) -> None:
    snap = snapshot(
        [host("h1"), host("h2"), host("h3", enabled=False)],
        [
            vm("calm", "h1"),
            vm("hot", "h1", metrics=hot()),
            vm("cool", "h1", metrics=hot(), cooldown_until=NOW + 10),
            vm("opt", "h1", metrics=hot(), opt_out=True),
        ],
    )
    answer = explain(snap, config(), uuid)
    assert answer.verdict.startswith(verdict)
    assert any(reason_part in line for line in answer.reasons), answer.reasons
    assert (answer.move is not None) is (uuid == "hot")


def test_explain_names_rejected_targets_and_lack_of_target() -> None:
    snap = snapshot([host("h1"), host("h2", up=False)], [vm("hot", "h1", metrics=hot())])
    answer = explain(snap, config(), "hot")
    assert (
        answer.verdict
        == "stays: no eligible target: compute service down; steal 30.0% not below 3.0%"
    )
    assert answer.move is None


# -- plan_one (manual) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("uuid", "target", "expected"),
    [
        pytest.param("cool", None, "h2", id="manual-overrides-cooldown"),
        pytest.param("calm", "h3", "h3", id="calm-vm-to-pinned-target"),
        pytest.param("calm", None, "h2", id="calm-vm-policy-chooses"),
        pytest.param("calm", "h9", "is in AZ az2, the VM is in az1", id="pinned-other-az"),
        pytest.param("calm", "nope", "not in the inventory", id="pinned-unknown-host"),
        pytest.param("calm", "h1", "is the source host", id="pinned-source"),
        pytest.param("calm", "h4", "compute service disabled", id="pinned-disabled"),
        pytest.param("ghost", None, "unknown VM", id="unknown-vm"),
        pytest.param("opt", None, "opted out", id="opt-out-still-blocks"),
        pytest.param("parked", None, "quarantined", id="quarantine-still-blocks"),
    ],
)
def test_plan_one(uuid: str, target: str | None, expected: str) -> None:
    snap = snapshot(
        [
            *(host(name) for name in ("h1", "h2", "h3", "h5")),
            host("h4", enabled=False),
            host("h9", az="az2"),
        ],
        [
            vm("calm", "h1"),
            vm("cool", "h5", metrics=hot(), cooldown_until=NOW + 3600),
            vm("opt", "h1", opt_out=True),
            vm("parked", "h1", quarantined_until=NOW + 3600),
        ],
    )
    outcome = plan_one(snap, config(), uuid, target)
    if isinstance(outcome, Move):
        assert outcome.target == expected
        assert outcome.source == snap.vms[uuid].host
    else:
        assert isinstance(outcome, Skipped)
        assert expected in outcome.reason


def test_plan_one_respects_caps_held_by_in_flight() -> None:
    from tests.policy.builders import flight

    snap = snapshot(
        [host("h1"), host("h2")],
        [vm("calm", "h1")],
        in_flight=(flight("x", "h1", "h7"), flight("y", "h1", "h8")),
    )
    outcome = plan_one(snap, config(), "calm")
    assert isinstance(outcome, Skipped)
    assert "source host h1 already has 2" in outcome.reason


def test_plan_one_leaves_the_automatic_plan_alone() -> None:
    snap = snapshot([host("h1"), host("h2")], [vm("hot", "h1", metrics=hot())])
    before = plan(snap, config())
    plan_one(snap, config(), "hot", "h2")
    assert plan(snap, config()) == before
    assert replace(snap.vms["hot"]) == snap.vms["hot"]
