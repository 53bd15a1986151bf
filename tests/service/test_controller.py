"""The migration controller against simulated ports, a fake clock and a real journal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from coordinator.adapters.sim.compute import unavailable
from coordinator.config import Config, LimitsConfig
from coordinator.controller import Controller, Ports, Refused
from coordinator.errors import (
    ComputeForbidden,
    ComputeUnavailable,
    DetachRefused,
    NoValidHost,
    TaskStateConflict,
)
from coordinator.journal import MigrationRecord, State
from coordinator.journal import SqliteJournal as Journal
from coordinator.model import Bookkeeping, ClusterSnapshot, Move, Plan
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


def admit(world: World, m: Move) -> tuple[Controller, MigrationRecord]:
    controller = world.controller()
    return controller, controller.admit(m, world.clock.now())


def run(world: World, m: Move) -> MigrationRecord:
    controller, record = admit(world, m)
    return world.run(controller, record)


def test_happy_path_walks_every_state_caps_and_reattaches(world: World) -> None:
    record = run(world, move("vm1", "host-a", "host-c"))
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
    record = run(world, move("vm1", "host-a", "host-c"))
    assert record.state is State.FAILED
    assert "target's agent does not report" in record.outcome
    assert world.detacher.detached == {}


@pytest.mark.parametrize(
    ("fault", "target", "expected", "words"),
    [
        pytest.param(None, "host-d", State.FAILED, "No valid host", id="other-az-400"),
        pytest.param(None, "host-zz", State.ABORTED, "left the inventory", id="unknown-target"),
        pytest.param(NoValidHost("Nova 400: boom"), "host-c", State.FAILED, "gave up after 5",
                     id="nova-error-before-start"),
    ],
)  # fmt: skip
def test_refusals_end_with_a_recorded_outcome_and_no_retry(
    world: World, fault: Exception | None, target: str, expected: State, words: str
) -> None:
    world.agents.move("vm1", "host-a")
    controller, record = admit(world, move("vm1", "host-a", target))
    if fault is not None:  # every Nova call fails: retried with backoff, then given up
        world.compute.failing = fault
    record = world.run(controller, record)
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
    ],
)
def test_nova_refusal_is_recorded_once_and_the_vm_reattached(
    world: World, error: Exception, words: str
) -> None:
    world.compute.refuse_next_migrate = error
    record = run(world, move("vm1", "host-a", "host-c"))
    assert record.state is State.FAILED
    assert words in record.outcome and str(error) in record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]
    assert world.detacher.detached == {}
    assert world.compute.servers["vm1"].host == "host-a"


def test_a_5xx_nova_did_not_act_on_ends_as_never_started(world: World) -> None:
    world.compute.refuse_next_migrate = ComputeUnavailable("Nova 503")
    record = run(world, move("vm1", "host-a", "host-c"))
    assert record.state is State.ABORTED
    assert "never started" in record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]  # asked once, not again
    assert world.detacher.detached == {}


def test_timeout_that_nova_accepted_is_followed_not_retried(world: World) -> None:
    controller, record = admit(world, move("vm1", "host-a", "host-c"))
    world.compute.lose_next_accept = unavailable()
    record = world.run(controller, record)
    assert record.state is State.DONE, record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]


def test_detach_refused_aborts_and_reattaches(world: World) -> None:
    world.detacher.refuse_detach = DetachRefused("PDB blocks")
    record = run(world, move("vm1", "host-a", "host-c"))
    assert record.state is State.ABORTED
    assert "PDB blocks" in record.outcome
    assert world.detacher.calls[-1][0] == "reattach"
    assert world.compute.live_migrate_calls == []


def test_over_time_budget_is_aborted_and_stays_on_source(world: World) -> None:
    world.config = Config(cost=world.config.cost.model_copy(update={"max_migration_s": 5.0}))
    record = run(world, move("vm1", "host-a", "host-c"))
    assert record.state is State.ABORTED
    assert "time budget" in record.outcome
    assert world.compute.servers["vm1"].host == "host-a"
    assert world.compute.list_migrations("vm1")[0].status == "cancelled"


def test_recheck_refuses_a_move_whose_vm_already_left(world: World) -> None:
    controller, record = admit(world, move("vm1", "host-a", "host-c"))
    world.compute.servers["vm1"] = replace(world.compute.servers["vm1"], host="host-b")
    record = world.run(controller, record)
    assert record.state is State.ABORTED
    assert "no longer on the source" in record.outcome
    assert world.detacher.calls == []


def test_budget_is_never_exceeded(world: World) -> None:
    world.config = Config(limits=LimitsConfig(bandwidth_budget_mib_s=300.0,
                                              min_bandwidth_per_migration_mib_s=100.0))  # fmt: skip
    controller, now = world.controller(), world.clock.now()
    first = controller.admit(move("vm1", "host-a", "host-c", bandwidth=200.0), now)
    second = controller.admit(move("vm2", "host-b", "host-c", bandwidth=200.0), now)
    assert (first.bandwidth_mib_s, second.bandwidth_mib_s) == (200.0, 100.0)
    with pytest.raises(Refused, match="budget"):
        controller.admit(move("vm3", "host-a", "host-b", bandwidth=200.0), now)


@pytest.mark.parametrize("done_with_nova", [State.VERIFYING, State.REATTACHING])
def test_a_move_nova_is_done_with_gives_its_grant_back(world: World, done_with_nova: State) -> None:
    """A reattach may wait hours on an unreachable agent: its copy is over, so its grant
    is free for the next move (the budget of 300 holds one of 200 at a time)."""
    world.config = Config(limits=LimitsConfig(bandwidth_budget_mib_s=300.0,
                                              min_bandwidth_per_migration_mib_s=150.0))  # fmt: skip
    controller, now = world.controller(), world.clock.now()
    first = controller.admit(move("vm1", "host-a", "host-c", bandwidth=200.0), now)
    with pytest.raises(Refused, match="budget"):
        controller.admit(move("vm2", "host-b", "host-c", bandwidth=200.0), now)
    world.journal.update(replace(first, state=done_with_nova), "copy over", was=first)
    second = controller.admit(move("vm2", "host-b", "host-c", bandwidth=200.0), now)
    assert second.bandwidth_mib_s == 200.0
    books, _ = controller.books(now)
    assert {f.vm_uuid: f.copying for f in books.in_flight} == {"vm1": False, "vm2": True}


def test_one_migration_per_vm_at_a_time(world: World) -> None:
    controller, now = world.controller(), world.clock.now()
    controller.admit(move("vm1", "host-a", "host-c"), now)
    with pytest.raises(Refused, match="in flight"):
        controller.admit(move("vm1", "host-a", "host-b"), now)


@pytest.mark.parametrize(
    ("crash_state", "step", "nova_started"),
    [
        pytest.param(State.PLANNED, "", False, id="planned"),
        pytest.param(State.DETACHING, "", False, id="detaching"),
        pytest.param(State.MIGRATING, "", False, id="migrating-before-nova-call"),
        pytest.param(State.MIGRATING, "requesting", False, id="requesting-nova-never-got-it"),
        pytest.param(State.MIGRATING, "requesting", True, id="requesting-nova-accepted"),
        pytest.param(State.MIGRATING, "requested", True, id="migrating-after-nova-call"),
        pytest.param(State.VERIFYING, "", True, id="verifying"),
        pytest.param(State.REATTACHING, "", True, id="reattaching"),
    ],
)
def test_a_restart_is_just_the_next_tick_and_never_migrates_twice(
    world: World, crash_state: State, step: str, nova_started: bool
) -> None:
    _, record = admit(world, move("vm1", "host-a", "host-c"))
    # Replay the journal up to the crash the way the first process would have left it.
    journal: Journal = world.journal
    at = world.clock.now()
    order = [State.DETACHING, State.MIGRATING, State.VERIFYING, State.REATTACHING]
    for state in order[: order.index(crash_state) + 1] if crash_state in order else []:
        changes: dict[str, object] = {"detached_at": at}
        if state is State.DETACHING:
            world.detacher.detach(world.snapshot().vms["vm1"], record.id)
            changes["deadline"] = at + 60
        if state is State.MIGRATING:
            changes.update(nova_floor=0, step=step, progress_at=at, deadline=at + 900)
        if state is State.REATTACHING:
            changes.update(ending=State.DONE.value, step="", deadline=at + 60)
        record = journal.transition(record, state, at, **changes)  # type: ignore[arg-type]  # test replay
    if nova_started:
        world.compute.live_migrate("vm1", "host-c")
        world.agents.move("vm1", "host-c")
        if crash_state in (State.VERIFYING, State.REATTACHING):
            world.clock.sleep(60)
    calls_before = len(world.compute.live_migrate_calls)
    # A new process: a new controller over the same journal file.
    world.journal = Journal(world.path)
    recovered = world.run(world.controller(), record)
    calls = len(world.compute.live_migrate_calls) - calls_before
    never_asked = crash_state in (State.PLANNED, State.DETACHING) or (
        crash_state is State.MIGRATING and step == ""
    )
    if never_asked:  # nothing reached Nova: the move simply goes on, asking once
        assert recovered.state is State.DONE, recovered.outcome
        assert calls == 1
    elif nova_started:
        assert recovered.state is State.DONE, recovered.outcome
        assert calls == 0
    else:  # "requesting" journaled, the call never made: never asked again
        assert recovered.state is State.ABORTED
        assert "never started" in recovered.outcome
        assert calls == 0
    assert world.detacher.detached == {}
    assert Journal(world.path).open_migrations() == []


def test_the_controller_remembers_pressed_hosts_for_the_planner(world: World) -> None:
    """What a round found pressed reaches the next rounds' snapshots (and coordctl's
    plan preview) until `relief_memory_s` has passed; the planner is the only source."""
    seen: list[dict[str, float]] = []
    answers = iter([("host-a",), (), ()])

    def planner(snap: ClusterSnapshot, config: Config) -> Plan:
        seen.append(dict(snap.pressed_at))
        return Plan(now=snap.now, pressed=next(answers))

    ports = Ports(world.compute, world.agents, {"none": world.detacher})
    controller = Controller(ports, world.journal, world.config, world.snapshot, planner=planner)
    first = world.clock.now()
    controller.tick(first)
    world.clock.t += 60
    controller.tick(world.clock.now())
    assert controller.snapshot(world.clock.now()).pressed_at == {"host-a": first}
    world.clock.t += world.config.policy.relief_memory_s
    controller.tick(world.clock.now())
    assert seen == [{}, {"host-a": first}, {}]


def test_the_books_say_when_a_migration_last_left_each_host(world: World) -> None:
    """The planner discounts steal read before a move left its host: the books carry
    when the newest DONE move left each source (failed or aborted ones never left)."""
    controller = world.controller()
    assert controller.snapshot(world.clock.now()).departed_at == {}
    done = run(world, move("vm1", "host-a", "host-c"))
    assert done.state is State.DONE, done.outcome
    world.clock.t += 60
    refused = run(world, move("vm2", "host-b", "host-d"))  # another AZ: Nova says no
    assert refused.state is State.FAILED, refused.outcome
    snap = controller.snapshot(world.clock.now())
    assert snap.departed_at == {"host-a": done.finished_at}
    world.clock.t += world.config.policy.cooldown_s
    assert controller.snapshot(world.clock.now()).departed_at == {}


def test_a_tick_reads_the_recent_successes_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cooldowns, departures and the steal check after a move come from one read of the
    DONE rows (a tick read them twice: the books, then the assessment)."""
    done = run(world, move("vm1", "host-a", "host-c"))
    assert done.state is State.DONE, done.outcome
    reads: list[float] = []
    listed = world.journal.done_since

    def counted(since: float) -> list[MigrationRecord]:
        reads.append(since)
        return listed(since)

    monkeypatch.setattr(world.journal, "done_since", counted)
    world.clock.t += world.config.policy.verify_window_s  # its assessment is due
    tick = world.controller().tick(world.clock.now())
    assert len(reads) == 1
    assert tick.snapshot is not None and tick.snapshot.departed_at == {"host-a": done.finished_at}
    assessed = world.journal.get(done.id)
    assert assessed is not None and assessed.steal_after >= 0


def test_with_no_verify_window_a_move_is_assessed_in_the_tick_that_ends_it(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "journal.sqlite", Config.model_validate(
        {"policy": {"verify_window_s": 0.0}}))  # fmt: skip
    world.boot("vm1", "host-a")
    done = run(world, move("vm1", "host-a", "host-c"))  # the last tick closed it DONE
    assert done.state is State.DONE, done.outcome
    assert done.steal_after >= 0


class CountingObserver:
    """The world's observer, counting the joins (each costs seconds at 400,000 VMs)."""

    def __init__(self, world: World) -> None:
        self.world, self.joins = world, 0

    def __call__(self, now: float, books: Bookkeeping) -> ClusterSnapshot:
        self.joins += 1
        return self.world.snapshot(now, books)


def test_reads_reuse_the_newest_tick_snapshot_while_it_is_young(world: World) -> None:
    """Status and listings take the newest snapshot (a tick's, or a read's) while it
    is at most `max_age_s` old, and build one when it is older or the clock went back."""
    observe = CountingObserver(world)
    world.hot_hosts = frozenset()  # nothing to plan: ticks only observe
    ports = Ports(world.compute, world.agents, {"none": world.detacher})
    controller = Controller(ports, world.journal, world.config, observe)
    ticked = world.clock.now()
    controller.tick(ticked)
    assert observe.joins == 1
    world.clock.t += 5
    assert controller.recent_snapshot(world.clock.now(), max_age_s=10).now == ticked
    assert observe.joins == 1
    world.clock.t += 6
    assert controller.recent_snapshot(world.clock.now(), max_age_s=10).now == world.clock.t
    assert observe.joins == 2
    world.clock.t += 1  # that read's snapshot serves the next reads: one join per 10 s
    assert controller.recent_snapshot(world.clock.now(), max_age_s=10).now == world.clock.t - 1
    assert observe.joins == 2
    assert controller.recent_snapshot(ticked - 1, max_age_s=10).now == ticked - 1
    assert observe.joins == 3


def test_reads_after_a_round_that_started_moves_show_them(world: World) -> None:
    """A round that started moves makes its own snapshot (taken before them) too old
    to read: the next status or listing shows the moves in flight."""
    observe = CountingObserver(world)
    ports = Ports(world.compute, world.agents, {"none": world.detacher})

    def planner(snap: ClusterSnapshot, config: Config) -> Plan:
        return Plan(now=snap.now, moves=(move("vm1", "host-a", "host-c"),))

    controller = Controller(ports, world.journal, world.config, observe, planner=planner)
    tick = controller.tick(world.clock.now())
    assert [r.vm_uuid for r in tick.started] == ["vm1"]
    assert tick.snapshot is not None and tick.snapshot.in_flight == ()
    read = controller.recent_snapshot(world.clock.now(), max_age_s=10)
    assert [f.vm_uuid for f in read.in_flight] == ["vm1"]
    assert read.vms["vm1"].migrating


def test_reads_after_a_manual_move_show_it(world: World) -> None:
    observe = CountingObserver(world)
    world.hot_hosts = frozenset()
    ports = Ports(world.compute, world.agents, {"none": world.detacher})
    controller = Controller(ports, world.journal, world.config, observe)
    controller.tick(world.clock.now())
    outcome = controller.migrate_now("vm1", "host-c", world.clock.now())
    assert isinstance(outcome, MigrationRecord), outcome
    read = controller.recent_snapshot(world.clock.now(), max_age_s=10)
    assert [f.vm_uuid for f in read.in_flight] == ["vm1"]


def test_a_read_that_began_before_a_move_does_not_keep_its_snapshot(world: World) -> None:
    """An admin read joins while a move starts (the manual move here runs inside the
    read's join, as another thread's would interleave): its snapshot, older than the
    move, must not become the one later reads reuse."""
    world.hot_hosts = frozenset()
    ports = Ports(world.compute, world.agents, {"none": world.detacher})
    moved: list[object] = []

    def observe(now: float, books: Bookkeeping) -> ClusterSnapshot:
        snap = world.snapshot(now, books)
        if not moved:  # the read's join; the move's own join comes back here once
            moved.append("starting")
            moved[0] = controller.migrate_now("vm1", "host-c", now)
        return snap

    controller = Controller(ports, world.journal, world.config, observe)
    read = controller.snapshot(world.clock.now())
    assert isinstance(moved[0], MigrationRecord), moved
    assert read.in_flight == ()  # joined with the books from before the move
    later = controller.recent_snapshot(world.clock.now(), max_age_s=10)
    assert [f.vm_uuid for f in later.in_flight] == ["vm1"]
