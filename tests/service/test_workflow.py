"""The migration workflow against simulated ports, a fake clock and a real journal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from coordinator.adapters.sim.compute import unavailable
from coordinator.config import Config, LimitsConfig
from coordinator.errors import (
    ComputeForbidden,
    ComputeUnavailable,
    DetachRefused,
    NoValidHost,
    TaskStateConflict,
)
from coordinator.journal import SqliteJournal as Journal
from coordinator.journal import State
from coordinator.workflow import Refused
from tests.service.world import World, move


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path / "journal.sqlite")
    w.boot("vm1", "host-a")
    w.boot("vm2", "host-b")
    w.boot("vm3", "host-a")
    return w


def states(world: World, migration_id: str) -> list[State]:
    return [s for _, s, _ in world.journal.transitions(migration_id)]


def test_happy_path_walks_every_state_caps_and_reattaches(world: World) -> None:
    flow = world.workflow()
    record = flow.run(flow.admit(move("vm1", "host-a", "host-c")))
    assert record.state is State.DONE, record.outcome
    assert states(world, record.id) == [
        State.PLANNED, State.DETACHING, State.MIGRATING, State.VERIFYING,
        State.REATTACHING, State.DONE,
    ]  # fmt: skip
    assert world.compute.servers["vm1"].host == "host-c"
    assert world.agents.cap_log == [("host-a", "vm1", 200)]
    detach_calls = [(c[0], c[1]) for c in world.detacher.calls]
    assert detach_calls == [("detach", "vm1"), ("reattach", "vm1")]
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]


def test_target_agent_must_report_the_domain(world: World) -> None:
    world.agents_follow_nova = False  # Nova moves it; the agents keep reporting host-a
    flow = world.workflow()
    record = flow.admit(move("vm1", "host-a", "host-c"))
    record = flow.run(record)
    assert record.state is State.FAILED
    assert "target's agent does not report" in record.outcome
    assert world.detacher.detached == {}


@pytest.mark.parametrize(
    ("fault", "target", "expected", "words"),
    [
        pytest.param(None, "host-d", State.FAILED, "No valid host", id="other-az-400"),
        pytest.param(None, "host-zz", State.ABORTED, "left the inventory", id="unknown-target"),
        pytest.param(NoValidHost("Nova 400: boom"), "host-c", State.ABORTED, "Nova unreachable",
                     id="nova-error-before-start"),
    ],
)  # fmt: skip
def test_refusals_end_with_a_recorded_outcome_and_no_retry(
    world: World, fault: Exception | None, target: str, expected: State, words: str
) -> None:
    world.agents.move("vm1", "host-a")
    flow = world.workflow()
    record = flow.admit(move("vm1", "host-a", target))
    world.compute.fail_next = fault
    record = flow.run(record)
    assert record.state is expected
    assert words in record.outcome
    assert len(world.compute.live_migrate_calls) <= 1
    assert world.detacher.detached == {}
    assert world.compute.servers["vm1"].host == "host-a"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        pytest.param(ComputeForbidden("Nova 403: policy"), "refused", id="403"),
        pytest.param(TaskStateConflict("Nova 409: busy"), "refused", id="409"),
        pytest.param(ComputeUnavailable("Nova 503"), "did not accept", id="5xx-not-accepted"),
    ],
)
def test_nova_refusal_is_recorded_once_and_the_vm_reattached(
    world: World, error: Exception, words: str
) -> None:
    world.compute.refuse_next_migrate = error
    flow = world.workflow()
    record = flow.run(flow.admit(move("vm1", "host-a", "host-c")))
    assert record.state is State.FAILED
    assert words in record.outcome and str(error) in record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]
    assert world.detacher.detached == {}
    assert world.compute.servers["vm1"].host == "host-a"


def test_timeout_that_nova_accepted_is_followed_not_retried(world: World) -> None:
    flow = world.workflow()
    record = flow.admit(move("vm1", "host-a", "host-c"))
    world.compute.lose_next_accept = unavailable()
    record = flow.run(record)
    assert record.state is State.DONE, record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]


def test_detach_refused_aborts_and_reattaches(world: World) -> None:
    world.detacher.refuse_detach = DetachRefused("PDB blocks")
    flow = world.workflow()
    record = flow.run(flow.admit(move("vm1", "host-a", "host-c")))
    assert record.state is State.ABORTED
    assert "PDB blocks" in record.outcome
    assert world.detacher.calls[-1][0] == "reattach"
    assert world.compute.live_migrate_calls == []


def test_over_time_budget_is_aborted_and_stays_on_source(world: World) -> None:
    world.config = Config(cost=world.config.cost.model_copy(update={"max_migration_s": 5.0}))
    flow = world.workflow()
    record = flow.run(flow.admit(move("vm1", "host-a", "host-c")))
    assert record.state is State.ABORTED
    assert "time budget" in record.outcome
    assert world.compute.servers["vm1"].host == "host-a"
    assert world.compute.list_migrations("vm1")[0].status == "cancelled"


def test_recheck_refuses_a_move_whose_vm_already_left(world: World) -> None:
    flow = world.workflow()
    record = flow.admit(move("vm1", "host-a", "host-c"))
    world.compute.servers["vm1"] = replace(world.compute.servers["vm1"], host="host-b")
    record = flow.run(record)
    assert record.state is State.ABORTED
    assert "no longer on the source" in record.outcome
    assert world.detacher.calls == []


def test_budget_is_never_exceeded(world: World) -> None:
    world.config = Config(limits=LimitsConfig(bandwidth_budget_mib_s=300.0,
                                              min_bandwidth_per_migration_mib_s=100.0))  # fmt: skip
    flow = world.workflow()
    first = flow.admit(move("vm1", "host-a", "host-c", bandwidth=200.0))
    second = flow.admit(move("vm2", "host-b", "host-c", bandwidth=200.0))
    assert (first.bandwidth_mib_s, second.bandwidth_mib_s) == (200.0, 100.0)
    with pytest.raises(Refused, match="budget"):
        flow.admit(move("vm3", "host-a", "host-b", bandwidth=200.0))


def test_one_migration_per_vm_at_a_time(world: World) -> None:
    flow = world.workflow()
    flow.admit(move("vm1", "host-a", "host-c"))
    with pytest.raises(Refused, match="in flight"):
        flow.admit(move("vm1", "host-a", "host-b"))


@pytest.mark.parametrize(
    ("crash_state", "nova_started", "expected"),
    [
        pytest.param(State.PLANNED, False, State.ABORTED, id="planned"),
        pytest.param(State.DETACHING, False, State.ABORTED, id="detaching"),
        pytest.param(State.MIGRATING, False, State.ABORTED, id="migrating-before-nova-call"),
        pytest.param(State.MIGRATING, True, State.DONE, id="migrating-after-nova-call"),
        pytest.param(State.VERIFYING, True, State.DONE, id="verifying"),
        pytest.param(State.REATTACHING, True, State.DONE, id="reattaching"),
    ],
)
def test_recovery_after_a_crash_never_migrates_twice(
    world: World, crash_state: State, nova_started: bool, expected: State
) -> None:
    flow = world.workflow()
    record = flow.admit(move("vm1", "host-a", "host-c"))
    # Replay the journal up to the crash the way the first process would have left it.
    journal: Journal = world.journal
    at = world.clock.now()
    order = [State.DETACHING, State.MIGRATING, State.VERIFYING, State.REATTACHING]
    for state in order[: order.index(crash_state) + 1] if crash_state in order else []:
        changes: dict[str, object] = {}
        if state is State.DETACHING:
            world.detacher.detach(world.snapshot().vms["vm1"], record.id)
        if state is State.MIGRATING:
            changes["nova_floor"] = 0
        if state is State.REATTACHING:
            changes["ending"] = State.DONE.value
        record = journal.transition(record, state, at, **changes)  # type: ignore[arg-type]  # test replay
    if nova_started:
        world.compute.live_migrate("vm1", "host-c")
        world.agents.move("vm1", "host-c")
        if crash_state in (State.VERIFYING, State.REATTACHING):
            world.clock.sleep(60)
    calls_before = len(world.compute.live_migrate_calls)
    # A new process: a new Workflow over the same journal file.
    restarted = world.workflow()
    restarted._journal = Journal(world.path)
    (recovered,) = restarted.recover()
    assert recovered.state is expected, recovered.outcome
    assert len(world.compute.live_migrate_calls) == calls_before
    assert world.detacher.detached == {}
    assert Journal(world.path).open_migrations() == []
