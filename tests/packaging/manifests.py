"""Reading the Kubernetes manifests of packaging/kubernetes the way kustomize would.

No kustomize binary is available here, so `build` applies the overlay's patches with
the subset of strategic-merge semantics our patches use: maps merge recursively, a
null deletes a key, lists of named objects (containers, volumes, ports) merge by
`name`, other lists are replaced, and `$patch: delete` removes an object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[2] / "packaging" / "kubernetes"

Obj = dict[str, Any]


def load_documents(path: Path) -> list[Obj]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _merge_list(base: list[Any], patch: list[Any]) -> list[Any]:
    if not all(isinstance(item, dict) and "name" in item for item in [*base, *patch]):
        return patch
    merged = {item["name"]: item for item in base}
    for item in patch:
        merged[item["name"]] = merge(merged.get(item["name"], {}), item)
    return list(merged.values())


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of `patch` into `base` (the subset described above)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(base.get(key), value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        return _merge_list(base, patch)
    return patch


def build(directory: Path) -> list[Obj]:
    """The objects `kubectl apply -k directory` would create (namespace applied)."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        target = directory / resource
        objects += build(target) if target.is_dir() else load_documents(target)
    for patch_ref in kustomization.get("patches", []):
        for patch in load_documents(directory / patch_ref["path"]):
            objects = _apply_patch(objects, patch)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
    return objects


def _apply_patch(objects: list[Obj], patch: Obj) -> list[Obj]:
    matches = [obj for obj in objects if _key(obj) == _key(patch)]
    assert len(matches) == 1, f"patch {_key(patch)} matches {len(matches)} objects"
    if patch.get("$patch") == "delete":
        return [obj for obj in objects if obj is not matches[0]]
    return [merge(obj, patch) if obj is matches[0] else obj for obj in objects]


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

# apiVersion/kind -> the kubernetes client's model class name.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


def deserialize(obj: Obj) -> Any:
    """`obj` as the client's typed model (its setters validate required fields)."""
    model = MODELS[(obj["apiVersion"], obj["kind"])]
    # Exactly the path an API server's JSON response body takes through the client.
    return ApiClient().deserialize(json.dumps(obj), model, "application/json")


def round_trip(obj: Obj) -> Obj:
    """`obj` through the typed model and back: a key the model does not know is lost."""
    client = ApiClient()
    result: Obj = client.sanitize_for_serialization(deserialize(obj))  # type: ignore[no-untyped-call]  # the client is untyped
    return result
