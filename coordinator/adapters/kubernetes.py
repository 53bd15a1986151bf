"""The Kubernetes Detacher: drains the node a VM runs, as `kubectl drain` would.

orchestrator_ref format: `<cluster>/<node>`, e.g. `prod-eu/worker-7`; the cluster
names an entry of `kubernetes.clusters` in the config (in-cluster credentials or a
kubeconfig). A ref without '/' is a node of `kubernetes.default_cluster`. Node
names cannot contain '/', so the split is unambiguous.

detach: one strategic-merge PATCH cordons the node AND annotates it with the
migration id (so recovery finds it with no journal); then the node's pods are
listed (fieldSelector, paginated), DaemonSet and mirror pods are left alone,
pods kubectl would refuse to drain are refused (configurable), the rest are
evicted through policy/v1 Eviction and waited for until gone or replaced (new
UID), all under one global timeout. On refusal, failure or timeout the node is
uncordoned and the annotation removed before the error is raised: the move is
skipped, never half done.

A node already cordoned by someone else (no annotation of ours) is refused: an
operator is working on it, and we must not uncordon it afterwards.

Calls are blocking (the ports are); callers run them in a thread.
"""

from __future__ import annotations

import threading
import time
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
    DetachTimeout,
    OrchestratorUnreachable,
)
from coordinator.model import Vm

log = structlog.get_logger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True, slots=True)
class NodeRef:
    cluster: str
    node: str


def parse_ref(ref: str, default_cluster: str) -> NodeRef:
    """`<cluster>/<node>` or `<node>` (default cluster)."""
    cluster, sep, node = ref.partition("/")
    if not sep:
        cluster, node = default_cluster, ref
    if not cluster or not node or "/" in node:
        raise DetachRefused(f"bad kubernetes orchestrator_ref {ref!r}: want '<cluster>/<node>'")
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._factory = client_factory
        self._sleep = sleep
        self._clients: dict[str, k8s.CoreV1Api] = {}
        self._lock = threading.Lock()

    # -- the port ---------------------------------------------------------------------

    def detach(self, vm: Vm, migration_id: str) -> None:
        ref = parse_ref(vm.orchestrator_ref, self._config.default_cluster)
        api = self._api(ref.cluster)
        bound = log.bind(vm=vm.uuid, node=ref.node, migration=migration_id)
        self._cordon(api, ref.node, migration_id)
        bound.info("kubernetes.cordoned")
        try:
            self._drain(api, ref.node)
        except DetachError as exc:
            bound.warning("kubernetes.drain_failed", reason=str(exc))
            self._uncordon_after_failure(api, ref.node, migration_id)
            raise
        bound.info("kubernetes.drained")

    def reattach(self, vm: Vm, migration_id: str) -> None:
        ref = parse_ref(vm.orchestrator_ref, self._config.default_cluster)
        api = self._api(ref.cluster)
        holder = self._holder(api, ref.node)
        if holder is None:
            return  # already reattached (or never detached): idempotent
        if holder != migration_id:
            raise DetachRefused(
                f"node {ref.node} is detached by migration {holder}, not {migration_id}"
            )
        self._uncordon(api, ref.node)
        log.info("kubernetes.uncordoned", vm=vm.uuid, node=ref.node, migration=migration_id)

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

    def _cordon(self, api: k8s.CoreV1Api, node: str, migration_id: str) -> None:
        obj = self._read_node(api, node)
        holder = (obj.metadata.annotations or {}).get(self._config.annotation)
        if holder and holder != migration_id:
            raise DetachRefused(f"node {node} is already detached by migration {holder}")
        if obj.spec.unschedulable and not holder:
            raise DetachRefused(f"node {node} was cordoned by someone else; leaving it alone")
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

    def _uncordon_after_failure(self, api: k8s.CoreV1Api, node: str, migration_id: str) -> None:
        try:
            self._uncordon(api, node)
        except DetachError as exc:
            # The annotation stays, so recovery (detached_by) finds and reattaches it.
            log.error(
                "kubernetes.uncordon_failed", node=node, migration=migration_id, error=str(exc)
            )

    # -- drain ------------------------------------------------------------------------

    def _drain(self, api: k8s.CoreV1Api, node: str) -> None:
        deadline = time.monotonic() + self._config.drain_timeout_s
        pods = [pod for pod in self._list_pods(api, node) if not is_daemon_or_mirror(pod)]
        self._refuse_undrainable(node, pods)
        _Eviction(self, api, node, [pod_key(p) for p in pods], deadline).run()

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


class _Eviction:
    """One drain's evictions: retry the refused, wait for the evicted, one deadline."""

    def __init__(
        self,
        owner: KubernetesDetacher,
        api: k8s.CoreV1Api,
        node: str,
        pods: list[PodKey],
        deadline: float,
    ) -> None:
        self._owner = owner
        self._api = api
        self._node = node
        self._deadline = deadline
        self._to_evict = list(pods)
        self._evicted: list[PodKey] = []
        self._next_try = 0.0

    def run(self) -> None:
        config = self._owner._config
        while self._to_evict or self._evicted:
            now = time.monotonic()
            if now >= self._next_try and self._to_evict:
                self._to_evict = [p for p in self._to_evict if not self._evict(p)]
                self._next_try = now + config.eviction_retry_s
            self._evicted = [p for p in self._evicted if not self._gone(p)]
            if not (self._to_evict or self._evicted):
                return
            if time.monotonic() >= self._deadline:
                raise DetachTimeout(self._timeout_message())
            self._owner._sleep(min(config.poll_s, max(self._deadline - time.monotonic(), 0.0)))

    def _timeout_message(self) -> str:
        blocked = ", ".join(f"{p.namespace}/{p.name}" for p in self._to_evict)
        leaving = ", ".join(f"{p.namespace}/{p.name}" for p in self._evicted)
        return (
            f"drain of {self._node} timed out after {self._owner._config.drain_timeout_s:g}s; "
            f"eviction refused (PodDisruptionBudget): [{blocked}]; still terminating: [{leaving}]"
        )

    def _evict(self, pod: PodKey) -> bool:
        """True when done with it (evicted and now to be waited for, or already gone)."""
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
        )
        try:
            self._api.create_namespaced_pod_eviction(
                pod.name,
                pod.namespace,
                body,
                _request_timeout=self._owner._config.request_timeout_s,
            )
        except ApiException as exc:
            return self._eviction_refused(pod, exc)
        except _CLIENT_ERRORS as exc:
            raise wrap_api_errors(f"evict {pod.namespace}/{pod.name}", exc) from exc
        self._evicted.append(pod)
        return True

    def _eviction_refused(self, pod: PodKey, exc: ApiException) -> bool:
        if exc.status == 404:
            return True
        if exc.status == 429:
            log.info(
                "kubernetes.eviction_blocked", node=self._node, pod=f"{pod.namespace}/{pod.name}"
            )
            return False
        raise DetachRefused(
            f"eviction of {pod.namespace}/{pod.name} failed: {exc.status} {exc.reason}: {exc.body}"
        ) from exc

    def _gone(self, pod: PodKey) -> bool:
        current = _read_unless_missing(
            f"read pod {pod.namespace}/{pod.name}",
            self._api.read_namespaced_pod,
            pod.name,
            pod.namespace,
            timeout_s=self._owner._config.request_timeout_s,
        )
        return current is None or current.metadata is None or current.metadata.uid != pod.uid
