"""The per-AZ overlay: one HA coordinator per AZ group, disjoint in everything it owns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coordinator.config import Config, load_config
from coordinator.leader import lease_name
from tests.packaging.az_groups import NAME, as_group
from tests.packaging.manifests import ROOT, Obj, build, load_documents, round_trip
from tests.packaging.test_kubernetes import _normalise

PER_AZ = ROOT / "per-az"
GROUPS = {"": "az1", "-az2": "az2"}  # name suffix -> the AZ it owns


def _of(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _configs(objects: list[Obj], tmp_path: Path) -> dict[str, Config]:
    configs = {}
    for suffix in GROUPS:
        path = tmp_path / f"group{suffix}.yaml"
        data = _of(objects, "ConfigMap", NAME + suffix)["data"]["coordinator.yaml"]
        path.write_text(data, encoding="utf-8")
        configs[suffix] = load_config(path)
    return configs


def test_every_object_is_a_valid_kubernetes_model_in_our_namespace() -> None:
    objects = build(PER_AZ)
    assert sum(o["kind"] == "Deployment" for o in objects) == len(GROUPS)
    for obj in objects:
        assert _normalise(round_trip(obj)) == _normalise(obj), obj["metadata"]["name"]
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == "stealbalancer"


def test_each_group_owns_its_azs_its_journal_and_its_lease(tmp_path: Path) -> None:
    configs = _configs(build(PER_AZ), tmp_path)
    assert {s: c.service.azs for s, c in configs.items()} == {s: [az] for s, az in GROUPS.items()}
    journals = {c.service.journal_url for c in configs.values()}
    assert len(journals) == len(GROUPS), "a journal belongs to one AZ group"
    leases = {lease_name(c) for c in configs.values()}
    assert len(leases) == len(GROUPS) and NAME not in leases
    for config in configs.values():
        assert config.leader.enabled


def test_each_groups_services_reach_only_its_own_pods() -> None:
    objects = build(PER_AZ)
    for suffix in GROUPS:
        pods = _of(objects, "Deployment", NAME + suffix)["spec"]["template"]["metadata"]["labels"]
        for service in ("stealbalancer-agents", "stealbalancer-admin"):
            selector = _of(objects, "Service", service + suffix)["spec"]["selector"]
            assert selector.items() <= pods.items()
            for other in set(GROUPS) - {suffix}:
                others = _of(objects, "Deployment", NAME + other)["spec"]["template"]
                assert not selector.items() <= others["metadata"]["labels"].items()


@pytest.mark.parametrize("kind", ["Deployment", "Service"])
def test_the_second_group_is_the_first_renamed(kind: str) -> None:
    """az2/ is generated from the ha overlay; this keeps the two from drifting apart."""
    ha = [o for o in build(ROOT / "ha") if o["kind"] == kind]
    checked_in = [o for o in build(PER_AZ / "az2") if o["kind"] == kind]
    assert checked_in == [as_group(o, "-az2") for o in ha]


def test_the_overlay_files_are_plain_kustomize() -> None:
    kustomization = load_documents(PER_AZ / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../ha", "az2"]
    assert yaml.safe_load((PER_AZ / "az2" / "kustomization.yaml").read_text())["resources"]
