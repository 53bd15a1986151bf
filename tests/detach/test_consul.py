"""ConsulDetacher against the Consul agent double, through the real py-consul client."""

from __future__ import annotations

import consul
import pytest

from coordinator.adapters.consul import ConsulDetacher, split_address
from coordinator.errors import DetachRefused, OrchestratorUnreachable
from tests.detach.conftest import (
    CONSUL_TOKEN,
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
        address = url.removeprefix("http://")
    detacher = ConsulDetacher(consul_config(request_timeout_s=1.0))

    with pytest.raises(OrchestratorUnreachable):
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
