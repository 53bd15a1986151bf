"""The registry of detachers: one line per orchestrator tag.

A VM's metadata names its orchestrator by tag (`stealbalancer.orchestrator`); the
service builds the registered detacher of every tag here and hands the mapping to the
controller (`Ports.detachers`). A tag with no entry makes the VM unmovable (the
inventory join refuses it), so adding an orchestrator is one adapter file plus one
line below, with the detacher contract suite run against it. Credentials are loaded
lazily, per Kubernetes cluster, on the first VM of that cluster: a coordinator with no
Kubernetes or Consul VMs never needs either configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.config import Config
from coordinator.ports import Detacher

REGISTRY: Mapping[str, Callable[[Config], Detacher]] = {
    "none": lambda config: NoDetacher(),
    "kubernetes": lambda config: KubernetesDetacher(config.kubernetes),
    "consul": lambda config: ConsulDetacher(config.consul),
}


def detachers_for(config: Config) -> dict[str, Detacher]:
    return {tag: build(config) for tag, build in REGISTRY.items()}
