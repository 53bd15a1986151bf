"""The service's detacher table: one real adapter per orchestrator kind."""

from __future__ import annotations

from coordinator.adapters.consul import ConsulDetacher
from coordinator.adapters.kubernetes import KubernetesDetacher
from coordinator.adapters.none import NoDetacher
from coordinator.adapters.orchestrators import detachers_for
from coordinator.config import Config
from coordinator.model import Orchestrator


def test_every_orchestrator_kind_has_its_adapter() -> None:
    table = detachers_for(Config())
    assert set(table) == set(Orchestrator)
    assert isinstance(table[Orchestrator.KUBERNETES], KubernetesDetacher)
    assert isinstance(table[Orchestrator.CONSUL], ConsulDetacher)
    assert isinstance(table[Orchestrator.NONE], NoDetacher)
