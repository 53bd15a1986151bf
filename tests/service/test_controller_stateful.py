"""A stateful property test: the controller ticks while every port fails at random.

Hypothesis drives a small cloud through ticks, injecting failures at every port call
(Nova 4xx/5xx/timeouts and outages, detach and reattach refusals and bugs, the agent
link down, the cap refused) and process restarts between any two ticks. At every tick
the limits hold; once the faults stop and a bounded number of ticks has passed:
nothing is detached, no migration asked Nova twice, every migration is over with an
outcome that matches where Nova has the VM, and every VM whose move failed is parked.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator.adapters.sim.compute import SimCompute
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.config import Config
from coordinator.controller import Controller, Ports
from coordinator.errors import (
    AgentCommandFailed,
    AgentNotConnected,
    ComputeForbidden,
    ComputeUnavailable,
    DetachRefused,
    NoValidHost,
    OrchestratorUnreachable,
    TaskStateConflict,
)
from coordinator.journal import SqliteJournal, State
from tests.service.world import HOSTS, World

_NOVA_REFUSALS = st.sampled_from([
    ComputeForbidden("Nova 403"), TaskStateConflict("Nova 409"), NoValidHost("Nova 400"),
    ComputeUnavailable("Nova 503"), ValueError("a bug in the adapter"),
])  # fmt: skip
_DETACH_ERRORS = st.sampled_from([
    DetachRefused("PDB"), OrchestratorUnreachable("API down"), RuntimeError("unlisted bug"),
])  # fmt: skip
_AGENT_ERRORS = st.sampled_from([AgentNotConnected("no stream"), AgentCommandFailed("no")])
LIMITS = {"bandwidth_budget_mib_s": 500.0, "max_bandwidth_per_migration_mib_s": 200.0,
          "min_bandwidth_per_migration_mib_s": 100.0}  # fmt: skip


class FlakyAgents:
    """The agent link, down or refusing caps while told to."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.error: Exception | None = None
        self.caps: Counter[str] = Counter()

    def set_migration_speed(self, host: str, vm_uuid: str, mib_s: int) -> int:
        if self.error is not None:
            raise self.error
        self.caps[vm_uuid] += 1
        return self.world.agents.set_migration_speed(host, vm_uuid, mib_s)

    def reports_vm(self, host: str, vm_uuid: str) -> bool:
        if isinstance(self.error, AgentNotConnected):
            raise self.error
        return self.world.agents.reports_vm(host, vm_uuid)


class ControllerUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        config = Config.model_validate({
            "limits": LIMITS,
            "workflow": {"retry_base_s": 2.0, "retry_max_s": 30.0, "max_attempts": 3,
                         "accept_grace_s": 10.0, "verify_timeout_s": 20.0},
            "policy": {"cooldown_s": 120.0, "quarantine_s": 100_000.0,
                       "verify_window_s": 30.0},
            "cost": {"max_migration_s": 120.0},
        })  # fmt: skip
        self.world = World(Path(self.tmp.name) / "journal.sqlite", config=config)
        self.world.compute = SimCompute(clock=self.world.clock.now, migration_s=15.0)
        for host, az in HOSTS.items():
            self.world.compute.add_hypervisor(host, az)
        self.world.hot_hosts = frozenset({"host-a", "host-b"})  # host-c is the calm target
        for i in range(6):
            self.world.boot(f"vm{i}", ("host-a", "host-b")[i % 2])
        self.agents = FlakyAgents(self.world)
        self.detacher: SimDetacher = self.world.detacher
        self.detacher.passes_to_detach = 2
        self.controller = self._controller()
        self.nova_calls_at_admission: dict[str, int] = {}

    def _controller(self) -> Controller:
        ports = Ports(self.world.compute, self.agents, {"none": self.detacher})
        return Controller(ports, self.world.journal, self.world.config, self.world.snapshot)

    def teardown(self) -> None:
        self.tmp.cleanup()

    # -- the world goes on ------------------------------------------------------------
    @rule(ticks=st.integers(1, 12), seconds=st.sampled_from([1.0, 5.0, 20.0]))
    def tick(self, ticks: int, seconds: float) -> None:
        for _ in range(ticks):
            self.world.sleep(seconds)
            self.controller.tick(self.world.clock.now())

    @rule()
    def restart(self) -> None:
        """A new process: a new journal connection and controller, same file and world."""
        self.world.journal = SqliteJournal(self.world.path)
        self.controller = self._controller()

    # -- faults -------------------------------------------------------------------------
    @rule(error=_NOVA_REFUSALS)
    def nova_refuses_the_next_migrate(self, error: Exception) -> None:
        self.world.compute.refuse_next_migrate = error

    @rule()
    def nova_loses_the_next_accept(self) -> None:
        self.world.compute.lose_next_accept = ComputeUnavailable("timeout after the 202")

    @rule(error=_NOVA_REFUSALS)
    def nova_fails_the_next_call(self, error: Exception) -> None:
        self.world.compute.fail_next = error

    @rule(down=st.booleans())
    def nova_outage(self, down: bool) -> None:
        self.world.compute.failing = ComputeUnavailable("Nova down") if down else None

    @rule(error=st.none() | _DETACH_ERRORS)
    def detach_fails(self, error: Exception | None) -> None:
        self.detacher.refuse_detach = error

    @rule(error=st.none() | _DETACH_ERRORS)
    def reattach_fails(self, error: Exception | None) -> None:
        self.detacher.refuse_reattach = error

    @rule(error=st.none() | _AGENT_ERRORS)
    def agent_link_fails(self, error: Exception | None) -> None:
        self.agents.error = error

    # -- what must hold at every tick ---------------------------------------------------
    @invariant()
    def limits_hold(self) -> None:
        open_ = self.world.journal.open_migrations()
        assert sum(r.bandwidth_mib_s for r in open_) <= LIMITS["bandwidth_budget_mib_s"]
        assert all(r.bandwidth_mib_s <= LIMITS["max_bandwidth_per_migration_mib_s"] for r in open_)
        assert len({r.vm_uuid for r in open_}) == len(open_)  # one migration per VM

    @invariant()
    def nova_is_asked_at_most_once_per_migration(self) -> None:
        per_vm = Counter(uuid for uuid, _ in self.world.compute.live_migrate_calls)
        migrations = Counter(r.vm_uuid for r in self.world.journal.history())
        for vm, calls in per_vm.items():
            assert calls <= migrations[vm]

    # -- once the faults stop -----------------------------------------------------------
    @precondition(lambda self: len(self.world.journal.history()) > 0)
    @rule()
    def faults_stop_and_everything_settles(self) -> None:
        world = self.world
        world.compute.failing = world.compute.fail_next = None
        world.compute.refuse_next_migrate = world.compute.lose_next_accept = None
        self.detacher.refuse_detach = self.detacher.refuse_reattach = None
        self.agents.error = None
        world.journal.set_pause(world.journal.pause_state().__class__(True, "settling"))
        for _ in range(200):
            world.sleep(5.0)
            self.controller.tick(world.clock.now())
            if not world.journal.open_migrations():
                break
        assert world.journal.open_migrations() == []
        assert self.detacher.detached == {}
        parked = world.journal.quarantined("vm", world.clock.now())
        for record in world.journal.history():
            assert record.state.terminal
            host = world.compute.servers[record.vm_uuid].host
            if record.state is State.DONE:
                assert host == record.target, record
                continue
            assert record.vm_uuid in parked, record
            uncertain = "lost track" in record.outcome or "not verified" in record.outcome
            assert host == record.source or uncertain, record
        world.journal.set_pause(world.journal.pause_state().__class__(False))


ControllerUnderFaults.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestControllerUnderFaults = ControllerUnderFaults.TestCase
