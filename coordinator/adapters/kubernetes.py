"""The Kubernetes Detacher: drains the node a VM runs, as `kubectl drain` would.

orchestrator_ref format: `<cluster>/<node>`, e.g. `prod-eu/worker-7`; the cluster
names an entry of `kubernetes.clusters` in the config (in-cluster credentials or a
kubeconfig). A ref without '/' is a node of `kubernetes.default_cluster`. Node
names cannot contain '/', so the split is unambiguous.

detach: one pass of a drain, called again on every tick until it reports the node
empty: a strategic-merge PATCH cordons the node AND annotates it with the migration id
(so recovery finds it with no journal); the node's pods are listed (fieldSelector,
paginated), DaemonSet and mirror pods are left alone, pods kubectl would refuse to
drain are refused (configurable), the rest are evicted through policy/v1 Eviction
(a PodDisruptionBudget's 429 is tried again next pass). The node is drained once no
evictable pod is left on it (a terminating pod is still there; a replacement lands
elsewhere, the node being cordoned). The controller holds the one global deadline
(`drain_timeout_s`) and uncordons (reattach) on any ending: never half done.

The node must be the VM's own (its systemUUID or providerID names the VM's UUID):
the ref is tenant-writable metadata, and a typo or a lie must not drain another node.
A node already cordoned by someone else (no annotation of ours) is refused: an
operator is working on it, and we must not uncordon it afterwards. A node someone
uncordons during the drain is refused too, never cordoned again. `kubectl cordon` on
a node we hold changes nothing, so it cannot be seen: an operator who wants the node
kept cordoned after our move removes our annotation, and the reattach leaves it.

Each call is a few short requests; callers run them in a thread.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from coordinator.detach_config import KubernetesClusterConfig, KubernetesConfig
from coordinator.errors import (
    DetachError,
    DetachRefused,
    OrchestratorUnreachable,
)
from coordinator.model import Vm

log = structlog.get_logger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True, slots=True)
class NodeRef:
    cluster: str
    node: str


# A node name is a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253.
_NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


def parse_ref(ref: str, default_cluster: str) -> NodeRef:
    """`<cluster>/<node>` or `<node>` (default cluster)."""
    cluster, sep, node = ref.partition("/")
    if not sep:
        cluster, node = default_cluster, ref
    if not cluster or not _NODE_NAME.fullmatch(node):
        raise DetachRefused(
            f"bad kubernetes orchestrator_ref {ref[:300]!r}: want '<cluster>/<node>'"
        )
    return NodeRef(cluster, node)


@dataclass(frozen=True, slots=True)
class PodKey:
    namespace: str
    name: str
    uid: str


def api_client_for(cluster: KubernetesClusterConfig) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file, or from the pod's service account."""
    try:
        if cluster.kubeconfig:
            api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]  # the loaders are untyped
                config_file=cluster.kubeconfig, context=cluster.context or None
            )
            return api
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # untyped loader
        return k8s.ApiClient(configuration)
    # A kubeconfig that is not YAML, not UTF-8 or not shaped like one fails inside the
    # loader with whatever it tripped on (TypeError, KeyError, ...), never ConfigException.
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, KeyError,
            AttributeError, yaml.YAMLError) as exc:  # fmt: skip
        raise OrchestratorUnreachable(
            f"kubernetes credentials {cluster.kubeconfig or '(in-cluster)'}: not usable: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def wrap_api_errors(what: str, exc: Exception) -> DetachError:
    """Our error for a client exception: unreachable for transport, 5xx and throttling
    (429 on a read means urllib3's own Retry-After retries ran out), refused else."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        if status >= 500 or status in (0, 429):
            return OrchestratorUnreachable(f"{what}: API server answered {status}")
        return DetachRefused(f"{what}: API server answered {status} {exc.reason}")
    return OrchestratorUnreachable(f"{what}: {exc}")


_CLIENT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


def _read_unless_missing(
    what: str, read: Callable[..., Any], *args: Any, timeout_s: float
) -> Any | None:
    """`read(*args)`, or None when the object does not exist (404); other errors wrapped."""
    try:
        return read(*args, _request_timeout=timeout_s)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise wrap_api_errors(what, exc) from exc
    except _CLIENT_ERRORS as exc:
        raise wrap_api_errors(what, exc) from exc


class KubernetesDetacher:
    """Detacher for VMs that are Kubernetes nodes."""

    def __init__(
        self,
        config: KubernetesConfig,
        client_factory: Callable[[KubernetesClusterConfig], k8s.ApiClient] = api_client_for,
    ) -> None:
        self._config = config
        self._factory = client_factory
        self._clients: dict[str, k8s.CoreV1Api] = {}
        self._lock = threading.Lock()

    # -- the port ---------------------------------------------------------------------

    @property
    def detach_timeout_s(self) -> float:
        return self._config.drain_timeout_s

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        # No use for `addresses`: a node names its VM by systemUUID or providerID, read
        # at the cordon (the ref alone says nothing of whose node it is).
        try:
            cluster = parse_ref(ref, self._config.default_cluster).cluster
        except DetachRefused as exc:
            return str(exc)
        if cluster not in self._config.clusters:
            return f"kubernetes cluster {cluster[:100]!r} is not configured"
        return ""

    def detach(self, vm: Vm, migration_id: str) -> bool:
        """One `kubectl drain` pass: cordon, evict what is still running, and report
        whether the node is empty of evictable pods. Called again until it is."""
        ref = parse_ref(vm.orchestrator_ref, self._config.default_cluster)
        api = self._api(ref.cluster)
        self._cordon(api, ref.node, vm.uuid, migration_id)
        pods = [pod for pod in self._list_pods(api, ref.node) if not is_daemon_or_mirror(pod)]
        running = [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]
        self._refuse_undrainable(ref.node, running)
        blocked = [key for key in map(pod_key, running) if not self._evict(api, key)]
        names = [f"{k.namespace}/{k.name}" for k in blocked]
        log.info("kubernetes.drain_pass", vm=vm.uuid, node=ref.node, migration=migration_id,
                 pods_left=len(pods), eviction_blocked=names)  # fmt: skip
        return not pods

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        ref = parse_ref(vm.orchestrator_ref, self._config.default_cluster)
        api = self._api(ref.cluster)
        holder = self._holder(api, ref.node)
        if holder is None:
            return True  # already reattached (or never detached): idempotent
        if holder != migration_id:
            # Not ours to release, and it never was (one holder at a time): raising would
            # retry this reattach for ever. The controller closes it at its deadline.
            log.warning("kubernetes.held_by_another", vm=vm.uuid, node=ref.node,
                        migration=migration_id, holder=holder)  # fmt: skip
            return False
        self._uncordon(api, ref.node)
        log.info("kubernetes.uncordoned", vm=vm.uuid, node=ref.node, migration=migration_id)
        return True

    def detached_by(self, vm: Vm) -> str | None:
        ref = parse_ref(vm.orchestrator_ref, self._config.default_cluster)
        return self._holder(self._api(ref.cluster), ref.node)

    # -- clients ----------------------------------------------------------------------

    def _api(self, cluster: str) -> k8s.CoreV1Api:
        with self._lock:
            if cluster not in self._clients:
                settings = self._config.clusters.get(cluster)
                if settings is None:
                    raise DetachRefused(f"kubernetes cluster {cluster!r} is not configured")
                self._clients[cluster] = k8s.CoreV1Api(self._factory(settings))
            return self._clients[cluster]

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self._config.request_timeout_s, **kwargs)
        except _CLIENT_ERRORS as exc:
            raise wrap_api_errors(what, exc) from exc

    # -- node -------------------------------------------------------------------------

    def _read_node(self, api: k8s.CoreV1Api, node: str) -> Any:
        return self._call(f"read node {node}", api.read_node, node)

    def _holder(self, api: k8s.CoreV1Api, node: str) -> str | None:
        timeout_s = self._config.request_timeout_s
        obj = _read_unless_missing(f"read node {node}", api.read_node, node, timeout_s=timeout_s)
        if obj is None:
            return None
        annotations = (obj.metadata.annotations if obj.metadata else None) or {}
        holder = annotations.get(self._config.annotation)
        return str(holder) if holder else None

    def _cordon(self, api: k8s.CoreV1Api, node: str, vm_uuid: str, migration_id: str) -> None:
        obj = self._read_node(api, node)
        holder = (obj.metadata.annotations or {}).get(self._config.annotation)
        if holder and holder != migration_id:
            raise DetachRefused(f"node {node} is already detached by migration {holder}")
        if obj.spec.unschedulable and not holder:
            raise DetachRefused(f"node {node} was cordoned by someone else; leaving it alone")
        if holder == migration_id:
            if obj.spec.unschedulable:
                return  # cordoned by an earlier pass of this drain
            # Only someone else clears it (our cordon sets both at once): cordoning again
            # would undo what they did by hand. The reattach drops our annotation.
            raise DetachRefused(f"node {node} was uncordoned during the drain by someone else")
        if not node_is_vm(obj, vm_uuid):
            raise DetachRefused(
                f"node {node} is not VM {vm_uuid}: neither its systemUUID nor its providerID "
                "names it (a typo in orchestrator_ref, or another tenant's node)"
            )
        body = {
            "metadata": {"annotations": {self._config.annotation: migration_id}},
            "spec": {"unschedulable": True},
        }
        self._call(f"cordon node {node}", api.patch_node, node, body)

    def _uncordon(self, api: k8s.CoreV1Api, node: str) -> None:
        # null deletes the key (strategic merge), exactly what `kubectl uncordon` leaves.
        body = {
            "metadata": {"annotations": {self._config.annotation: None}},
            "spec": {"unschedulable": None},
        }
        self._call(f"uncordon node {node}", api.patch_node, node, body)

    # -- drain ------------------------------------------------------------------------

    def _evict(self, api: k8s.CoreV1Api, pod: PodKey) -> bool:
        """Ask for the pod's eviction; False while a PodDisruptionBudget blocks it."""
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
        )
        try:
            api.create_namespaced_pod_eviction(
                pod.name, pod.namespace, body, _request_timeout=self._config.request_timeout_s
            )
        except ApiException as exc:
            return _eviction_refused(pod, exc)
        except _CLIENT_ERRORS as exc:
            raise wrap_api_errors(f"evict {pod.namespace}/{pod.name}", exc) from exc
        return True

    def _list_pods(self, api: k8s.CoreV1Api, node: str) -> Iterator[Any]:
        token: str | None = None
        while True:
            page = self._call(
                f"list pods of {node}",
                api.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={node}",
                limit=self._config.page_size,
                _continue=token,
            )
            yield from page.items or []
            token = page.metadata._continue if page.metadata else None
            if not token:
                return

    def _refuse_undrainable(self, node: str, pods: list[Any]) -> None:
        problems = [
            f"{p.metadata.namespace}/{p.metadata.name}: {why}"
            for p in pods
            if (why := undrainable_reason(p, self._config))
        ]
        if problems:
            raise DetachRefused(f"cannot drain {node}: " + "; ".join(problems))


def node_is_vm(node: Any, vm_uuid: str) -> bool:
    """Whether the Node runs in this VM: Nova sets the SMBIOS system UUID to the
    instance UUID (the kubelet reports it as nodeInfo.systemUUID), and the OpenStack
    cloud provider sets providerID `openstack://<region>/<uuid>`. The ref naming the
    node is tenant-writable metadata, so it alone never picks a node to drain."""
    wanted = vm_uuid.lower()
    info = node.status.node_info if node.status else None
    system_uuid = str(info.system_uuid or "") if info else ""
    provider_id = str(node.spec.provider_id or "") if node.spec else ""
    return bool(wanted) and wanted in (system_uuid.lower(), provider_id.lower().rpartition("/")[2])


def is_daemon_or_mirror(pod: Any) -> bool:
    """DaemonSet pods would come straight back; mirror (static) pods cannot be evicted."""
    if MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
        return True
    return any(
        ref.kind == "DaemonSet" and ref.controller for ref in pod.metadata.owner_references or []
    )


def undrainable_reason(pod: Any, config: KubernetesConfig) -> str:
    """Why kubectl drain would refuse this pod without --force / --delete-emptydir-data."""
    if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
        return ""  # finished pods are deleted by kubectl drain without question
    controlled = any(ref.controller for ref in pod.metadata.owner_references or [])
    if not controlled and not config.allow_unmanaged_pods:
        return "no controller would recreate it"
    empty_dir = any(v.empty_dir is not None for v in pod.spec.volumes or [])
    if empty_dir and not config.allow_empty_dir:
        return "uses emptyDir (local data would be lost)"
    return ""


def pod_key(pod: Any) -> PodKey:
    return PodKey(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)


def _eviction_refused(pod: PodKey, exc: ApiException) -> bool:
    if exc.status == 404:
        return True  # gone already
    if exc.status == 429:
        return False  # a PodDisruptionBudget allows no disruption now: next pass
    raise DetachRefused(
        f"eviction of {pod.namespace}/{pod.name} failed: {exc.status} {exc.reason}: {exc.body}"
    ) from exc
