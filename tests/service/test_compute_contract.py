"""One contract for the Compute port, run against the simulated Nova and the real one.

The real one is Nova 34 (tests/nova/serve_nova.py) through openstacksdk; what passes
here is what the workflow may rely on.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from coordinator.config import Config, NovaConfig
from coordinator.errors import ComputeUnavailable, NoValidHost, ServerNotFound, TaskStateConflict
from coordinator.model import GroupPolicy
from coordinator.ports import Compute, MigrationInfo, ServerInfo
from coordinator.service.main import _compute  # how serve builds it: the timeout's wiring
from tests.service.cloud import HOSTS, Cloud, NovaCloud, NovaProcess


def wait_for(cloud: Cloud, uuid: str, status: str, timeout_s: float = 30.0) -> ServerInfo:
    deadline = time.monotonic() + timeout_s
    while True:
        server = cloud.compute.get_server(uuid)
        if server.status == status and server.task_state is None:
            return server
        if time.monotonic() > deadline:
            raise AssertionError(f"{uuid} still {server.status}/{server.task_state}")
        time.sleep(0.2)


def _patience(cloud: Cloud) -> float:
    """How long a migration may take: generous, since CI machines are busy."""
    return max(cloud.migration_s * 4, 60.0)


def _migration_settled(cloud: Cloud, uuid: str, timeout_s: float = 30.0) -> MigrationInfo:
    deadline = time.monotonic() + timeout_s
    while True:
        newest = cloud.compute.list_migrations(uuid)[0]
        if newest.status not in {"queued", "preparing", "running", "post-migrating"}:
            return newest
        if time.monotonic() > deadline:
            raise AssertionError(f"migration of {uuid} still {newest.status}")
        time.sleep(0.2)


def test_inventory_lists_hosts_with_their_az(cloud: Cloud) -> None:
    zones = {h.name: h.az for h in cloud.compute.list_hypervisors()}
    assert zones == {"host-a": "az1", "host-b": "az1", "host-c": "az1", "host-d": "az2"}
    assert all(h.vcpus > 0 and h.enabled and h.up for h in cloud.compute.list_hypervisors())


def test_servers_carry_host_flavor_and_metadata(cloud: Cloud) -> None:
    uuid = cloud.boot("host-b", metadata={"role": "web", "orchestrator": "none"})
    listed = {s.uuid: s for s in cloud.compute.list_servers()}
    server = listed[uuid]
    assert (server.host, server.az, server.status) == ("host-b", "az1", "ACTIVE")
    assert server.metadata["role"] == "web"
    assert server.vcpus >= 1 and server.ram_mib > 0
    # What tells two servers of the same name apart for an operator.
    assert server.project_id and server.project_id == cloud.compute.get_server(uuid).project_id


def test_servers_carry_their_addresses(cloud: Cloud) -> None:
    """What a Consul agent's advertised address is checked against: every address Nova
    lists for the server, as canonical IP text, the same whichever call read it."""
    uuid = cloud.boot("host-a", network=True)
    server = {s.uuid: s for s in cloud.compute.list_servers()}[uuid]
    assert server.addresses, "a server with a port has an address"
    assert all(str(ipaddress.ip_address(a)) == a for a in server.addresses)
    assert cloud.compute.get_server(uuid).addresses == server.addresses


def test_server_groups_carry_policy_and_members(cloud: Cloud) -> None:
    group = cloud.make_group(GroupPolicy.ANTI_AFFINITY)
    uuid = cloud.boot("host-a", group=group)
    found = {g.id: g for g in cloud.compute.list_server_groups()}[group]
    assert found.policy is GroupPolicy.ANTI_AFFINITY
    assert uuid in found.members


def test_live_migration_goes_through_migrating_to_active_on_target(cloud: Cloud) -> None:
    uuid = cloud.boot("host-a")
    cloud.compute.live_migrate(uuid, "host-c")
    assert cloud.compute.get_server(uuid).status == "MIGRATING"
    server = wait_for(cloud, uuid, "ACTIVE", timeout_s=_patience(cloud))
    assert server.host == "host-c"
    # Nova marks the server ACTIVE on the target a moment before the migration record
    # says "completed" (post-live-migration finishes on the source compute).
    newest = _migration_settled(cloud, uuid)
    assert (newest.status, newest.source, newest.dest) == ("completed", "host-a", "host-c")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param("host-a", "No valid host", id="same-host"),
        pytest.param("host-zz", "could not be found", id="unknown-host"),
        pytest.param("host-d", "No valid host", id="other-az"),
    ],
)
def test_impossible_targets_are_refused_with_400(cloud: Cloud, target: str, message: str) -> None:
    uuid = cloud.boot("host-a")
    with pytest.raises(NoValidHost, match=message):
        cloud.compute.live_migrate(uuid, target)
    server = cloud.compute.get_server(uuid)
    assert (server.host, server.status) == ("host-a", "ACTIVE")


def test_anti_affinity_target_is_refused(cloud: Cloud) -> None:
    group = cloud.make_group(GroupPolicy.ANTI_AFFINITY)
    first = cloud.boot("host-a", group=group)
    cloud.boot("host-b", group=group)
    with pytest.raises(NoValidHost):
        cloud.compute.live_migrate(first, "host-b")


def test_second_migration_while_one_runs_is_409(cloud: Cloud) -> None:
    uuid = cloud.boot("host-b")
    cloud.compute.live_migrate(uuid, "host-c")
    with pytest.raises(TaskStateConflict):
        cloud.compute.live_migrate(uuid, "host-a")
    wait_for(cloud, uuid, "ACTIVE", timeout_s=_patience(cloud))


def test_abort_leaves_server_on_source_and_migration_cancelled(cloud: Cloud) -> None:
    uuid = cloud.boot("host-c")
    cloud.compute.live_migrate(uuid, "host-a")
    running = cloud.compute.list_migrations(uuid)[0]
    deadline = time.monotonic() + 10
    while running.status != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        running = cloud.compute.list_migrations(uuid)[0]
    cloud.compute.abort_migration(uuid, running.id)
    server = wait_for(cloud, uuid, "ACTIVE", timeout_s=_patience(cloud))
    assert server.host == "host-c"
    assert cloud.compute.list_migrations(uuid)[0].status == "cancelled"


def test_unknown_server_is_not_found(cloud: Cloud) -> None:
    with pytest.raises(ServerNotFound):
        cloud.compute.get_server("00000000-0000-0000-0000-000000000000")


_MAX_LIMIT = 2


@pytest.fixture(scope="module")
def paged_nova() -> Iterator[NovaCloud]:
    """A second real Nova whose `[api] max_limit` is 2: its four hosts fill two pages
    exactly, so only a client that pages (and stops at the right page) sees them all."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STEALBALANCER_NOVA_MAX_LIMIT", str(_MAX_LIMIT))
        process = NovaProcess()
    try:
        yield NovaCloud(process.endpoint)
    finally:
        process.stop()


@pytest.mark.nova
@pytest.mark.slow
def test_inventory_pages_through_every_hypervisor(paged_nova: NovaCloud) -> None:
    assert sorted(h.name for h in paged_nova.compute.list_hypervisors()) == sorted(HOSTS)


@pytest.mark.nova
@pytest.mark.slow
def test_server_groups_page_through_every_group(paged_nova: NovaCloud) -> None:
    # Five groups: two full pages and a short one.
    made = [paged_nova.make_group(GroupPolicy.AFFINITY) for _ in range(2 * _MAX_LIMIT + 1)]
    member = paged_nova.boot("host-b", group=made[-1])
    found = {g.id: g for g in paged_nova.compute.list_server_groups()}
    assert set(made) <= set(found)
    assert member in found[made[-1]].members


@contextmanager
def _silent_endpoint() -> Iterator[str]:
    """A Nova that accepts connections and never answers (a hung API worker, a
    black-holed load balancer)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        held: list[socket.socket] = []
        accepting = threading.Thread(target=_hold, args=(listener, held), daemon=True)
        accepting.start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}/v2.1"
        finally:
            for conn in held:
                conn.close()


def _hold(listener: socket.socket, held: list[socket.socket]) -> None:
    with suppress(OSError):  # the listener closed: the test is over
        while True:
            held.append(listener.accept()[0])


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.list_hypervisors(), id="list_hypervisors"),
        pytest.param(lambda c: c.list_server_groups(), id="list_server_groups"),
        pytest.param(lambda c: c.get_server("00000000-0000-0000-0000-000000000000"), id="get"),
    ],
)
def test_nova_that_never_answers_is_unavailable_within_the_timeout(
    call: Callable[[Compute], object],
) -> None:
    timeout_s = 0.5
    outcome: list[BaseException | None] = []

    def attempt(compute: Compute) -> None:
        try:
            call(compute)
            outcome.append(None)
        except BaseException as exc:  # reported to the test thread below
            outcome.append(exc)

    with _silent_endpoint() as endpoint:
        nova = NovaConfig(compute_endpoint_override=endpoint, timeout_s=timeout_s)
        compute = _compute(Config(nova=nova))
        worker = threading.Thread(target=attempt, args=(compute,), daemon=True)
        started = time.monotonic()
        worker.start()
        # Generous: keystoneauth may spend one timeout on discovery, one on the call.
        worker.join(timeout_s * 20)
        assert not worker.is_alive(), "the call was still blocked"
    assert isinstance(outcome[0], ComputeUnavailable), outcome
    assert time.monotonic() - started < timeout_s * 20
