"""The real Detacher for each orchestrator kind, built from the configuration.

The service wires these into the workflow (`Ports.detachers`). Credentials are
loaded lazily, per Kubernetes cluster, on the first VM of that cluster: a
coordinator with no Kubernetes or Consul VMs never needs either configured.
"""

from __future__ import annotations

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.config import Config
from coordinator.model import Orchestrator
from coordinator.ports import Detacher


def detachers_for(config: Config) -> dict[Orchestrator, Detacher]:
    return {
        Orchestrator.NONE: NoDetacher(),
        Orchestrator.KUBERNETES: KubernetesDetacher(config.kubernetes),
        Orchestrator.CONSUL: ConsulDetacher(config.consul),
    }
