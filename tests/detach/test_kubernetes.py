"""KubernetesDetacher against the API server double, through the real client."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from coordinator.adapters.kubernetes import KubernetesDetacher, NodeRef, parse_ref
from coordinator.errors import DetachRefused, OrchestratorUnreachable
from tests.detach.conftest import kube_config, node_vm, until_detached, write_kubeconfig
from tests.doubles.kube_apiserver import KubeApiServer, Pdb

ANNOTATION = "stealbalancer.io/detached-by-migration"


def evictions(kube: KubeApiServer) -> list[str]:
    return [path.split("/")[-2] for method, path, _ in kube.requests if path.endswith("/eviction")]


def assert_schedulable(kube: KubeApiServer, node: str) -> None:
    obj = kube.node(node)
    assert "unschedulable" not in obj["spec"]
    assert ANNOTATION not in obj["metadata"].get("annotations", {})


def test_clean_drain_then_uncordon(kube: KubeApiServer, kube_detacher: KubernetesDetacher) -> None:
    for name in ("web-1", "web-2", "web-3"):
        kube.add_pod(name, "worker-1", labels={"app": "web"})
    kube.add_pod("elsewhere", "worker-2")
    vm = node_vm("worker-1")

    assert kube_detacher.detach(vm, "mig-1") is False  # evicted, not gone yet: next pass
    assert until_detached(kube_detacher, vm, "mig-1")

    node = kube.node("worker-1")
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"][ANNOTATION] == "mig-1"
    assert kube.pods_on("worker-1") == []
    assert kube.pods_on("worker-2") == ["elsewhere"]
    assert kube_detacher.detached_by(vm) == "mig-1"
    patches = [ct for method, path, ct in kube.requests if method == "PATCH"]
    assert patches == ["application/strategic-merge-patch+json"]
    first_pass = [p for m, p, _ in kube.requests if p == "/api/v1/pods"][:2]
    assert len(first_pass) == 2, "3 pods with page_size 2 take two pages (limit/continue)"
    assert len(evictions(kube)) == 3, "each pod is evicted once, not once per pass"

    kube_detacher.reattach(vm, "mig-1")

    assert_schedulable(kube, "worker-1")
    assert kube_detacher.detached_by(vm) is None


def test_pdb_blocks_every_pass_then_the_give_up_uncordons(
    kube: KubeApiServer, kubeconfig: Path
) -> None:
    kube.add_pod("db-0", "worker-1", labels={"app": "db"})
    kube.pdbs.append(Pdb("default", {"app": "db"}, disruptions_allowed=0))
    detacher = KubernetesDetacher(kube_config(kubeconfig, drain_timeout_s=0.6))
    vm = node_vm("worker-1")

    assert not until_detached(detacher, vm, "mig-pdb", timeout_s=0.6)
    assert detacher.detached_by(vm) == "mig-pdb"  # cordoned and marked while it waits
    assert detacher.reattach(vm, "mig-pdb")  # what the controller does when it gives up

    assert_schedulable(kube, "worker-1")
    assert kube.pods_on("worker-1") == ["db-0"]
    assert detacher.detached_by(vm) is None
    assert len(evictions(kube)) >= 2, "a 429 is asked again on the next pass"


def test_pdb_allowing_one_disruption(kube: KubeApiServer, kubeconfig: Path) -> None:
    kube.add_pod("db-0", "worker-1", labels={"app": "db"})
    kube.add_pod("db-1", "worker-1", labels={"app": "db"})
    kube.pdbs.append(Pdb("default", {"app": "db"}, disruptions_allowed=1))
    detacher = KubernetesDetacher(kube_config(kubeconfig, drain_timeout_s=0.4))
    vm = node_vm("worker-1")

    assert not until_detached(detacher, vm, "mig-a", timeout_s=0.4)
    detacher.reattach(vm, "mig-a")

    assert kube.pods_on("worker-1") == ["db-1"], "exactly one disruption was allowed"
    assert_schedulable(kube, "worker-1")


def test_daemonset_and_mirror_pods_are_left_alone(
    kube: KubeApiServer, kube_detacher: KubernetesDetacher
) -> None:
    kube.add_pod("node-exporter-x", "worker-1", owner_kind="DaemonSet")
    kube.add_pod(
        "kube-proxy-worker-1",
        "worker-1",
        owner_kind=None,
        annotations={"kubernetes.io/config.mirror": "abc"},
    )
    kube.add_pod("app-1", "worker-1")

    assert until_detached(kube_detacher, node_vm("worker-1"), "mig-ds")

    assert kube.pods_on("worker-1") == ["kube-proxy-worker-1", "node-exporter-x"]
    assert evictions(kube) == ["app-1"]


def test_pod_recreated_under_the_same_name(
    kube: KubeApiServer, kube_detacher: KubernetesDetacher
) -> None:
    old_uid = kube.add_pod("kafka-0", "worker-1", owner_kind="StatefulSet")
    kube.recreate.add(("default", "kafka-0"))

    assert until_detached(kube_detacher, node_vm("worker-1"), "mig-sts")

    new = kube.pod("default", "kafka-0")
    assert new is not None, "the controller recreated it"
    assert new["metadata"]["uid"] != old_uid
    assert new["spec"]["nodeName"] != "worker-1"
    assert kube.pods_on("worker-1") == []


@pytest.mark.parametrize(
    ("pod_kwargs", "overrides", "refused"),
    [
        pytest.param({"owner_kind": None}, {}, "no controller", id="bare-pod-refused"),
        pytest.param(
            {"owner_kind": None}, {"allow_unmanaged_pods": True}, "", id="bare-pod-forced"
        ),
        pytest.param({"empty_dir": True}, {}, "emptyDir", id="emptydir-refused"),
        pytest.param({"empty_dir": True}, {"allow_empty_dir": True}, "", id="emptydir-allowed"),
    ],
)
def test_undrainable_pods_like_kubectl(
    kube: KubeApiServer,
    kubeconfig: Path,
    pod_kwargs: dict[str, object],
    overrides: dict[str, object],
    refused: str,
) -> None:
    kube.add_pod("p", "worker-1", **pod_kwargs)  # type: ignore[arg-type]  # table of kwargs
    detacher = KubernetesDetacher(kube_config(kubeconfig, **overrides))
    vm = node_vm("worker-1")
    if refused:
        with pytest.raises(DetachRefused, match=refused):
            detacher.detach(vm, "mig")
        assert detacher.reattach(vm, "mig")  # the controller puts it back
        assert_schedulable(kube, "worker-1")
        assert kube.pods_on("worker-1") == ["p"]
        assert evictions(kube) == [], "refused before evicting anything"
    else:
        assert until_detached(detacher, vm, "mig")
        assert kube.pods_on("worker-1") == []


def test_several_pdbs_fail_the_pod(kube: KubeApiServer, kube_detacher: KubernetesDetacher) -> None:
    kube.add_pod("x", "worker-1", labels={"app": "x", "tier": "a"})
    kube.pdbs += [Pdb("default", {"app": "x"}, 1), Pdb("default", {"tier": "a"}, 1)]

    with pytest.raises(DetachRefused, match="500"):
        kube_detacher.detach(node_vm("worker-1"), "mig")
    kube_detacher.reattach(node_vm("worker-1"), "mig")

    assert_schedulable(kube, "worker-1")


def test_node_cordoned_by_an_operator_is_not_touched(
    kube: KubeApiServer, kube_detacher: KubernetesDetacher
) -> None:
    kube.add_node("worker-3", unschedulable=True)
    vm = node_vm("worker-3")

    with pytest.raises(DetachRefused, match="someone else"):
        kube_detacher.detach(vm, "mig")
    kube_detacher.reattach(vm, "mig")

    assert kube.node("worker-3")["spec"]["unschedulable"] is True
    assert not [m for m, p, _ in kube.requests if m == "PATCH"]


def test_detach_and_reattach_are_idempotent(
    kube: KubeApiServer, kube_detacher: KubernetesDetacher
) -> None:
    kube.add_pod("a", "worker-1")
    vm = node_vm("worker-1")
    assert until_detached(kube_detacher, vm, "mig")
    assert kube_detacher.detach(vm, "mig")
    with pytest.raises(DetachRefused, match="already detached by migration mig"):
        kube_detacher.detach(vm, "other-mig")
    assert kube_detacher.reattach(vm, "other-mig") is False  # not its hold to release
    assert kube_detacher.detached_by(vm) == "mig"
    kube_detacher.reattach(vm, "mig")
    kube_detacher.reattach(vm, "mig")
    assert_schedulable(kube, "worker-1")


def test_unreachable_api_server(tmp_path: Path) -> None:
    server = KubeApiServer()
    with server.serve() as url:
        pass  # the port is closed again: nothing listens there now
    detacher = KubernetesDetacher(kube_config(write_kubeconfig(tmp_path / "kc", url, "t")))

    with pytest.raises(OrchestratorUnreachable):
        detacher.detach(node_vm("worker-1"), "mig")


def test_throttled_api_server_is_unreachable_not_a_refusal(
    kube: KubeApiServer, kube_detacher: KubernetesDetacher
) -> None:
    """urllib3 retries a throttled GET three times by itself; then it is ours to map."""
    kube.throttle_reads, kube.retry_after_s = 100, 0

    with pytest.raises(OrchestratorUnreachable, match="429"):
        kube_detacher.detach(node_vm("worker-1"), "mig")

    assert [m for m, _, _ in kube.requests] == ["GET"] * 4
    assert_schedulable(kube, "worker-1")


def test_wrong_credentials_are_refused(kube: KubeApiServer, kube_url: str, tmp_path: Path) -> None:
    detacher = KubernetesDetacher(kube_config(write_kubeconfig(tmp_path / "kc", kube_url, "wrong")))

    with pytest.raises(DetachRefused, match="401"):
        detacher.detach(node_vm("worker-1"), "mig")


def test_unknown_cluster_and_node(kube_detacher: KubernetesDetacher) -> None:
    with pytest.raises(DetachRefused, match="not configured"):
        kube_detacher.detach(node_vm("worker-1", cluster="other"), "mig")
    with pytest.raises(DetachRefused, match="404"):
        kube_detacher.detach(node_vm("no-such-node"), "mig")
    assert kube_detacher.detached_by(node_vm("no-such-node")) is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param("prod/worker-7", NodeRef("prod", "worker-7"), id="cluster-and-node"),
        pytest.param("worker-7", NodeRef("default", "worker-7"), id="node-only"),
        pytest.param("prod/", None, id="no-node"),
        pytest.param("/worker", None, id="no-cluster"),
        pytest.param("a/b/c", None, id="slash-in-node"),
    ],
)
def test_parse_ref(ref: str, expected: NodeRef | None) -> None:
    if expected is None:
        with pytest.raises(DetachRefused):
            parse_ref(ref, "default")
    else:
        assert parse_ref(ref, "default") == expected


def test_node_uncordoned_by_an_operator_during_the_drain_is_not_cordoned_again(
    kube: KubeApiServer, kubeconfig: Path, kube_detacher: KubernetesDetacher
) -> None:
    """The annotation stays when `kubectl uncordon` clears spec.unschedulable: the next
    pass re-cordoned the node, undoing what the operator had just done by hand."""
    kube.add_pod("db-0", "worker-1", labels={"app": "db"})
    kube.pdbs.append(Pdb("default", {"app": "db"}, disruptions_allowed=0))
    vm = node_vm("worker-1")
    assert kube_detacher.detach(vm, "mig") is False  # the PDB holds the drain
    operator = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]  # untyped loader
    operator.patch_node("worker-1", {"spec": {"unschedulable": None}})  # kubectl uncordon

    with pytest.raises(DetachRefused, match="uncordoned during the drain"):
        kube_detacher.detach(vm, "mig")
    assert kube_detacher.reattach(vm, "mig")  # the controller's ending

    assert_schedulable(kube, "worker-1")
    patches = [m for m, p, _ in kube.requests if m == "PATCH"]
    assert len(patches) == 3, "our cordon, the operator's uncordon, our release: no re-cordon"


@pytest.mark.parametrize(
    ("identity", "drained"),
    [
        pytest.param({"system_uuid": "vm-worker-7"}, False, id="another-vms-node"),
        pytest.param({}, False, id="no-identity-at-all"),
        pytest.param({"system_uuid": "VM-WORKER-9"}, True, id="system-uuid-upper-case"),
        pytest.param({"provider_id": "openstack:///vm-worker-9"}, True, id="provider-id"),
        pytest.param({"provider_id": "openstack://RegionOne/vm-worker-9"}, True,
                     id="provider-id-with-region"),
    ],
)  # fmt: skip
def test_only_the_vms_own_node_is_drained(
    kube: KubeApiServer,
    kube_detacher: KubernetesDetacher,
    identity: dict[str, str],
    drained: bool,
) -> None:
    """orchestrator_ref is tenant-writable: a typo ('worker-7' for 'worker-9') or a lie
    named a node that exists, and that other VM's node was cordoned and drained."""
    kube.add_node("worker-9", **identity)  # type: ignore[arg-type]  # table of kwargs
    kube.add_pod("app", "worker-9")
    vm = node_vm("worker-9")

    if drained:
        assert until_detached(kube_detacher, vm, "mig")
        assert kube_detacher.reattach(vm, "mig")
        return
    with pytest.raises(DetachRefused, match="is not VM vm-worker-9"):
        kube_detacher.detach(vm, "mig")
    assert kube_detacher.reattach(vm, "mig")
    assert_schedulable(kube, "worker-9")
    assert kube.pods_on("worker-9") == ["app"]
    assert not [m for m, _, _ in kube.requests if m in ("PATCH", "POST")]


def test_an_operator_keeps_the_node_cordoned_by_removing_our_annotation(
    kube: KubeApiServer, kubeconfig: Path, kube_detacher: KubernetesDetacher
) -> None:
    """`kubectl cordon` on a node we hold is a no-op; dropping our annotation is how an
    operator says "keep it cordoned after your move"."""
    vm = node_vm("worker-1")
    assert until_detached(kube_detacher, vm, "mig")
    operator = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]  # untyped loader
    operator.patch_node("worker-1", {"metadata": {"annotations": {ANNOTATION: None}}})

    assert kube_detacher.reattach(vm, "mig")

    assert kube.node("worker-1")["spec"]["unschedulable"] is True
