"""A stateful Kubernetes API server double, served on 127.0.0.1.

It follows the real API's paths, bodies and status codes for exactly what the
coordinator uses, so tests drive it only through the real `kubernetes` client:

- nodes: GET, PATCH (strategic-merge and merge-patch; null deletes a key)
- pods: list across namespaces with `fieldSelector=spec.nodeName=<n>` and
  `limit`/`continue` pagination, GET, DELETE
- pods/eviction (policy/v1): 201 and the pod terminates after a grace period;
  429 when a PodDisruptionBudget allows no disruption; 500 when several PDBs
  match (the real eviction subresource refuses that case); 404 when gone
- leases (coordination.k8s.io/v1): GET, POST (409 AlreadyExists), PUT with a
  resourceVersion check (409 Conflict)

Errors are `Status` objects as the real server sends them. A pod named in
`recreate` comes back under the same name with a new UID on another node once
evicted, like a StatefulSet controller would do. Bearer tokens, when set, are
required on every request (401 otherwise).
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.http import Reply, Request, serving

_NODE = re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)$")
_PODS = re.compile(r"^/api/v1/pods$")
_POD = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$")
_EVICT = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/eviction$")
_LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases$")
_LEASE = re.compile(
    r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/leases/(?P<name>[^/]+)$"
)

_PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")


def status(code: int, reason: str, message: str, **details: Any) -> Reply:
    """A metav1.Status error body, as every real API error carries."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return Reply(code, body)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge: maps merge recursively, null deletes. Strategic merge is the
    same for the maps the coordinator patches (it differs only on keyed lists)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


def _node_info(system_uuid: str) -> dict[str, str]:
    """Every field the kubelet fills in (the client's model requires them all)."""
    return {
        "machineID": "0f3a9c1e5b7d4e2f8a6c0b1d3e5f7a9c",
        "systemUUID": system_uuid,
        "bootID": "2b1f0c6e-4d8a-4e3b-9f7c-5a2d1e0b8c6f",
        "kernelVersion": "6.1.0-18-amd64",
        "osImage": "Debian GNU/Linux 12 (bookworm)",
        "containerRuntimeVersion": "containerd://1.7.13",
        "kubeletVersion": "v1.30.2",
        "kubeProxyVersion": "v1.30.2",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


@dataclass(slots=True)
class Pdb:
    """A PodDisruptionBudget reduced to what eviction checks."""

    namespace: str
    match_labels: dict[str, str]
    disruptions_allowed: int

    def covers(self, pod: dict[str, Any]) -> bool:
        labels = pod["metadata"].get("labels") or {}
        return pod["metadata"]["namespace"] == self.namespace and all(
            labels.get(k) == v for k, v in self.match_labels.items()
        )


@dataclass
class KubeApiServer:
    tokens: set[str] = field(default_factory=set)
    """Bearer tokens accepted; empty = no authentication. Dropping one from the set
    cuts that client off (401), which is how tests partition a replica."""
    grace_s: float = 0.1
    """How long an evicted pod stays Terminating before it is gone."""
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pdbs: list[Pdb] = field(default_factory=list)
    recreate: set[tuple[str, str]] = field(default_factory=set)
    throttle_reads: int = 0
    """The next this-many GETs are answered 429 with `Retry-After` (API priority
    and fairness throttling)."""
    retry_after_s: int = 1
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, content type) of every request, for tests to assert on."""
    _gone_at: dict[tuple[str, str], float] = field(default_factory=dict)
    _version: int = 100
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- state set-up (tests) ---------------------------------------------------------

    def add_node(
        self, name: str, unschedulable: bool = False, system_uuid: str = "", provider_id: str = ""
    ) -> None:
        """A node as its kubelet registers it (or replace one). `system_uuid` is what
        the kubelet reads from SMBIOS, which Nova sets to the instance UUID;
        `provider_id` is what a cloud provider sets (`openstack:///<uuid>`)."""
        spec: dict[str, Any] = {"unschedulable": True} if unschedulable else {}
        if provider_id:
            spec["providerID"] = provider_id
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": spec,
            "status": {"nodeInfo": _node_info(system_uuid)},
        }
        with self._lock:
            self.nodes[name] = self._stamp(node)

    def add_pod(
        self,
        name: str,
        node: str,
        namespace: str = "default",
        owner_kind: str | None = "ReplicaSet",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        empty_dir: bool = False,
    ) -> str:
        """Add a running pod; returns its UID."""
        owners = []
        if owner_kind is not None:
            owners = [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner_kind,
                    "name": f"{name}-owner",
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                }
            ]
        volumes = [{"name": "scratch", "emptyDir": {}}] if empty_dir else []
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": labels or {},
                "annotations": annotations or {},
                "ownerReferences": owners,
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "main", "image": "app"}],
                "volumes": volumes,
            },
            "status": {"phase": "Running"},
        }
        with self._lock:
            self.pods[(namespace, name)] = self._stamp(pod)
            return str(pod["metadata"]["uid"])

    def node(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.nodes[name]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            self._reap()
            return self.pods.get((namespace, name))

    def pods_on(self, node: str) -> list[str]:
        with self._lock:
            self._reap()
            return sorted(
                p["metadata"]["name"] for p in self.pods.values() if p["spec"]["nodeName"] == node
            )

    # -- the server -------------------------------------------------------------------

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serving(self.route) as url:
            yield url

    def route(self, request: Request) -> Reply:
        with self._lock:
            content_type = request.headers.get("content-type", "").split(";")[0]
            self.requests.append((request.method, request.path, content_type))
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if self.tokens and given not in self.tokens:
                return status(401, "Unauthorized", "Unauthorized")
            if request.method == "GET" and self.throttle_reads > 0:
                self.throttle_reads -= 1
                reply = status(429, "TooManyRequests", "too many requests, please try again later")
                reply.headers["Retry-After"] = str(self.retry_after_s)
                return reply
            self._reap()
            return self._dispatch(request)

    def _dispatch(self, request: Request) -> Reply:
        table = (
            (_EVICT, "POST", self._evict),
            (_NODE, "GET", self._get_node),
            (_NODE, "PATCH", self._patch_node),
            (_PODS, "GET", self._list_pods),
            (_POD, "GET", self._get_pod),
            (_POD, "DELETE", self._delete_pod),
            (_LEASES, "POST", self._create_lease),
            (_LEASE, "GET", self._get_lease),
            (_LEASE, "PUT", self._replace_lease),
        )
        for pattern, method, handler in table:
            match = pattern.match(request.path)
            if match and request.method == method:
                return handler(request, **match.groupdict())
        return status(
            404, "NotFound", f"the server could not find the requested resource ({request.path})"
        )

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return obj

    # -- nodes ------------------------------------------------------------------------

    def _get_node(self, request: Request, name: str) -> Reply:
        if name not in self.nodes:
            return status(404, "NotFound", f'nodes "{name}" not found', name=name, kind="nodes")
        return Reply(200, self.nodes[name])

    def _patch_node(self, request: Request, name: str) -> Reply:
        content_type = request.headers.get("content-type", "").split(";")[0]
        if content_type not in _PATCH_TYPES:
            return status(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        if name not in self.nodes:
            return status(404, "NotFound", f'nodes "{name}" not found', name=name, kind="nodes")
        self.nodes[name] = self._stamp(merge_patch(self.nodes[name], request.json()))
        return Reply(200, self.nodes[name])

    # -- pods -------------------------------------------------------------------------

    def _list_pods(self, request: Request) -> Reply:
        selector = request.query.get("fieldSelector", "")
        items = sorted(
            self.pods.values(), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])
        )
        if selector:
            key, _, value = selector.partition("=")
            if key != "spec.nodeName":
                return status(400, "BadRequest", f'field label not supported: "{key}"')
            items = [p for p in items if p["spec"]["nodeName"] == value]
        start = (
            int(base64.b64decode(request.query["continue"])) if request.query.get("continue") else 0
        )
        limit = int(request.query.get("limit") or 0) or len(items)
        page = items[start : start + limit]
        more = start + limit < len(items)
        token = base64.b64encode(str(start + limit).encode()).decode() if more else None
        metadata: dict[str, Any] = {"resourceVersion": str(self._version)}
        if token:
            metadata["continue"] = token
        return Reply(
            200, {"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": page}
        )

    def _get_pod(self, request: Request, ns: str, name: str) -> Reply:
        pod = self.pods.get((ns, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        return Reply(200, pod)

    def _delete_pod(self, request: Request, ns: str, name: str) -> Reply:
        pod = self.pods.get((ns, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        self._terminate(ns, name)
        return Reply(200, pod)

    def _evict(self, request: Request, ns: str, name: str) -> Reply:
        body = request.json() or {}
        if body.get("kind") != "Eviction" or body.get("apiVersion") != "policy/v1":
            return status(400, "BadRequest", "expected a policy/v1 Eviction body")
        pod = self.pods.get((ns, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        if "deletionTimestamp" in pod["metadata"]:
            return Reply(
                201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
            )
        covering = [b for b in self.pdbs if b.covers(pod)]
        if len(covering) > 1:
            return status(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, "
                "which the eviction subresource does not support.",
            )
        if covering and covering[0].disruptions_allowed <= 0:
            return status(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                causes=[
                    {
                        "reason": "DisruptionBudget",
                        "message": "The disruption budget needs 1 healthy pods",
                    }
                ],
            )
        if covering:
            covering[0].disruptions_allowed -= 1
        self._terminate(ns, name)
        return Reply(201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201})

    def _terminate(self, ns: str, name: str) -> None:
        pod = self.pods[(ns, name)]
        pod["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._stamp(pod)
        self._gone_at[(ns, name)] = time.monotonic() + self.grace_s

    def _reap(self) -> None:
        """Terminating pods whose grace period is over are gone (or recreated)."""
        now = time.monotonic()
        for key, at in list(self._gone_at.items()):
            if at > now:
                continue
            del self._gone_at[key]
            old = self.pods.pop(key)
            if key in self.recreate:
                meta = old["metadata"]
                self.add_pod(
                    key[1],
                    node=f"{old['spec']['nodeName']}-elsewhere",
                    namespace=key[0],
                    owner_kind=meta["ownerReferences"][0]["kind"]
                    if meta["ownerReferences"]
                    else None,
                    labels=meta.get("labels"),
                )

    # -- leases -----------------------------------------------------------------------

    def _get_lease(self, request: Request, ns: str, name: str) -> Reply:
        lease = self.leases.get((ns, name))
        if lease is None:
            return status(
                404, "NotFound", f'leases.coordination.k8s.io "{name}" not found', name=name
            )
        return Reply(200, lease)

    def _create_lease(self, request: Request, ns: str) -> Reply:
        lease = request.json()
        name = lease["metadata"]["name"]
        if (ns, name) in self.leases:
            return status(
                409,
                "AlreadyExists",
                f'leases.coordination.k8s.io "{name}" already exists',
                name=name,
            )
        lease["metadata"]["namespace"] = ns
        self.leases[(ns, name)] = self._stamp(lease)
        return Reply(201, lease)

    def _replace_lease(self, request: Request, ns: str, name: str) -> Reply:
        lease = request.json()
        current = self.leases.get((ns, name))
        if current is None:
            return status(
                404, "NotFound", f'leases.coordination.k8s.io "{name}" not found', name=name
            )
        if lease["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": '
                "the object has been modified; "
                "please apply your changes to the latest version and try again",
                name=name,
            )
        lease["metadata"]["namespace"] = ns
        self.leases[(ns, name)] = self._stamp(lease)
        return Reply(200, lease)
