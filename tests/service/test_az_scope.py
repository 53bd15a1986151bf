"""Scale-out by AZ: a coordinator owning `service.azs` sees, admits, plans and touches
only those AZs, so one coordinator per AZ group can run against the same Nova."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest

from coordinator.adapters.az_scope import AzScopedCompute
from coordinator.adapters.sim.compute import SimCompute
from coordinator.api.v1 import admin_pb2
from coordinator.config import Config
from coordinator.errors import ComputeForbidden
from coordinator.leader import lease_name
from coordinator.policy import is_contended
from coordinator.service.main import Running
from tests.service.cloud import HOSTS, NovaCloud, SimCloud
from tests.service.fake_agent import FakeAgent, FakeVm
from tests.service.harness import (
    admin,
    agents_for,
    report_all,
    service,
    service_config,
    started,
    until,
)
from tests.service.test_service import run

AZS = {"az1": ["a1", "a2", "a3"], "az2": ["b1", "b2", "b3"]}


def two_az_nova() -> SimCompute:
    """One Nova, two AZs, a contended VM and a calm one in each."""
    nova = SimCompute(clock=time.time, migration_s=0.3)
    for az, hosts in AZS.items():
        for host in hosts:
            nova.add_hypervisor(host, az)
        nova.add_server(f"hot-{az}", hosts[0], name=f"hot-{az}")
        nova.add_server(f"calm-{az}", hosts[0], name=f"calm-{az}")
    return nova


def place(agents: dict[str, FakeAgent], nova: SimCompute) -> None:
    for host, agent in agents.items():
        for server in nova.list_servers():
            if server.host == host:
                steal = 0.4 if server.uuid.startswith("hot") else 0.0
                agent.vms.setdefault(server.uuid, FakeVm(server.uuid, steal=steal, busy=0.5))


def test_two_coordinators_for_two_azs_never_touch_each_others_vms(tmp_path: Path) -> None:
    async def scenario() -> None:
        nova = two_az_nova()
        async with AsyncExitStack() as stack:
            running: dict[str, Running] = {}
            agents: dict[str, dict[str, FakeAgent]] = {}
            for az, hosts in AZS.items():  # both run at once, against the one Nova
                config = service_config(
                    tmp_path / az, service={"azs": [az]}, workflow={"verify_timeout_s": 1.0}
                )
                running[az] = await stack.enter_async_context(service(config, nova))
                await _refuses_the_other_az(running[az], az)
                agents[az] = await agents_for(running[az], dict.fromkeys(hosts, az))
                stack.push_async_callback(_close_all, agents[az])
                place(agents[az], nova)
            for _ in range(4):
                for az in AZS:
                    await report_all(agents[az], rounds=1)
            for az in AZS:  # reports travel asynchronously: wait until they are folded in
                await until(lambda az=az: _contended(running[az], f"hot-{az}"))
            moved = {az: await started(running[az]) for az in AZS}
            assert {az: [r.vm_uuid for r in records] for az, records in moved.items()} == {
                "az1": ["hot-az1"], "az2": ["hot-az2"],
            }  # fmt: skip
            for az, records in moved.items():
                assert all(r.az == az and r.target in AZS[az] for r in records)
                await _admin_sees_only(running[az], az)
        assert sorted(uuid for uuid, _ in nova.live_migrate_calls) == ["hot-az1", "hot-az2"]
        for uuid, target in nova.live_migrate_calls:
            assert target in AZS[uuid.removeprefix("hot-")], f"{uuid} sent to {target}"

    run(scenario())


def _contended(running: Running, uuid: str) -> bool:
    coordinator = running.coordinator
    vm = coordinator.snapshot().vms.get(uuid)
    return vm is not None and is_contended(vm, coordinator.config.policy)


async def _close_all(agents: dict[str, FakeAgent]) -> None:
    for agent in agents.values():
        await agent.close()


async def _refuses_the_other_az(running: Running, az: str) -> None:
    other = "az2" if az == "az1" else "az1"
    stranger = FakeAgent(f"127.0.0.1:{running.agent_port}", AZS[other][1], other)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stranger.connect()
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "foreign_az"
    await stranger.close()


async def _admin_sees_only(running: Running, az: str) -> None:
    channel, stub = admin(running)
    try:
        hosts = (await stub.ListHosts(admin_pb2.ListHostsRequest())).hosts
        assert {h.name for h in hosts} == set(AZS[az])
        other = "az2" if az == "az1" else "az1"
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Migrate(admin_pb2.MigrateRequest(vm=f"calm-{other}"))
    finally:
        await channel.close(None)


def test_the_scoped_compute_refuses_servers_and_targets_of_other_azs() -> None:
    nova = two_az_nova()
    scoped = AzScopedCompute(nova, ["az1"])
    assert {h.name for h in scoped.list_hypervisors()} == set(AZS["az1"])
    assert {s.uuid for s in scoped.list_servers()} == {"hot-az1", "calm-az1"}
    with pytest.raises(ComputeForbidden, match="az2"):
        scoped.get_server("hot-az2")
    with pytest.raises(ComputeForbidden, match="az2"):
        scoped.live_migrate("hot-az2", "b2")
    with pytest.raises(ComputeForbidden, match="not a hypervisor"):
        scoped.live_migrate("hot-az1", "b2")  # a VM of ours to a host of theirs
    with pytest.raises(ComputeForbidden):
        scoped.list_migrations("hot-az2")
    with pytest.raises(ComputeForbidden):
        scoped.abort_migration("hot-az2", "1")
    assert nova.live_migrate_calls == []
    scoped.live_migrate("hot-az1", "a2")
    assert nova.live_migrate_calls == [("hot-az1", "a2")]


@pytest.mark.parametrize(
    ("azs", "expected"),
    [
        pytest.param([], "stealbalancer-coordinator", id="all-azs"),
        pytest.param(["az2", "az1"], "stealbalancer-coordinator-az1-az2", id="sorted"),
        pytest.param(["AZ_1"], "stealbalancer-coordinator-az-1-f765f83b", id="sanitised"),
    ],
)
def test_each_az_group_competes_for_its_own_lease(azs: list[str], expected: str) -> None:
    name = lease_name(Config.model_validate({"service": {"azs": azs}}))
    assert name == expected
    assert len(name) <= 63


def test_lease_names_of_different_az_groups_differ() -> None:
    def named(*azs: str) -> str:
        return lease_name(Config.model_validate({"service": {"azs": list(azs)}}))

    names = {named("az1"), named("az2"), named("AZ_1"), named("az-1"), named("az1", "az2")}
    assert len(names) == 5


def test_per_az_coordinators_on_one_nova_move_only_their_own(
    tmp_path: Path, cloud: SimCloud | NovaCloud
) -> None:
    """The same on the cloud fixture: the simulated Nova and the real one (three
    hypervisors in az1, one in az2), with both coordinators running at once."""
    by_az: dict[str, list[str]] = {}
    for host, az in HOSTS.items():
        by_az.setdefault(az, []).append(host)
    hot = {az: cloud.boot(hosts[0], metadata={"role": "batch"}) for az, hosts in by_az.items()}

    async def scenario() -> None:
        async with AsyncExitStack() as stack:
            running: dict[str, Running] = {}
            fleets: dict[str, dict[str, FakeAgent]] = {}
            for az, hosts in by_az.items():
                config = service_config(
                    tmp_path / az, service={"azs": [az]}, workflow={"verify_timeout_s": 1.0}
                )
                running[az] = await stack.enter_async_context(service(config, cloud.compute))
                fleets[az] = await agents_for(running[az], dict.fromkeys(hosts, az))
                stack.push_async_callback(_close_all, fleets[az])
                for agent in fleets[az].values():
                    if agent.host == hosts[0]:
                        agent.vms[hot[az]] = FakeVm(hot[az], steal=0.4, busy=0.5)
            for _ in range(4):
                for fleet in fleets.values():
                    await report_all(fleet, rounds=1)
            for az in by_az:
                await until(lambda az=az: _contended(running[az], hot[az]))
            moved = {az: await started(running[az]) for az in by_az}
            # az2 has one hypervisor: its hot VM has nowhere to go, and az1's
            # coordinator does not help it out.
            assert {az: [r.vm_uuid for r in m] for az, m in moved.items()} == {
                "az1": [hot["az1"]], "az2": [],
            }  # fmt: skip
            channel, stub = admin(running["az1"])
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Migrate(admin_pb2.MigrateRequest(vm=hot["az2"]))
            assert refused.value.code() is grpc.StatusCode.NOT_FOUND
            await channel.close(None)
            await until(lambda: cloud.compute.list_migrations(hot["az1"]), timeout_s=60)
        (move,) = cloud.compute.list_migrations(hot["az1"])
        assert HOSTS[move.dest] == "az1"
        assert cloud.compute.list_migrations(hot["az2"]) == []

    run(scenario())


@pytest.mark.parametrize("azs", [[""], ["az1", "az1"], [" "]], ids=["empty", "twice", "blank"])
def test_an_az_list_with_a_blank_or_repeated_name_is_refused(azs: list[str]) -> None:
    from coordinator.config import ConfigError, parse_model

    with pytest.raises(ConfigError, match="each availability zone once"):
        parse_model(Config, {"service": {"azs": azs}}, "coordinator.yaml")
