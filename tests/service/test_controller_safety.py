"""The controller's safety promises, each a regression test for a bug the thread-per-
migration workflow had: retry storms, stranded detaches, failing open on an unknown
orchestrator, a pause that did not survive a restart, a snapshot per migration step."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coordinator.adapters.sim.compute import unavailable
from coordinator.config import Config
from coordinator.controller import Controller, Ports
from coordinator.errors import (
    AgentCommandFailed,
    ComputeForbidden,
    DetachRefused,
    OrchestratorUnreachable,
    TaskStateConflict,
)
from coordinator.journal import JournalError, PauseState, SqliteJournal, State
from coordinator.model import Bookkeeping, ClusterSnapshot, Skipped
from coordinator.ports import MigrationInfo
from coordinator.service.inventory import Inventory, join
from coordinator.service.metrics import Metrics
from coordinator.sim.runner import Day
from tests.service.world import World, move
from tests.sim.scenarios import tiny


@pytest.fixture
def world(tmp_path: Path) -> World:
    w = World(tmp_path / "journal.sqlite")
    w.boot("vm1", "host-a")
    return w


def tick_for(world: World, controller: Controller, seconds: float, step_s: float = 1.0) -> None:
    end = world.clock.now() + seconds
    while world.clock.now() < end:
        controller.tick(world.clock.now())
        world.sleep(step_s)


def attempts(world: World) -> int:
    return len(world.journal.history(vm_uuid="vm1"))


class _Cap:
    """A hypervisor port whose cap command always fails (the agent refuses it)."""

    def __init__(self, world: World) -> None:
        self._world = world

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        raise AgentCommandFailed(f"{host}: libvirt said no")

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        return self._world.agents.reports_vm(host, vm_uuid)


class _CapBug(_Cap):
    """The cap command raising an error nobody listed: retried, then given up in
    PLANNED, where the give-up once skipped the park (45 moves an hour)."""

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        raise RuntimeError("a bug in the agent link")


@pytest.mark.parametrize(
    "fault",
    ["cap-refused", "cap-unlisted-error", "nova-403", "detach-refused", "nova-down-at-detach"],
)
def test_a_failed_move_parks_the_vm_instead_of_retrying_every_round(
    world: World, fault: str
) -> None:
    controller = world.controller()
    if fault.startswith("cap-"):
        cap = _Cap(world) if fault == "cap-refused" else _CapBug(world)
        ports = Ports(world.compute, cap, {"none": world.detacher})
        controller = Controller(ports, world.journal, world.config, world.snapshot)
    elif fault == "nova-403":
        world.compute.refuse_next_migrate = ComputeForbidden("Nova 403: policy")
    elif fault == "detach-refused":
        world.detacher.refuse_detach = DetachRefused("a pod without a controller")
    else:
        world.compute.failing = unavailable()
    tick_for(world, controller, 600)
    world.compute.failing = None
    tick_for(world, controller, 600)
    assert attempts(world) == 1, [r.outcome for r in world.journal.history()]
    (record,) = world.journal.history()
    assert record.state in (State.FAILED, State.ABORTED)
    assert world.detacher.detached == {}
    parked = {q.key: q.reason for q in world.journal.quarantines(world.clock.now())}
    assert record.id in parked["vm1"]
    explained = world.controller().snapshot(world.clock.now()).vms["vm1"]
    assert record.id in explained.parked_reason


@pytest.mark.parametrize("where", ["verify", "reattach", "unexpected-exception"])
def test_nothing_is_left_detached_whatever_fails(world: World, where: str) -> None:
    metrics = Metrics()
    controller = Controller(world.controller().ports, world.journal, world.config,
                            world.snapshot, metrics)  # fmt: skip
    controller.tick(world.clock.now())
    (record,) = world.journal.open_migrations()
    for _ in range(30):  # into VERIFYING
        world.sleep(1.0)
        controller.tick(world.clock.now(), plan=False)
        record = world.journal.get(record.id)  # type: ignore[assignment]
        if record.state is State.VERIFYING:
            break
    assert record.state is State.VERIFYING
    if where == "verify":
        world.compute.failing = unavailable()  # Nova 503 while verifying
    elif where == "reattach":
        world.detacher.refuse_reattach = OrchestratorUnreachable("API server down")
    else:
        world.detacher.refuse_reattach = RuntimeError("a bug nobody listed")
    tick_for(world, controller, 3 * 3600, step_s=30.0)
    record = world.journal.get(record.id)  # type: ignore[assignment]
    if where == "verify":
        assert record.state is State.FAILED  # gave up verifying, then reattached
        assert "gave up after" in record.outcome
        assert world.detacher.detached == {}
        return
    # Reattach keeps failing: still open, retried with backoff, and visibly overdue.
    assert record.state is State.REATTACHING
    assert record.attempts > 3
    assert world.detacher.detached == {"vm1": record.id}
    assert metrics.detached_overdue._value.get() == 1
    assert metrics.reattach_failures._value.get() == record.attempts
    calls = sum(1 for c in world.detacher.calls if c[0] == "reattach")
    assert calls <= 3 * 3600 / world.config.workflow.retry_base_s  # backoff, not every tick
    world.detacher.refuse_reattach = None
    tick_for(world, controller, world.config.workflow.retry_max_s + 60, step_s=30.0)
    record = world.journal.get(record.id)  # type: ignore[assignment]
    assert record.state is State.DONE
    assert world.detacher.detached == {}
    assert metrics.detached_overdue._value.get() == 0


def test_an_unknown_orchestrator_tag_is_refused_never_read_as_none(world: World) -> None:
    world.compute.servers["vm1"] = replace(
        world.compute.servers["vm1"], metadata={"stealbalancer.orchestrator": "kubernets"}
    )
    metrics = Metrics()
    controller = Controller(world.controller().ports, world.journal, world.config,
                            world.snapshot, metrics)  # fmt: skip
    tick_for(world, controller, 120)
    assert world.journal.history() == []
    vm = controller.snapshot(world.clock.now()).vms["vm1"]
    assert "unknown orchestrator tag 'kubernets'" in vm.refusal
    assert metrics.unmovable.labels("unknown_orchestrator")._value.get() == 1
    outcome = controller.migrate_now("vm1", None, world.clock.now(), force=True)
    assert isinstance(outcome, Skipped) and "kubernets" in outcome.reason


def test_join_refuses_every_tag_without_a_registered_detacher() -> None:
    from coordinator.ports import HypervisorInfo, ServerInfo

    servers = tuple(
        ServerInfo(uuid=tag or "empty", name="x", host="h", az="az", status="ACTIVE",
                   task_state=None, vcpus=1, ram_mib=1, disk_gib=0.0,
                   metadata={"stealbalancer.orchestrator": tag})
        for tag in ("", "none", "Kubernetes", " consul ", "kubernets", "nomad")
    )  # fmt: skip
    inventory = Inventory((HypervisorInfo("h", "az", 8, 8192, True, True),), servers)
    snap = join(0.0, inventory, {}, Config().inventory, Bookkeeping(),
                orchestrators=frozenset({"none", "kubernetes", "consul"}))  # fmt: skip
    refused = {uuid for uuid, vm in snap.vms.items() if vm.refusal}
    assert refused == {"kubernets", "nomad"}


def test_pause_is_durable_and_holds_manual_moves_unless_forced(world: World) -> None:
    controller = world.controller()
    controller.set_pause(PauseState(True, "change freeze", "alice@ops", world.clock.now()))
    # A new process over the same journal file.
    world.journal = SqliteJournal(world.path)
    restarted = world.controller()
    assert restarted.journal.pause_state() == PauseState(True, "change freeze", "alice@ops",
                                                         world.clock.now())  # fmt: skip
    tick_for(world, restarted, 120)
    assert world.journal.history() == []
    refused = restarted.migrate_now("vm1", None, world.clock.now())
    assert isinstance(refused, Skipped) and "change freeze" in refused.reason
    forced = restarted.migrate_now("vm1", None, world.clock.now(), force=True)
    assert not isinstance(forced, Skipped)
    assert forced.manual


def test_one_snapshot_per_tick_however_many_migrations_are_open(tmp_path: Path) -> None:
    world = World(tmp_path / "journal.sqlite")
    for i in range(3):
        world.boot(f"vm{i}", "host-a")
    joins: list[float] = []

    def observe(now: float, books: Bookkeeping) -> ClusterSnapshot:
        joins.append(now)
        return world.snapshot(now, books)

    controller = Controller(world.controller().ports, world.journal, world.config, observe)
    now = world.clock.now()
    for i, target in enumerate(("host-b", "host-c", "host-b")):
        controller.admit(move(f"vm{i}", "host-a", target), now)
    most_open = 0
    for _ in range(40):
        before = len(joins)
        controller.tick(world.clock.now(), plan=False)
        assert len(joins) - before == 1
        most_open = max(most_open, len(world.journal.open_migrations()))
        world.sleep(1.0)
        if not world.journal.open_migrations():
            break
    assert most_open == 3
    assert all(r.state is State.DONE for r in world.journal.history())


def test_simulate_runs_the_production_controller() -> None:
    day = Day(tiny(duration_h=2.0), balancing=True)
    assert isinstance(day.controller, Controller)
    result = day.run()
    journaled = day.journal.history()
    assert result.migrations and len(journaled) == len(result.migrations)
    assert all(r.id.startswith("sim-") for r in journaled)


def test_a_tick_sets_the_gauges_dashboards_and_alerts_read(world: World) -> None:
    metrics = Metrics()
    controller = Controller(world.controller().ports, world.journal, world.config,
                            world.snapshot, metrics)  # fmt: skip
    controller.tick(world.clock.now())  # starts a move
    world.sleep(1.0)
    controller.tick(world.clock.now())  # sees it in flight
    budget = world.config.limits.bandwidth_budget_mib_s
    assert metrics.bandwidth_budget._value.get() == budget
    assert 0 < metrics.bandwidth._value.get() <= budget  # the move it just started
    assert metrics.cluster_steal._value.get() == pytest.approx(0.3)
    assert metrics.contended._value.get() == 1 and metrics.in_pain._value.get() == 1
    assert metrics.journal_writable._value.get() == 1
    assert metrics.open_by_state.labels("MIGRATING")._value.get() == 1


def test_an_unlisted_error_from_the_nova_call_never_leads_to_a_second_call(world: World) -> None:
    """ "requesting" is journaled before the call; the failed attempt must build on that
    row, not on the record the step started from (found by the stateful test)."""
    world.compute.refuse_next_migrate = ValueError("a bug in the adapter, after sending")
    controller = world.controller()
    tick_for(world, controller, 300)
    assert len(world.compute.live_migrate_calls) == 1
    (record,) = world.journal.history()
    assert record.state is State.ABORTED and "never started" in record.outcome


def test_a_journal_that_fails_stops_the_tick_and_says_so(world: World) -> None:
    metrics = Metrics()
    controller = Controller(world.controller().ports, world.journal, world.config,
                            world.snapshot, metrics)  # fmt: skip
    controller.tick(world.clock.now(), act=False)  # a follower reads it fine
    assert metrics.journal_writable._value.get() == 1
    world.journal.close()
    tick = controller.tick(world.clock.now())
    assert tick.snapshot is None and tick.error
    assert metrics.journal_writable._value.get() == 0
    assert world.compute.live_migrate_calls == [] and world.detacher.calls == []


def test_a_deposed_leader_never_asks_nova_again_for_a_move_the_new_one_ended(
    world: World,
) -> None:
    """Leader A read a migration at MIGRATING, before the Nova call, and stalled; B
    led it to FAILED and reattached the VM. A's next write (the "requesting" mark
    before the call) is refused, so the VM back in rotation is not migrated."""
    a, b = world.controller(), world.controller()
    record = a.admit(move("vm1", "host-a", "host-b"), world.clock.now())
    snap = a.snapshot(world.clock.now())
    while record.state is not State.MIGRATING:
        record = a._steps.take(record, snap, world.clock.now())
    stale = record
    world.compute.failure_s = lambda uuid, host: 5.0  # Nova's migration fails under B
    ended = world.run(b, record)
    assert ended.state is State.FAILED and world.detacher.detached == {}
    with pytest.raises(JournalError, match="changed since it was read"):
        a.advance(stale, snap, world.clock.now())
    assert world.compute.live_migrate_calls == [("vm1", "host-b")]
    assert world.journal.get(record.id) == ended


class _NovaProxy:
    """The world's simulated Nova with one call replaced."""

    def __init__(self, world: World) -> None:
        self._world = world

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world.compute, name)


@pytest.mark.parametrize("answer", ["503", "409-it-just-completed"])
def test_an_unconfirmed_abort_waits_for_nova_instead_of_reattaching(
    world: World, answer: str
) -> None:
    """An over-budget move whose abort call fails (a 503, or a 409 because it finished
    between our look and the call) may still be moving: reattaching at once left
    Nova moving a VM back in rotation, journaled FAILED. The next looks decide."""
    world.config = Config(cost=world.config.cost.model_copy(update={"max_migration_s": 5.0}))
    nova = _NovaProxy(world)

    def abort_migration(uuid: str, migration_id: str) -> None:
        if answer == "503":
            raise unavailable()
        world.clock.t += 30  # it completes before the abort arrives: Nova says 409
        world.compute.list_migrations(uuid)
        raise TaskStateConflict(f"Nova 409: migration {migration_id} is completed")

    nova.abort_migration = abort_migration  # type: ignore[attr-defined]  # the one fault
    controller = Controller(Ports(nova, world.agents, {"none": world.detacher}),
                            world.journal, world.config, world.snapshot)  # fmt: skip
    record = world.run(controller, controller.admit(move("vm1", "host-a", "host-c"),
                                                    world.clock.now()))  # fmt: skip
    assert record.state is State.DONE, record.outcome
    assert world.compute.servers["vm1"].host == "host-c"
    reattached = [at for at, s, _ in world.journal.transitions(record.id)
                  if s is State.REATTACHING]  # fmt: skip
    landed = [at for at, s, _ in world.journal.transitions(record.id) if s is State.VERIFYING]
    assert reattached and landed and reattached[0] >= landed[0]
    assert world.journal.quarantines(world.clock.now()) == []


def test_a_migration_nova_accepted_but_records_late_is_followed_not_abandoned(
    world: World,
) -> None:
    """Nova answered 202 and shows the server migrating, but a busy conductor writes
    the migration record after the accept grace: the move is waited for, not ended
    as "never started" with the VM reattached while Nova moves it."""
    lag_s = world.config.workflow.accept_grace_s + 15
    world.compute.migration_s = 120.0
    nova, accepted = _NovaProxy(world), [0.0]

    def live_migrate(uuid: str, target: str) -> None:
        accepted[0] = world.clock.now()
        world.compute.live_migrate(uuid, target)

    def list_migrations(uuid: str) -> list[MigrationInfo]:
        found = world.compute.list_migrations(uuid)
        late = world.clock.now() < accepted[0] + lag_s
        return [m for m in found if m.status != "running"] if late else found

    nova.live_migrate = live_migrate  # type: ignore[attr-defined]
    nova.list_migrations = list_migrations  # type: ignore[attr-defined]
    controller = Controller(Ports(nova, world.agents, {"none": world.detacher}),
                            world.journal, world.config, world.snapshot)  # fmt: skip
    record = world.run(controller, controller.admit(move("vm1", "host-a", "host-c"),
                                                    world.clock.now()))  # fmt: skip
    assert record.state is State.DONE, record.outcome
    assert world.compute.live_migrate_calls == [("vm1", "host-c")]


def test_a_clock_that_went_back_does_not_hold_a_reattach(world: World) -> None:
    """A retry time journaled before the clock stepped back an hour (or by a replica
    whose clock ran ahead) is further off than the longest backoff: it is due now."""
    controller = world.controller()
    record = controller.admit(move("vm1", "host-a", "host-c"), world.clock.now())
    world.detacher.refuse_reattach = OrchestratorUnreachable("API server blip")
    while not (record.state is State.REATTACHING and record.attempts):
        controller.tick(world.clock.now(), plan=False)
        record = world.journal.get(record.id)  # type: ignore[assignment]
        world.sleep(1.0)
    world.detacher.refuse_reattach = None
    world.clock.t -= 3600
    tick_for(world, controller, 2 * world.config.workflow.retry_max_s, step_s=30.0)
    record = world.journal.get(record.id)  # type: ignore[assignment]
    assert record.state is State.DONE, record.outcome
    assert world.detacher.detached == {}


class _ParkFailsOnce:
    """A journal whose first park write is lost (a dropped connection)."""

    def __init__(self, journal: SqliteJournal) -> None:
        self._journal, self.lost = journal, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._journal, name)

    def quarantine(self, kind: str, key: str, until: float, reason: str) -> None:
        if not self.lost:
            self.lost += 1
            raise JournalError("journal write failed: Lost connection to server during query")
        self._journal.quarantine(kind, key, until, reason)


def test_a_failed_move_is_parked_even_when_the_park_write_fails_once(world: World) -> None:
    """The park is written before the close: a lost park write leaves the migration
    open, and the next tick parks and closes it. The other order closed it unparked,
    and the VM was planned again a second later."""
    journal = _ParkFailsOnce(world.journal)
    controller = Controller(Ports(world.compute, world.agents, {"none": world.detacher}),
                            journal, world.config, world.snapshot)  # fmt: skip
    world.compute.refuse_next_migrate = ComputeForbidden("Nova 403: policy")
    tick_for(world, controller, 60)
    assert journal.lost == 1
    (record,) = world.journal.history(vm_uuid="vm1")
    assert record.state is State.FAILED
    assert [q.key for q in world.journal.quarantines(world.clock.now())] == ["vm1"]
    assert len(world.compute.live_migrate_calls) == 1
