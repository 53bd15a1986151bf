"""Configuration of the orchestrator adapters (Kubernetes, Consul) and of leader
election. Kept apart from coordinator.config so that module stays free of the
orchestrators' vocabulary; coordinator.config.Config embeds these sections.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class KubernetesClusterConfig(_Section):
    """How to reach one Kubernetes cluster."""

    kubeconfig: str = ""
    """Path of a kubeconfig file; empty = in-cluster config (service account)."""
    context: str = ""
    """kubeconfig context; empty = the file's current context."""


class KubernetesConfig(_Section):
    """Draining the Kubernetes node a VM runs (orchestrator_ref `<cluster>/<node>`)."""

    clusters: dict[str, KubernetesClusterConfig] = {}
    """Cluster name -> credentials. The name is the part of orchestrator_ref before
    the first '/'; a ref without '/' names a node of `default_cluster`."""
    default_cluster: str = "default"
    """The cluster of a bare `<node>` orchestrator_ref."""
    drain_timeout_s: float = Field(600.0, gt=0)
    """One global timeout for cordon + evictions + pods gone; then uncordon and skip."""
    eviction_retry_s: float = Field(5.0, gt=0)
    """An eviction refused with 429 (a PodDisruptionBudget) is retried this often."""
    poll_s: float = Field(2.0, gt=0)
    """How often evicted pods are checked for being gone (404) or replaced (new UID)."""
    request_timeout_s: float = Field(10.0, gt=0)
    """Each API call; a call that takes longer counts as the API being unreachable."""
    page_size: int = Field(500, ge=1)
    """Pods listed per page (limit/continue)."""
    allow_unmanaged_pods: bool = False
    """Like `kubectl drain --force`: evict pods no controller will recreate."""
    allow_empty_dir: bool = False
    """Like `kubectl drain --delete-emptydir-data`: evict pods whose emptyDir data is lost."""
    annotation: str = "stealbalancer.io/detached-by-migration"
    """Node annotation holding the id of the migration that detached it."""


class ConsulConfig(_Section):
    """Node maintenance on the VM's own Consul agent (orchestrator_ref = agent address)."""

    scheme: str = Field("http", pattern="^https?$")
    """http or https to the VM's Consul agent."""
    port: int = Field(8500, ge=1, le=65535)
    """Used when orchestrator_ref has no port."""
    token: str = ""
    """ACL token (needs node:write for maintenance, service:read for the health view)."""
    ca_file: str = ""
    """CA bundle to verify the agent's certificate (https); empty = system CAs."""
    cert_file: str = ""
    """Client certificate when agents require verify_incoming (with key_file)."""
    key_file: str = ""
    """Client key when agents require verify_incoming (with cert_file)."""
    verify_timeout_s: float = Field(60.0, gt=0)
    """How long the health view may take to drop (or take back) the node's services."""
    poll_s: float = Field(1.0, gt=0)
    """How often the health view is checked while waiting."""
    request_timeout_s: float = Field(10.0, gt=0)
    """Each call to the agent; a slower one counts as the agent being unreachable."""


class LeaderConfig(_Section):
    """Leader election over a coordination.k8s.io/v1 Lease (off = single replica)."""

    enabled: bool = False
    """Run as one of several replicas: only the Lease holder plans and acts."""
    cluster: str = "default"
    """Which entry of kubernetes.clusters holds the Lease."""
    namespace: str = "stealbalancer"
    """Namespace of the Lease (RBAC: leases get/create/update there)."""
    lease_name: str = "stealbalancer-coordinator"
    """Name of the Lease object."""
    identity: str = ""
    """This replica's holder identity; empty = hostname + pid."""
    lease_duration_s: float = Field(15.0, gt=0)
    """A follower takes over once the lease has not changed for this long."""
    renew_deadline_s: float = Field(10.0, gt=0)
    """The leader stops acting when it could not renew for this long; must be
    below lease_duration_s so it stops before anyone else may start."""
    retry_period_s: float = Field(2.0, gt=0)
    """How often the Lease is renewed, or watched by a follower."""

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> LeaderConfig:
        if self.renew_deadline_s >= self.lease_duration_s:
            raise ValueError("renew_deadline_s must be below lease_duration_s")
        return self
