"""ConsulDetacher against the Consul agent double, through the real py-consul client."""

from __future__ import annotations

from dataclasses import replace

import consul
import pytest

from coordinator.adapters.consul import ConsulDetacher, split_address
from coordinator.errors import DetachRefused, OrchestratorUnreachable
from tests.detach.conftest import (
    CONSUL_TOKEN,
    agent_ref,
    consul_config,
    consul_vm,
    until_detached,
    until_reattached,
)
from tests.doubles.consul_agent import ConsulCluster


def passing_nodes(address: str, service: str) -> set[str]:
    """What a load balancer reading the health view would route to."""
    host, port = split_address(address, 8500)
    client = consul.Consul(host=host, port=port, token=CONSUL_TOKEN)
    _, entries = client.health.service(service, passing=True)
    return {e["Node"]["Node"] for e in entries}


def test_maintenance_on_and_off_with_the_health_view_following(
    consul_cluster: ConsulCluster, consul_address: str, consul_detacher: ConsulDetacher
) -> None:
    vm = consul_vm(consul_address)
    assert passing_nodes(consul_address, "web") == {"svc-vm", "peer-vm"}

    assert until_detached(consul_detacher, vm, "mig-1")

    assert consul_cluster.in_maintenance("svc-vm")
    assert passing_nodes(consul_address, "web") == {"peer-vm"}
    assert passing_nodes(consul_address, "api") == set()
    assert consul_detacher.detached_by(vm) == "mig-1"
    puts = [q for m, p, q in consul_cluster.requests if p == "/v1/agent/maintenance"]
    assert puts == [{"enable": "true", "reason": "stealbalancer:mig-1"}]

    assert until_reattached(consul_detacher, vm, "mig-1")

    assert not consul_cluster.in_maintenance("svc-vm")
    assert passing_nodes(consul_address, "web") == {"svc-vm", "peer-vm"}
    assert passing_nodes(consul_address, "api") == {"svc-vm"}
    assert consul_detacher.detached_by(vm) is None


def test_detach_waits_for_the_view_to_follow(
    consul_cluster: ConsulCluster, consul_address: str
) -> None:
    """With a lagging catalog the VM is out only once the view follows, not at the PUT."""
    consul_cluster.propagation_s = 0.5
    detacher = ConsulDetacher(consul_config())
    vm = consul_vm(consul_address)

    assert detacher.detach(vm, "mig") is False
    assert until_detached(detacher, vm, "mig")

    assert passing_nodes(consul_address, "web") == {"peer-vm"}
    health_reads = [p for m, p, q in consul_cluster.requests if p.startswith("/v1/health/")]
    assert len(health_reads) > 4
    puts = [q for m, p, q in consul_cluster.requests if p == "/v1/agent/maintenance"]
    assert len(puts) == 1, "maintenance is switched on once, not once per pass"


def test_view_that_never_follows_then_the_give_up_ends_maintenance(
    consul_cluster: ConsulCluster, consul_address: str
) -> None:
    consul_cluster.propagation_s = 60.0
    detacher = ConsulDetacher(consul_config(verify_timeout_s=0.3))
    vm = consul_vm(consul_address)

    assert not until_detached(detacher, vm, "mig", timeout_s=detacher.detach_timeout_s)
    assert detacher.detached_by(vm) == "mig"
    detacher.reattach(vm, "mig")  # what the controller does when it gives up

    assert not consul_cluster.in_maintenance("svc-vm")
    assert detacher.detached_by(vm) is None


def test_reattach_does_not_wait_for_a_service_failing_its_own_check(
    consul_cluster: ConsulCluster, consul_address: str
) -> None:
    consul_cluster.nodes["svc-vm"].failing.add("api")
    detacher = ConsulDetacher(consul_config(verify_timeout_s=1.0))
    vm = consul_vm(consul_address)
    assert passing_nodes(consul_address, "api") == set()

    assert until_detached(detacher, vm, "mig")
    assert until_reattached(detacher, vm, "mig")

    assert passing_nodes(consul_address, "web") == {"svc-vm", "peer-vm"}
    assert passing_nodes(consul_address, "api") == set(), "still down, and not our business"
    assert detacher.detached_by(vm) is None


def test_unreachable_agent_skips_the_move(consul_cluster: ConsulCluster) -> None:
    with consul_cluster.serve_agent("svc-vm") as url:
        address = agent_ref(url)
    detacher = ConsulDetacher(consul_config(request_timeout_s=1.0))

    with pytest.raises(OrchestratorUnreachable, match=r"cannot confirm it is VM .* own agent"):
        detacher.detach(consul_vm(address), "mig")
    with pytest.raises(OrchestratorUnreachable):
        detacher.detached_by(consul_vm(address))
    assert not consul_cluster.in_maintenance("svc-vm")


def test_wrong_acl_token_is_refused(consul_cluster: ConsulCluster, consul_address: str) -> None:
    detacher = ConsulDetacher(consul_config(token="not-the-token"))

    with pytest.raises(DetachRefused, match="ACL"):
        detacher.detach(consul_vm(consul_address), "mig")
    assert not consul_cluster.in_maintenance("svc-vm")


def test_operator_maintenance_is_left_alone(
    consul_cluster: ConsulCluster, consul_address: str, consul_detacher: ConsulDetacher
) -> None:
    consul_cluster.propagation_s = 0.0
    host, port = split_address(consul_address, 8500)
    consul.Consul(host=host, port=port, token=CONSUL_TOKEN).agent.maintenance("true", "disk swap")
    vm = consul_vm(consul_address)

    with pytest.raises(DetachRefused, match="disk swap"):
        consul_detacher.detach(vm, "mig")
    assert consul_detacher.detached_by(vm) is None
    assert not until_reattached(ConsulDetacher(consul_config()), vm, "mig", timeout_s=0.2)
    assert consul_cluster.in_maintenance("svc-vm"), "an operator's maintenance is never ended"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param("10.1.2.3", ("10.1.2.3", 8500), id="host"),
        pytest.param("10.1.2.3:8501", ("10.1.2.3", 8501), id="host-port"),
        pytest.param("vm.example:8500", ("vm.example", 8500), id="name-port"),
        pytest.param("[fd00::1]:8501", ("[fd00::1]", 8501), id="v6-port"),
        pytest.param("fd00::1", ("[fd00::1]", 8500), id="bare-v6"),
    ],
)
def test_split_address(ref: str, expected: tuple[str, int]) -> None:
    assert split_address(ref, 8500) == expected


def test_bad_address() -> None:
    with pytest.raises(DetachRefused):
        split_address("host:http", 8500)


def test_a_ref_to_another_vms_agent_never_puts_that_node_in_maintenance(
    consul_cluster: ConsulCluster, consul_detacher: ConsulDetacher
) -> None:
    """orchestrator_ref is tenant-writable: svc-vm's ref names peer-vm's agent (a typo,
    or a lie), and our move put peer-vm in maintenance, taking its `web` out of the
    rotation. Its agent advertises 10.0.0.2, which Nova does not list for svc-vm."""
    with consul_cluster.serve_agent("peer-vm") as peer_url:
        vm = consul_vm(agent_ref(peer_url), ip=consul_cluster.nodes["svc-vm"].address)

        with pytest.raises(DetachRefused, match=r"is not VM .*'s: it advertises '10\.0\.0\.2'"):
            consul_detacher.detach(vm, "mig")
        assert until_reattached(consul_detacher, vm, "mig"), "the controller's reattach"
        assert consul_detacher.detached_by(vm) is None

        assert not consul_cluster.in_maintenance("peer-vm")
        assert passing_nodes(agent_ref(peer_url), "web") == {"svc-vm", "peer-vm"}
    puts = [p for m, p, _ in consul_cluster.requests if m == "PUT"]
    assert puts == [], "nothing was switched on, nor off"


def test_a_ref_by_another_vms_ip_is_refused_without_asking_it(
    consul_cluster: ConsulCluster, consul_detacher: ConsulDetacher
) -> None:
    """A ref whose host is an IP literal Nova does not list for the VM names another
    machine: refused before any request (the join refuses it too)."""
    with consul_cluster.serve_agent("peer-vm") as peer_url:
        vm = consul_vm(peer_url.removeprefix("http://"), ip="10.0.0.1")

        with pytest.raises(DetachRefused, match="is not one of the VM's addresses"):
            consul_detacher.detach(vm, "mig")
    assert consul_cluster.requests == []
    assert not consul_cluster.in_maintenance("peer-vm")


@pytest.mark.parametrize(
    ("advertised", "nova", "detached"),
    [
        pytest.param("10.0.0.1", ("10.0.0.1",), True, id="its-own-address"),
        pytest.param("10.0.0.1", ("203.0.113.9", "10.0.0.1"), True, id="one-of-several"),
        pytest.param("fd00::1", ("fd00:0:0:0::1",), True, id="v6-spelt-otherwise"),
        pytest.param("10.0.0.9", ("10.0.0.1",), False, id="another-address"),
        pytest.param("", ("10.0.0.1",), False, id="no-member-address"),
        pytest.param("10.0.0.1", (), False, id="nova-lists-none"),
    ],
)  # fmt: skip
def test_only_an_agent_advertising_one_of_the_vms_addresses_is_detached(
    advertised: str, nova: tuple[str, ...], detached: bool
) -> None:
    cluster = ConsulCluster(token=CONSUL_TOKEN)
    cluster.add_node("svc-vm", {"web": 8080}, address="192.0.2.250")
    cluster.nodes["svc-vm"].address = advertised
    detacher = ConsulDetacher(consul_config())
    with cluster.serve_agent("svc-vm") as url:
        vm = replace(consul_vm(agent_ref(url)), addresses=nova)
        if detached:
            assert until_detached(detacher, vm, "mig")
            assert cluster.in_maintenance("svc-vm")
            assert until_reattached(detacher, vm, "mig")
            return
        with pytest.raises(DetachRefused):
            detacher.detach(vm, "mig")
    assert not cluster.in_maintenance("svc-vm")
