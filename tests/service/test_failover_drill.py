"""Failover drills: two real `serve` processes sharing a real MariaDB journal and a Lease
(on the Kubernetes API double), agents streaming through a readiness-gated Service, a
migration in flight on the real Nova (tests/nova: API, conductor, scheduler and
fake-driver computes in one process; two coordinators simply share its endpoint).

Everything is judged from outside, as an operator would: the journal's rows, Nova's
migrations, the guest's Kubernetes node, the Status RPC through coordctl. So the drills
hold for any controller that keeps the journal's contract.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coordinator.adapters.nova import NovaCompute
from coordinator.controller import CRASH_ENV, NOVA_CALLED
from coordinator.journal import MigrationRecord, State
from coordinator.journal.sql import SqlJournal
from coordinator.ports import MigrationInfo
from tests.detach.conftest import write_kubeconfig
from tests.doubles.kube_apiserver import KubeApiServer
from tests.journal.servers import PASSWORD, MariaDbProcess
from tests.polling import eventually
from tests.service.cloud import HOSTS, NovaCloud, NovaProcess
from tests.service.failover import Fleet, ReadyRouter, Replica, coordctl
from tests.service.fake_agent import FakeVm

pytestmark = [pytest.mark.nova, pytest.mark.slow]

NODE = "guest-node-1"  # the hot VM is this Kubernetes node: drained before it moves
DETACHED = "stealbalancer.io/detached-by-migration"
# Every state the workflow journals before acting (PLANNED has no crash point: admit()
# commits it without calling the crash hook).
CRASH_STATES = ["PLANNED", "DETACHING", "MIGRATING", NOVA_CALLED, "VERIFYING", "REATTACHING"]


@pytest.fixture
def mariadb() -> Iterator[MariaDbProcess]:
    server = MariaDbProcess()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def kube() -> Iterator[tuple[KubeApiServer, str]]:
    api = KubeApiServer()
    api.add_node(NODE)
    with api.serve() as url:
        yield api, url


@dataclass
class Drill:
    """Two replicas, the Services in front of them, the agents, the journal."""

    a: Replica
    b: Replica
    agents: ReadyRouter
    admin: ReadyRouter
    fleet: Fleet
    journal: SqlJournal
    compute: NovaCompute
    hot: str
    steal: dict[str, float] = field(default_factory=dict)

    async def feed(self, until: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Agents report what Nova has where (the test's VMs only) until `until()`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.to_thread(self._place)
            await self.fleet.round(1.0)
            value = await asyncio.to_thread(until)
            if value:
                return value
            await asyncio.sleep(0.3)
        raise AssertionError(
            f"timed out waiting for {what}\n-- a --\n{self.a.tail()}\n-- b --\n{self.b.tail()}"
        )

    async def feed_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.to_thread(self._place)
            await self.fleet.round(1.0)
            await asyncio.sleep(0.3)

    def _place(self) -> None:
        server = self.compute.get_server(self.hot)
        for host, vms in self.fleet.vms.items():
            if server.host == host and server.status == "ACTIVE":
                vm = vms.setdefault(self.hot, FakeVm(self.hot, busy=0.5))
                vm.steal = self.steal.get(host, 0.0)
            else:
                vms.pop(self.hot, None)


@asynccontextmanager
async def drill(
    tmp_path: Path,
    nova: NovaProcess,
    cloud: NovaCloud,
    kube: tuple[KubeApiServer, str],
    db: MariaDbProcess,
) -> AsyncIterator[Drill]:
    api, kube_url = kube
    secret = tmp_path / "journal-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    settings = {
        "service": {
            "journal_url": db.url, "journal_password_file": str(secret),
            "plan_interval_s": 0.5, "inventory_interval_s": 1.0,
        },
        "workflow": {"poll_s": 0.3, "verify_timeout_s": 20},
        "policy": {"sustained_s": 1.5},  # two of the agents' 1 s reports
        "nova": {"compute_endpoint_override": nova.endpoint},
        "kubernetes": {"clusters": {"default": {
            "kubeconfig": str(write_kubeconfig(tmp_path / "kubeconfig", kube_url, "t"))}}},
        # Short Lease timings keep the drill quick; the production figures are in
        # BENCHMARKS.md (bench_failover.py).
        "leader": {"enabled": True, "lease_duration_s": 3.0, "renew_deadline_s": 2.0,
                   "retry_period_s": 0.5},
    }  # fmt: skip
    hot = cloud.boot("host-b", metadata={
        "role": "batch", "stealbalancer.orchestrator": "kubernetes",
        "stealbalancer.orchestrator_ref": f"default/{NODE}"})  # fmt: skip
    api.add_node(NODE, system_uuid=hot)  # the node runs in the hot VM
    a, b = Replica("replica-a", tmp_path, settings), Replica("replica-b", tmp_path, settings)
    agents, admin = ReadyRouter([a, b], "agent_port"), ReadyRouter([a, b], "admin_port")
    fleet = Fleet(agents.address, HOSTS)
    journal = SqlJournal(db.url, password=PASSWORD)
    try:
        yield Drill(a, b, agents, admin, fleet, journal, NovaCompute(cloud.conn), hot)
    finally:
        await fleet.close()
        for replica in (a, b):
            replica.stop()
        agents.close()
        admin.close()
        journal.close()


async def _start_a_then_b(d: Drill, crash_at: str) -> None:
    d.a.start({CRASH_ENV: crash_at})
    await d.feed(d.a.ready, 60, "replica-a to lead")
    d.b.start({})
    await d.feed(lambda: _answers_http(d.b), 60, "replica-b to start as a follower")
    assert not d.b.ready(), "a follower must not be Ready"


def _answers_http(replica: Replica) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=1):
            return True
    except OSError:
        return False


def _only_migration(journal: SqlJournal) -> MigrationRecord | None:
    history = journal.history()
    assert len(history) <= 1, f"a second migration was started: {history}"
    return history[0] if history else None


@pytest.mark.parametrize("crash_at", CRASH_STATES)
def test_the_survivor_finishes_or_rolls_back_the_leaders_migration_exactly_once(
    crash_at: str,
    tmp_path: Path,
    nova_process: NovaProcess,
    nova_cloud: NovaCloud,
    kube: tuple[KubeApiServer, str],
    mariadb: MariaDbProcess,
) -> None:
    api = kube[0]

    async def scenario() -> None:
        async with drill(tmp_path, nova_process, nova_cloud, kube, mariadb) as d:
            await _start_a_then_b(d, crash_at)
            d.steal["host-b"] = 0.4  # contended where it is: replica-a plans the move
            record = await d.feed(lambda: _only_migration(d.journal), 60, "a planned move")
            d.steal.clear()  # nothing else to relieve: any second move would be a bug
            await d.feed(lambda: not d.a.alive(), 90, f"replica-a to die at {crash_at}")
            assert d.a.proc is not None and d.a.proc.returncode == -signal.SIGKILL, d.a.tail()
            died = time.monotonic()

            await d.feed(d.b.ready, 60, "replica-b to take over")
            took_over = time.monotonic() - died

            def ended() -> MigrationRecord | None:
                current = d.journal.get(record.id)
                return current if current is not None and current.state.terminal else None

            final = await d.feed(ended, 120, "the open migration to end")
            status = await d.feed(
                lambda: _status_when_all_agents_report(d), 60, "every agent at replica-b"
            )
            _check_outcome(d, final, api)
            assert status["leader"] and status["leader_identity"] == "replica-b"
            assert took_over < 15, f"takeover took {took_over:.1f} s with a 3 s Lease"

    asyncio.run(scenario())


def _status_when_all_agents_report(d: Drill) -> dict[str, Any] | None:
    try:
        status = coordctl(d.admin.address, "status")
    except RuntimeError:
        return None
    fresh = status.get("hosts_total", 0) - status.get("hosts_stale", 0)
    return status if status.get("leader") and fresh == len(HOSTS) else None


_UNDER_WAY = frozenset({"queued", "preparing", "running", "post-migrating"})


def settled_moves(d: Drill) -> list[MigrationInfo]:
    """Nova's migrations of the VM once none is under way. The controller takes the
    server ACTIVE on the target as the truth (Nova flips its migration record a little
    later), so right after the journal says DONE the record may still say running."""

    def settled() -> tuple[list[MigrationInfo]] | None:
        moves = d.compute.list_migrations(d.hot)
        return None if any(m.status in _UNDER_WAY for m in moves) else (moves,)

    found: tuple[list[MigrationInfo]] = eventually(settled, 60, "Nova's records to settle")
    return found[0]


def _check_outcome(d: Drill, final: MigrationRecord, api: KubeApiServer) -> None:
    states = [s for _, s, _ in d.journal.transitions(final.id)]
    assert sum(s.terminal for s in states) == 1 and states[-1] is final.state, states
    assert _only_migration(d.journal) == final
    moves = settled_moves(d)
    assert len(moves) <= 1, f"Nova was asked to move the VM twice: {moves}"
    where = d.compute.get_server(d.hot).host
    if final.state is State.DONE:
        assert [m.status for m in moves] == ["completed"] and where == final.target
    else:  # rolled back: the VM is where it was, or Nova finished the one move it was asked
        assert where in {final.source, final.target}
        assert all(m.status != "running" for m in moves)
    node = api.node(NODE)
    assert not node["spec"].get("unschedulable"), "the guest's node was left cordoned"
    assert DETACHED not in node["metadata"].get("annotations", {}), node["metadata"]


def test_the_survivor_keeps_the_pause(
    tmp_path: Path,
    nova_process: NovaProcess,
    nova_cloud: NovaCloud,
    kube: tuple[KubeApiServer, str],
    mariadb: MariaDbProcess,
) -> None:
    """Paused through the Service, an operator moves one VM by hand; the leader dies
    mid-move. The survivor ends that move and stays paused: the other contended VM,
    which nobody asked to move, stays where it is."""

    async def scenario() -> None:
        async with drill(tmp_path, nova_process, nova_cloud, kube, mariadb) as d:
            await _start_a_then_b(d, NOVA_CALLED)
            coordctl(d.admin.address, "pause", "--reason", "drill: change freeze")
            # A manual move needs the VM's telemetry: on a loaded machine the agents may
            # still be registering once replica-b is up.
            await d.feed(lambda: _status_when_all_agents_report(d), 60, "every agent at a")
            d.steal["host-b"] = 0.4
            await d.feed_for(3.0)  # the sustained samples the policy wants
            try:
                coordctl(d.admin.address, "migrate", d.hot, "--force")
            except RuntimeError:
                # replica-a may die before it answers: the journal says what it did. A
                # refusal, though, is the drill failing, not the leader dying.
                if not d.journal.history():
                    raise
            await d.feed(lambda: not d.a.alive(), 90, "replica-a to die mid-move")
            await d.feed(d.b.ready, 60, "replica-b to take over")
            (record,) = d.journal.history()
            await d.feed(lambda: _terminal(d, record.id), 120, "the manual move to end")
            status = coordctl(d.admin.address, "status")
            assert status["paused"] and "change freeze" in status["paused_reason"], status
            for host in ("host-a", "host-b", "host-c"):  # hot wherever it is now
                d.steal[host] = 0.4
            await d.feed_for(10.0)
            assert len(d.journal.history()) == 1, "a paused coordinator started a move"

    asyncio.run(scenario())


def _terminal(d: Drill, migration_id: str) -> bool:
    record = d.journal.get(migration_id)
    return record is not None and record.state.terminal


def test_the_leader_takes_no_step_while_the_database_is_gone_and_resumes_after(
    tmp_path: Path,
    nova_process: NovaProcess,
    nova_cloud: NovaCloud,
    kube: tuple[KubeApiServer, str],
    mariadb: MariaDbProcess,
) -> None:
    """The database stops (a partition between the leader and it): a VM turns hot, yet
    the leader asks Nova for nothing it could not journal. The database comes back:
    the leader moves the VM, journaled, once."""

    async def scenario() -> None:
        async with drill(tmp_path, nova_process, nova_cloud, kube, mariadb) as d:
            d.a.start({})
            await d.feed(d.a.ready, 60, "replica-a to lead")
            mariadb.stop()
            d.steal["host-b"] = 0.4
            await d.feed_for(10.0)  # twenty planning rounds with a contended VM
            with pytest.raises(RuntimeError):
                coordctl(d.admin.address, "migrate", d.hot, "--force")  # refused, not acted on
            assert d.compute.list_migrations(d.hot) == []
            mariadb.start()
            record = await d.feed(lambda: _only_migration(d.journal), 60, "the move, journaled")
            await d.feed(lambda: _terminal(d, record.id), 120, "the move to end")
            final = d.journal.get(record.id)
            assert final is not None and final.state is State.DONE, d.a.tail()
            moves = settled_moves(d)
            assert [m.status for m in moves] == ["completed"]

    asyncio.run(scenario())


def test_a_migration_in_flight_when_the_database_goes_ends_once_it_is_back(
    tmp_path: Path,
    nova_process: NovaProcess,
    nova_cloud: NovaCloud,
    kube: tuple[KubeApiServer, str],
    mariadb: MariaDbProcess,
) -> None:
    api = kube[0]

    async def scenario() -> None:
        async with drill(tmp_path, nova_process, nova_cloud, kube, mariadb) as d:
            d.a.start({})
            await d.feed(d.a.ready, 60, "replica-a to lead")
            d.steal["host-b"] = 0.4

            def moving() -> MigrationRecord | None:
                record = _only_migration(d.journal)
                live = (State.MIGRATING, State.VERIFYING)
                return record if record is not None and record.state in live else None

            record = await d.feed(moving, 60, "the VM to be moving")
            d.steal.clear()
            mariadb.stop()
            await d.feed_for(8.0)  # Nova finishes the move meanwhile; nothing can be journaled
            mariadb.start()
            await d.feed(lambda: _terminal(d, record.id), 30, "the move to end")
            final = d.journal.get(record.id)
            assert final is not None
            _check_outcome(d, final, api)

    asyncio.run(scenario())
