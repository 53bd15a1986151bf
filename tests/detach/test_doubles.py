"""The doubles themselves, driven through the real clients: what the adapters do not
exercise but a future caller might (merge-patch, json-patch refusal, 429 on reads,
blocking queries), plus properties of the reference parsers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import consul
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from coordinator.adapters.consul import split_address
from coordinator.adapters.kubernetes import NodeRef, parse_ref
from tests.detach.conftest import CONSUL_TOKEN
from tests.doubles.consul_agent import ConsulCluster, ConsulNode
from tests.doubles.kube_apiserver import KubeApiServer

NAME = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True)


def core(kubeconfig: Path) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]  # untyped loader


def test_merge_patch_and_json_patch(kube: KubeApiServer, kubeconfig: Path) -> None:
    api = core(kubeconfig)
    api.patch_node(
        "worker-1",
        {"metadata": {"labels": {"a": "1"}}},
        _content_type="application/merge-patch+json",
    )
    assert kube.node("worker-1")["metadata"]["labels"] == {"a": "1"}
    api.patch_node("worker-1", {"metadata": {"labels": {"a": None}}})
    assert kube.node("worker-1")["metadata"]["labels"] == {}
    with pytest.raises(ApiException) as refused:
        api.patch_node("worker-1", [{"op": "add", "path": "/spec/unschedulable", "value": True}])
    assert refused.value.status == 415
    assert "Status" in (refused.value.body or "")


def test_reads_answered_429_with_retry_after_are_retried_by_urllib3(
    kube: KubeApiServer, kubeconfig: Path
) -> None:
    """The client retries such a GET by itself: the caller only sees the delay."""
    kube.throttle_reads = 2
    started = time.monotonic()
    node = core(kubeconfig).read_node("worker-1")
    assert node.metadata is not None and node.metadata.name == "worker-1"
    assert time.monotonic() - started >= 1.5
    assert kube.throttle_reads == 0
    assert [m for m, p, _ in kube.requests].count("GET") == 3


def test_consul_blocking_query_returns_on_change(
    consul_cluster: ConsulCluster, consul_address: str
) -> None:
    host, _, port = consul_address.partition(":")
    client = consul.Consul(host=host, port=int(port), token=CONSUL_TOKEN)
    index, _ = client.health.service("web", passing=True)
    flip = threading.Timer(0.3, lambda: client.agent.maintenance("true", "x"))
    flip.start()
    started = time.monotonic()
    new_index, _ = client.health.service("web", passing=True, index=index, wait="5s")
    flip.join()
    assert int(new_index) > int(index)
    assert 0.2 < time.monotonic() - started < 4.0


@given(cluster=NAME, node=NAME)
def test_parse_ref_round_trip(cluster: str, node: str) -> None:
    assert parse_ref(f"{cluster}/{node}", "dflt") == NodeRef(cluster, node)
    assert parse_ref(node, "dflt") == NodeRef("dflt", node)


@given(host=NAME, port=st.integers(1, 65535))
def test_split_address_round_trip(host: str, port: int) -> None:
    assert split_address(f"{host}:{port}", 8500) == (host, port)
    assert split_address(host, 8500) == (host, 8500)


def test_consul_view_looking_back_before_its_first_entry_sees_no_maintenance() -> None:
    """On a machine booted less than `propagation_s` ago the lagging view asks about a
    negative monotonic time: that is before any maintenance, not an IndexError."""
    node = ConsulNode("svc-vm", "10.0.0.1", {"web": 8080})
    node.maintenance.append((5.0, "stealbalancer:m"))
    assert node.reason_at(-3600.0) is None
    assert node.reason_at(4.9) is None
    assert node.reason_at(5.0) == "stealbalancer:m"


def test_consul_maintenance_enabled_twice_keeps_the_first_reason(
    consul_cluster: ConsulCluster, consul_address: str
) -> None:
    """The agent's EnableNodeMaintenance returns early while its check exists: the
    double replaced the reason, so a test saw an operator's `consul maint -enable` on
    top of ours where the real agent leaves no trace of it."""
    host, _, port = consul_address.partition(":")
    client = consul.Consul(host=host, port=int(port), token=CONSUL_TOKEN)
    client.agent.maintenance("true", "stealbalancer:mig")
    client.agent.maintenance("true", "disk swap")
    assert client.agent.checks()["_node_maintenance"]["Notes"] == "stealbalancer:mig"
    client.agent.maintenance("false")
    assert "_node_maintenance" not in client.agent.checks()
