"""Fixtures: the loopback API doubles, and real adapters pointed at them through
real credentials files (a kubeconfig with a bearer token, a Consul ACL token)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.detach_config import ConsulConfig, KubernetesClusterConfig, KubernetesConfig
from coordinator.model import Orchestrator, Vm
from coordinator.ports import Detacher
from tests.doubles.consul_agent import ConsulCluster
from tests.doubles.kube_apiserver import KubeApiServer

KUBE_TOKEN = "kube-test-token"
CONSUL_TOKEN = "consul-acl-token"


def write_kubeconfig(path: Path, url: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": url}}],
        "users": [{"name": "coordinator", "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "coordinator"}}],
        "current-context": "lab",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def kube_config(kubeconfig: Path, **overrides: object) -> KubernetesConfig:
    settings: dict[str, object] = {
        "clusters": {"lab": KubernetesClusterConfig(kubeconfig=str(kubeconfig))},
        "drain_timeout_s": 2.0,
        "eviction_retry_s": 0.1,
        "poll_s": 0.05,
        "request_timeout_s": 2.0,
        "page_size": 2,
    }
    settings.update(overrides)
    return KubernetesConfig.model_validate(settings)


def node_vm(node: str, cluster: str = "lab") -> Vm:
    return Vm(
        uuid=f"vm-{node}",
        name=node,
        host="hv1",
        vcpus=4,
        ram_mib=8192,
        orchestrator=Orchestrator.KUBERNETES,
        orchestrator_ref=f"{cluster}/{node}",
    )


def consul_vm(address: str, ip: str = "10.0.0.1") -> Vm:
    """A VM whose orchestrator_ref is `address` and that Nova gives the address `ip`
    (the double's first node advertises 10.0.0.1)."""
    return Vm(
        uuid=f"vm-{address}",
        name="svc-vm",
        host="hv1",
        vcpus=2,
        ram_mib=4096,
        orchestrator=Orchestrator.CONSUL,
        orchestrator_ref=address,
        addresses=(ip,),
    )


def agent_ref(url: str) -> str:
    """The orchestrator_ref of the agent double served at `url`: by name, since a ref
    by IP literal must be one of the VM's own addresses, and loopback never is."""
    return url.removeprefix("http://").replace("127.0.0.1", "localhost", 1)


@pytest.fixture
def kube() -> KubeApiServer:
    server = KubeApiServer(tokens={KUBE_TOKEN}, grace_s=0.1)
    server.add_node("worker-1", system_uuid=node_vm("worker-1").uuid)
    server.add_node("worker-2", system_uuid=node_vm("worker-2").uuid)
    return server


@pytest.fixture
def kube_url(kube: KubeApiServer) -> Iterator[str]:
    with kube.serve() as url:
        yield url


@pytest.fixture
def kubeconfig(tmp_path: Path, kube_url: str) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", kube_url, KUBE_TOKEN)


@pytest.fixture
def kube_detacher(kubeconfig: Path) -> KubernetesDetacher:
    return KubernetesDetacher(kube_config(kubeconfig))


@pytest.fixture
def consul_cluster() -> ConsulCluster:
    cluster = ConsulCluster(token=CONSUL_TOKEN, propagation_s=0.2)
    cluster.add_node("svc-vm", {"web": 8080, "api": 9090})
    cluster.add_node("peer-vm", {"web": 8080})
    return cluster


@pytest.fixture
def consul_address(consul_cluster: ConsulCluster) -> Iterator[str]:
    with consul_cluster.serve_agent("svc-vm") as url:
        yield agent_ref(url)


def consul_config(**overrides: object) -> ConsulConfig:
    settings: dict[str, object] = {
        "token": CONSUL_TOKEN,
        "verify_timeout_s": 2.0,
        "poll_s": 0.05,
        "request_timeout_s": 2.0,
    }
    settings.update(overrides)
    return ConsulConfig.model_validate(settings)


@pytest.fixture
def consul_detacher() -> ConsulDetacher:
    return ConsulDetacher(consul_config())


def until_detached(detacher: Detacher, vm: Vm, migration_id: str, timeout_s: float = 10.0) -> bool:
    """Call `detach` pass by pass, as the controller's ticks do, until it reports the VM
    out of rotation (True) or `timeout_s` passes (False: the controller would give up
    and reattach)."""
    deadline = time.monotonic() + timeout_s
    while not detacher.detach(vm, migration_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def until_reattached(
    detacher: Detacher, vm: Vm, migration_id: str, timeout_s: float = 10.0
) -> bool:
    """`reattach` pass by pass until the VM is back in rotation (True) or time is up."""
    deadline = time.monotonic() + timeout_s
    while not detacher.reattach(vm, migration_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
