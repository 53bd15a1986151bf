"""An orchestrator_ref is tenant-writable metadata: one its detacher could never act on
is refused at the join, before a move that would reattach it for ever."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from coordinator.adapters.consul import ConsulDetacher, split_address
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.config import Config
from coordinator.controller import Controller, Ports
from coordinator.detach_config import KubernetesClusterConfig, KubernetesConfig
from coordinator.errors import DetachRefused
from coordinator.journal import MigrationRecord, State
from coordinator.model import Bookkeeping
from coordinator.ports import Detacher, HypervisorInfo, ServerInfo
from coordinator.service.inventory import Inventory, join, ref_checker
from tests.detach.conftest import CONSUL_TOKEN, agent_ref, consul_config, kube_config
from tests.doubles.consul_agent import ConsulCluster
from tests.doubles.kube_apiserver import KubeApiServer, merge_patch
from tests.service.world import World

ANNOTATION = "stealbalancer.io/detached-by-migration"


def detachers() -> dict[str, Detacher]:
    kube = KubernetesConfig(clusters={"prod-eu": KubernetesClusterConfig(kubeconfig="/nowhere")})
    return {
        "none": NoDetacher(),
        "kubernetes": KubernetesDetacher(kube),
        "consul": ConsulDetacher(consul_config()),
    }


def refusal(tag: str, ref: str, addresses: tuple[str, ...] = ("10.0.0.7",)) -> str:
    server = ServerInfo(uuid="vm", name="x", host="h", az="az", status="ACTIVE",
                        task_state=None, vcpus=1, ram_mib=1, disk_gib=0.0,
                        metadata={"stealbalancer.orchestrator": tag,
                                  "stealbalancer.orchestrator_ref": ref},
                        addresses=addresses)  # fmt: skip
    inventory = Inventory((HypervisorInfo("h", "az", 8, 8192, True, True),), (server,))
    snap = join(0.0, inventory, {}, Config().inventory, Bookkeeping(),
                ref_problem=ref_checker(detachers()))  # fmt: skip
    return snap.vms["vm"].refusal


@pytest.mark.parametrize(
    ("tag", "ref", "refused"),
    [
        pytest.param("kubernetes", "prod-eu/worker-7", "", id="k8s-ok"),
        pytest.param("kubernetes", "prodeu/worker-7", "'prodeu' is not configured",
                     id="k8s-cluster-typo"),
        pytest.param("kubernetes", "worker-7", "'default' is not configured",
                     id="k8s-default-cluster-unset"),
        pytest.param("kubernetes", "", "bad kubernetes orchestrator_ref", id="k8s-empty"),
        pytest.param("kubernetes", "prod-eu/Worker 7", "bad kubernetes", id="k8s-not-a-name"),
        pytest.param("consul", "10.0.0.7:8500", "", id="consul-ok"),
        pytest.param("consul", "", "bad consul orchestrator_ref", id="consul-empty"),
        pytest.param("consul", "10.0.0.7@evil.example", "bad consul", id="consul-userinfo"),
        pytest.param("consul", "evil.example/x", "bad consul", id="consul-path"),
        pytest.param("consul", "10.0.0.7:99999", "bad consul", id="consul-port"),
        pytest.param("consul", "10.0.0.8:8500", "is not one of the VM's addresses",
                     id="consul-another-vms-address"),
        pytest.param("consul", "[fd00::7]:8500", "is not one of the VM's addresses",
                     id="consul-another-v6-address"),
        pytest.param("consul", "vm7.example:8500", "", id="consul-name-checked-at-the-agent"),
        pytest.param("none", "anything at all", "", id="none-ignores-it"),
    ],
)  # fmt: skip
def test_join_refuses_a_ref_its_detacher_could_never_act_on(
    tag: str, ref: str, refused: str
) -> None:
    got = refusal(tag, ref)
    assert (refused in got) if refused else got == ""


@pytest.mark.parametrize(
    "ref", ["10.0.0.7@evil.example", "evil.example/v1", "evil.example#", "h:²", "[zz]:1", ""]
)
def test_split_address_refuses_what_would_redirect_the_token(ref: str) -> None:
    """py-consul builds `scheme://host:port/...`: a '@' or '/' in the host would send
    the ACL token to another host or path; '²' passes str.isdigit but not int()."""
    with pytest.raises(DetachRefused):
        split_address(ref, 8500)


@pytest.mark.parametrize(
    ("ref", "addresses", "refused"),
    [
        pytest.param("10.0.0.7", ("192.0.2.1", "10.0.0.7"), "", id="floating-and-fixed"),
        pytest.param("[fd00::7]:8500", ("fd00:0:0::7",), "", id="v6-spelt-otherwise"),
        pytest.param("vm7.example", (), "Nova lists no IP address", id="no-address-known"),
        pytest.param("10.0.0.7", ("not-an-ip",), "Nova lists no IP address", id="no-ip-known"),
    ],
)  # fmt: skip
def test_join_holds_a_consul_ref_to_the_vms_own_addresses(
    ref: str, addresses: tuple[str, ...], refused: str
) -> None:
    """A ref by IP literal must be one of the VM's addresses, and a VM with none cannot
    have its agent confirmed: both are refused before any move, with no network call."""
    got = refusal("consul", ref, addresses)
    assert (refused in got) if refused else got == ""


def test_a_typo_in_the_cluster_is_never_moved_nor_left_open(tmp_path: Path) -> None:
    """The detach refused, the move ended through REATTACHING, and the reattach of a
    cluster that is not configured failed for ever: the migration stayed open, holding
    its bandwidth grant, however long the controller ran."""
    world = World(tmp_path / "journal.sqlite")
    world.boot("vm1", "host-a")
    meta = {"stealbalancer.orchestrator": "kubernetes",
            "stealbalancer.orchestrator_ref": "prodeu/worker-7"}  # fmt: skip
    world.compute.servers["vm1"] = replace(world.compute.servers["vm1"], metadata=meta)
    table = detachers()
    world.ref_problem = ref_checker(table)
    controller = Controller(Ports(world.compute, world.agents, table), world.journal,
                            world.config, world.snapshot)  # fmt: skip
    for _ in range(60):
        controller.tick(world.clock.now())
        world.sleep(60.0)

    assert world.journal.open_migrations() == []
    assert world.journal.history() == []
    assert "'prodeu' is not configured" in controller.snapshot(world.clock.now()).vms["vm1"].refusal


def the_one_move(world: World, table: dict[str, Detacher], ticks: int) -> MigrationRecord:
    """Plan once, follow for `ticks` ticks 30 s apart, and return the one migration,
    which must have ended by then."""
    controller = Controller(Ports(world.compute, world.agents, table), world.journal,
                            world.config, world.snapshot)  # fmt: skip
    controller.tick(world.clock.now())
    for _ in range(ticks):
        world.sleep(30.0)
        controller.tick(world.clock.now(), plan=False)
    assert world.journal.open_migrations() == []
    (record,) = world.journal.history()
    return record


def test_a_node_held_by_a_migration_the_journal_lost_ends_the_move_once(
    tmp_path: Path, kube: KubeApiServer, kubeconfig: Path
) -> None:
    """A node still annotated by a migration this journal does not know (a journal
    restored or replaced): the detach is refused, and the reattach raised "detached by
    another migration" on every try, so the move stayed REATTACHING for ever."""
    world = World(tmp_path / "journal.sqlite")
    world.boot("vm1", "host-a")
    meta = {"stealbalancer.orchestrator": "kubernetes",
            "stealbalancer.orchestrator_ref": "lab/worker-9"}  # fmt: skip
    world.compute.servers["vm1"] = replace(world.compute.servers["vm1"], metadata=meta)
    kube.add_node("worker-9", system_uuid="vm1")
    held = {"metadata": {"annotations": {ANNOTATION: "lost-mig"}}, "spec": {"unschedulable": True}}
    kube.nodes["worker-9"] = merge_patch(kube.nodes["worker-9"], held)
    kubernetes = KubernetesDetacher(kube_config(kubeconfig))
    record = the_one_move(world, {"none": NoDetacher(), "kubernetes": kubernetes}, ticks=60)

    assert record.state is State.ABORTED
    assert "lost-mig" in record.outcome
    node = kube.node("worker-9")
    assert node["spec"]["unschedulable"] is True, "not ours to uncordon"
    assert node["metadata"]["annotations"][ANNOTATION] == "lost-mig"


def test_a_ref_to_another_vms_consul_agent_ends_the_move_before_it_starts(
    tmp_path: Path,
) -> None:
    """vm1's ref names the agent of another VM (its address 10.0.0.2 is not vm1's):
    the detach is refused, the move ends ABORTED without asking Nova, and the other
    node is never put in maintenance."""
    cluster = ConsulCluster(token=CONSUL_TOKEN)
    cluster.add_node("other-vm", {"web": 8080}, address="10.0.0.2")
    world = World(tmp_path / "journal.sqlite")
    world.boot("vm1", "host-a")
    with cluster.serve_agent("other-vm") as url:
        meta = {"stealbalancer.orchestrator": "consul",
                "stealbalancer.orchestrator_ref": agent_ref(url)}  # fmt: skip
        world.compute.servers["vm1"] = replace(
            world.compute.servers["vm1"], metadata=meta, addresses=("10.0.0.1",)
        )
        table: dict[str, Detacher] = {"none": NoDetacher(),
                                      "consul": ConsulDetacher(consul_config())}  # fmt: skip
        world.ref_problem = ref_checker(table)
        record = the_one_move(world, table, ticks=10)

    assert record.state is State.ABORTED
    assert "is not VM vm1's: it advertises '10.0.0.2'" in record.outcome
    assert world.compute.live_migrate_calls == []
    assert not cluster.in_maintenance("other-vm")
    assert [p for m, p, _ in cluster.requests if m == "PUT"] == []
