"""The Detacher port's contract, run against every adapter: the real Kubernetes and
Consul adapters (against the loopback doubles), the simulated one and "none".

What the controller relies on: detach (pass by pass) then detached_by names the
migration; both calls are idempotent (recovery repeats them after a crash); reattach of a VM that
is not detached is a no-op; each VM's state is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.adapters.sim.detacher import SimDetacher
from coordinator.model import Vm
from coordinator.ports import Detacher
from tests.detach.conftest import (
    KUBE_TOKEN,
    agent_ref,
    consul_config,
    consul_vm,
    kube_config,
    node_vm,
    until_detached,
    until_reattached,
    write_kubeconfig,
)
from tests.doubles.consul_agent import ConsulCluster
from tests.doubles.kube_apiserver import KubeApiServer


@dataclass
class World:
    detacher: Detacher
    vms: tuple[Vm, Vm]
    out_of_rotation: Callable[[Vm], bool] | None = None
    """How the orchestrator itself sees a VM (None for adapters with no outside world)."""


def kube_world(stack: ExitStack, tmp: Path) -> World:
    kube = KubeApiServer(tokens={KUBE_TOKEN}, grace_s=0.05)
    for node in ("n1", "n2"):
        kube.add_node(node, system_uuid=node_vm(node).uuid)
        kube.add_pod(f"app-{node}", node)
    url = stack.enter_context(kube.serve())
    detacher = KubernetesDetacher(kube_config(write_kubeconfig(tmp / "kc", url, KUBE_TOKEN)))
    vms = (node_vm("n1"), node_vm("n2"))
    return World(detacher, vms, lambda vm: bool(kube.node(vm.name)["spec"].get("unschedulable")))


def consul_world(stack: ExitStack, tmp: Path) -> World:
    cluster = ConsulCluster(token=consul_config().token)
    cluster.add_node("c1", {"web": 80})
    cluster.add_node("c2", {"web": 80})
    refs = [agent_ref(stack.enter_context(cluster.serve_agent(n))) for n in ("c1", "c2")]
    names = dict(zip(refs, ("c1", "c2"), strict=True))
    first, second = (consul_vm(ref, cluster.nodes[names[ref]].address) for ref in refs)
    vms = (first, second)
    return World(
        ConsulDetacher(consul_config()),
        vms,
        lambda vm: cluster.in_maintenance(names[vm.orchestrator_ref]),
    )


def memory_world(new: Callable[[], Detacher]) -> Callable[[ExitStack, Path], World]:
    def build(stack: ExitStack, tmp: Path) -> World:
        return World(new(), (node_vm("m1"), node_vm("m2")))

    return build


@pytest.fixture(
    params=[
        pytest.param(kube_world, id="kubernetes"),
        pytest.param(consul_world, id="consul"),
        pytest.param(memory_world(SimDetacher), id="sim"),
        pytest.param(memory_world(NoDetacher), id="none"),
    ]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with ExitStack() as stack:
        yield request.param(stack, tmp_path)


def check(world: World, vm: Vm, detached: bool) -> None:
    if world.out_of_rotation is not None:
        assert world.out_of_rotation(vm) is detached


def test_fresh_vm_is_not_detached(world: World) -> None:
    assert world.detacher.detached_by(world.vms[0]) is None
    check(world, world.vms[0], detached=False)


def test_detach_names_the_migration_and_reattach_clears_it(world: World) -> None:
    vm = world.vms[0]
    assert until_detached(world.detacher, vm, "mig-1")
    assert world.detacher.detached_by(vm) == "mig-1"
    check(world, vm, detached=True)

    assert until_reattached(world.detacher, vm, "mig-1")
    assert world.detacher.detached_by(vm) is None
    check(world, vm, detached=False)


def test_calls_are_idempotent(world: World) -> None:
    vm = world.vms[0]
    assert until_detached(world.detacher, vm, "mig-1")
    assert world.detacher.detach(vm, "mig-1"), "a detached VM stays detached"
    assert world.detacher.detached_by(vm) == "mig-1"
    assert until_reattached(world.detacher, vm, "mig-1")
    assert world.detacher.reattach(vm, "mig-1")
    assert world.detacher.detached_by(vm) is None
    check(world, vm, detached=False)


def test_reattach_without_detach_is_a_no_op(world: World) -> None:
    assert until_reattached(world.detacher, world.vms[0], "mig-never")
    assert world.detacher.detached_by(world.vms[0]) is None
    check(world, world.vms[0], detached=False)


def test_vms_are_independent(world: World) -> None:
    first, second = world.vms
    assert until_detached(world.detacher, first, "mig-1")
    assert until_detached(world.detacher, second, "mig-2")
    assert until_reattached(world.detacher, first, "mig-1")
    assert world.detacher.detached_by(first) is None
    assert world.detacher.detached_by(second) == "mig-2"
    check(world, first, detached=False)
    check(world, second, detached=True)
