"""The Kubernetes manifests: valid objects, a valid coordinator config, the security
properties the README promises and exactly the RBAC rules it lists.

Validation goes through the official `kubernetes` client models rather than a JSON
schema validator: schema validators (kubeconform, kubeval) fetch the OpenAPI schemas
from the internet at run time, while the client models ship in the package we
already depend on. Their setters reject missing required fields; unknown keys are
caught by a round trip (deserialize, serialize, compare): a misspelt key is dropped
by the model, so the round trip differs from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.config import Config, ConfigError, load_config
from coordinator.service.main import check_exposure
from tests.packaging.manifests import ROOT, Obj, build, deserialize, merge, round_trip

BASE = ROOT / "base"
HA = ROOT / "ha"
OVERLAYS = [pytest.param(BASE, id="base"), pytest.param(HA, id="ha")]


def _one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def _container(objects: list[Obj]) -> Obj:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


def _normalise(value: Any) -> Any:
    """YAML ints and the client's serialised ints compare equal; drop empty maps."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


@pytest.mark.parametrize("directory", OVERLAYS)
def test_every_object_is_a_valid_kubernetes_model(directory: Path) -> None:
    objects = build(directory)
    assert objects
    for obj in objects:
        assert _normalise(round_trip(obj)) == _normalise(obj), obj["metadata"]["name"]


def test_round_trip_catches_a_misspelt_key() -> None:
    deployment = _one(build(BASE), "Deployment")
    broken = merge(deployment, {"spec": {"template": {"spec": {"serviceAcountName": "x"}}}})
    assert _normalise(round_trip(broken)) != _normalise(broken)


def test_model_rejects_a_container_without_image_name() -> None:
    deployment = _one(build(BASE), "Deployment")
    del deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ValueError, match="name"):
        deserialize(deployment)


@pytest.mark.parametrize("directory", OVERLAYS)
def test_namespaced_objects_live_in_our_namespace(directory: Path) -> None:
    for obj in build(directory):
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == "stealbalancer", obj["metadata"]["name"]


def test_configmap_is_a_valid_coordinator_config(tmp_path: Path) -> None:
    configmap = _one(build(BASE), "ConfigMap", "stealbalancer-coordinator")
    path = tmp_path / "coordinator.yaml"
    path.write_text(configmap["data"]["coordinator.yaml"], encoding="utf-8")
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.service.start_paused, "a fresh install must not move anything unasked"
    assert config.service.journal_path.startswith("/var/lib/stealbalancer/")
    assert config.service.tls is not None and config.service.tls.ca_file, "agents need mTLS"


@pytest.mark.parametrize("directory", OVERLAYS)
def test_leader_election_uses_the_lease_rbac_allows(directory: Path, tmp_path: Path) -> None:
    objects = build(directory)
    path = tmp_path / "coordinator.yaml"
    path.write_text(_one(objects, "ConfigMap")["data"]["coordinator.yaml"], encoding="utf-8")
    config = load_config(path)
    assert config.leader.enabled
    assert config.leader.cluster in config.kubernetes.clusters
    in_cluster = config.kubernetes.clusters[config.leader.cluster]
    assert in_cluster.kubeconfig == "", "the Lease lives in our cluster: in-cluster credentials"
    role = _one(objects, "Role")
    assert role["metadata"]["namespace"] == config.leader.namespace


def test_admin_token_comes_from_a_secret_not_the_configmap(tmp_path: Path) -> None:
    objects = build(BASE)
    path = tmp_path / "coordinator.yaml"
    path.write_text(_one(objects, "ConfigMap")["data"]["coordinator.yaml"], encoding="utf-8")
    assert load_config(path).service.admin_token == ""
    env = {e["name"]: e for e in _container(objects)["env"]}
    ref = env["STEALBALANCER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "stealbalancer-admin", "key": "token"}


def test_the_admin_port_on_every_pod_address_is_served_only_with_the_secret_token(
    tmp_path: Path,
) -> None:
    """admin_listen is 0.0.0.0: `serve` refuses that without a token, and the pod gets one
    from the (required) stealbalancer-admin Secret."""
    objects = build(BASE)
    path = tmp_path / "coordinator.yaml"
    path.write_text(_one(objects, "ConfigMap")["data"]["coordinator.yaml"], encoding="utf-8")
    config = load_config(path)
    with pytest.raises(ConfigError, match=r"service\.admin_listen"):
        check_exposure(config)
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["STEALBALANCER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"].get("optional") is not True
    service = config.service.model_copy(update={"admin_token": "from-the-secret"})
    check_exposure(config.model_copy(update={"service": service}))


def test_configmap_typo_would_be_caught(tmp_path: Path) -> None:
    configmap = _one(build(BASE), "ConfigMap", "stealbalancer-coordinator")
    path = tmp_path / "coordinator.yaml"
    path.write_text(
        configmap["data"]["coordinator.yaml"].replace("max_per_az", "max_per_zone"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"limits\.max_per_zone: unknown key"):
        load_config(path)


@pytest.mark.parametrize("directory", OVERLAYS)
def test_pod_runs_non_root_with_a_read_only_root(directory: Path) -> None:
    objects = build(directory)
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


@pytest.mark.parametrize("directory", OVERLAYS)
def test_resources_and_probes_on_the_service_ports(directory: Path) -> None:
    container = _container(build(directory))
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) >= {"memory"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"agent-grpc": 50051, "admin-grpc": 50052, "metrics": 9180}
    # Ready = leading: the Services route every agent stream and admin call to the leader.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_configured_listeners_match_the_container_ports(tmp_path: Path) -> None:
    objects = build(BASE)
    path = tmp_path / "c.yaml"
    path.write_text(_one(objects, "ConfigMap")["data"]["coordinator.yaml"], encoding="utf-8")
    service = load_config(path).service
    ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert service.agent_listen == f"0.0.0.0:{ports['agent-grpc']}"
    assert service.admin_listen == f"0.0.0.0:{ports['admin-grpc']}"
    assert service.metrics_listen == f"0.0.0.0:{ports['metrics']}"


def _mounts(objects: list[Obj]) -> dict[str, Obj]:
    container = _container(objects)
    volumes = _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    by_name = {v["name"]: v for v in volumes}
    return {m["mountPath"]: by_name[m["name"]] for m in container["volumeMounts"]}


@pytest.mark.parametrize(
    ("directory", "journal_source"),
    [
        pytest.param(BASE, "persistentVolumeClaim", id="base-pvc"),
        pytest.param(HA, "emptyDir", id="ha-emptydir"),
    ],
)
def test_secrets_and_journal_are_mounted(directory: Path, journal_source: str) -> None:
    objects = build(directory)
    mounts = _mounts(objects)
    assert mounts["/etc/openstack"]["secret"]["secretName"] == "stealbalancer-clouds"
    assert mounts["/etc/stealbalancer/tls"]["secret"]["secretName"] == "stealbalancer-tls"
    assert set(mounts["/var/lib/stealbalancer"]) == {"name", journal_source}
    assert "emptyDir" in mounts["/tmp"]
    has_pvc = any(o["kind"] == "PersistentVolumeClaim" for o in objects)
    assert has_pvc == (journal_source == "persistentVolumeClaim")


def test_ha_overlay_runs_two_spread_replicas() -> None:
    deployment = _one(build(HA), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    assert _one(build(BASE), "Deployment")["spec"]["replicas"] == 1
    # Only the leader is ever Ready: a rollout that waited for Ready new pods before
    # stopping the old leader would never finish.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == "100%"


def _config_of(
    objects: list[Obj], tmp_path: Path, name: str = "stealbalancer-coordinator"
) -> Config:
    path = tmp_path / f"{name}.yaml"
    path.write_text(_one(objects, "ConfigMap", name)["data"]["coordinator.yaml"], encoding="utf-8")
    return load_config(path)


def test_ha_replicas_share_a_journal_database_with_the_password_from_a_secret(
    tmp_path: Path,
) -> None:
    objects = build(HA)
    ha, base = _config_of(objects, tmp_path), _config_of(build(BASE), tmp_path)
    assert ha.service.journal_url.startswith("mysql+pymysql://")
    # Nothing else differs from the single-replica configuration.
    assert (
        ha.model_copy(update={"service": ha.service.model_copy(update={"journal_url": ""})}) == base
    )
    env = {e["name"]: e for e in _container(objects)["env"]}
    ref = env["STEALBALANCER_JOURNAL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "stealbalancer-journal", "key": "password"}


def test_services_reach_the_named_ports() -> None:
    objects = build(BASE)
    agents = _one(objects, "Service", "stealbalancer-agents")["spec"]
    admin = _one(objects, "Service", "stealbalancer-admin")["spec"]
    assert [p["targetPort"] for p in agents["ports"]] == ["agent-grpc"]
    assert {p["targetPort"] for p in admin["ports"]} == {"admin-grpc", "metrics"}
    labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for spec in (agents, admin):
        assert spec["selector"].items() <= labels.items()
    assert admin["type"] == "ClusterIP", "the admin API is not exposed outside the cluster"


def _rules(obj: Obj) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in obj["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("directory", OVERLAYS)
def test_rbac_is_exactly_least_privilege(directory: Path) -> None:
    objects = build(directory)
    roles = [o for o in objects if o["kind"] in {"ClusterRole", "Role"}]
    cluster = _one(objects, "ClusterRole")
    namespaced = _one(objects, "Role")
    assert len(roles) == 2
    assert _rules(cluster) == {
        ("", "nodes", "get"),
        ("", "nodes", "patch"),
        ("", "pods", "list"),
        ("", "pods", "get"),
        ("", "pods/eviction", "create"),
    }
    assert _rules(namespaced) == {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
    assert all("resourceNames" not in rule or rule["resourceNames"] for rule in cluster["rules"])


@pytest.mark.parametrize("directory", OVERLAYS)
def test_bindings_grant_only_our_service_account(directory: Path) -> None:
    objects = build(directory)
    account = _one(objects, "ServiceAccount")["metadata"]["name"]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = _one(objects, kind)
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == _one(objects, role_kind)["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "stealbalancer"}
        ]


@pytest.mark.parametrize(
    ("base", "patch", "expected"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": None}, {"a": 1}, id="null-deletes"),
        pytest.param({"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"x": 1, "y": 2}}, id="deep"),
        pytest.param(
            {"l": [{"name": "a", "v": 1}, {"name": "b", "v": 1}]},
            {"l": [{"name": "b", "v": 2}]},
            {"l": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]},
            id="named-list-merges",
        ),
        pytest.param({"l": [1, 2]}, {"l": [3]}, {"l": [3]}, id="plain-list-replaced"),
    ],
)
def test_strategic_merge_subset(base: Obj, patch: Obj, expected: Obj) -> None:
    assert merge(base, patch) == expected
