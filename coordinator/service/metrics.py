"""The coordinator's Prometheus metrics, on a registry of its own (tests run many
coordinators in one process, and the default registry would make them collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def _counter(reg: CollectorRegistry, name: str, doc: str, *labels: str) -> Counter:
    return Counter(name, doc, labels, registry=reg)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        reg = self.registry
        self.reports = _counter(reg, "stealbalancer_agent_reports", "Host reports folded in")
        self.rejected = _counter(
            reg, "stealbalancer_agent_rejected", "Agent messages/streams rejected", "reason"
        )
        self.agents = Gauge("stealbalancer_agents_connected", "Live agent streams", registry=reg)
        self.migrations = _counter(
            reg, "stealbalancer_migrations", "Migrations that reached a terminal state", "state"
        )
        self.running = Gauge(
            "stealbalancer_migrations_running", "Migrations in flight", registry=reg
        )
        self.contended = Gauge("stealbalancer_vms_contended", "Contended VMs", registry=reg)
        self.plan_seconds = Histogram(
            "stealbalancer_plan_seconds", "Time to build a snapshot and plan", registry=reg
        )
        # Dashboard gauges (packaging/grafana): cluster steal, bandwidth vs budget.
        self.cluster_steal = Gauge(
            "stealbalancer_cluster_steal_ratio", "vCPU-weighted mean steal of all VMs",
            registry=reg,
        )  # fmt: skip
        self.bandwidth = Gauge(
            "stealbalancer_migration_bandwidth_mib_s",
            "Sum of the bandwidth caps of the migrations in flight", registry=reg,
        )  # fmt: skip
        self.bandwidth_budget = Gauge(
            "stealbalancer_migration_bandwidth_budget_mib_s",
            "limits.bandwidth_budget_mib_s", registry=reg,
        )  # fmt: skip
        self.inventory_errors = _counter(
            reg, "stealbalancer_inventory_errors", "Failed Nova inventory refreshes"
        )

    def rejected_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "stealbalancer_agent_rejected_total", {"reason": reason}
        )
        return value or 0.0
