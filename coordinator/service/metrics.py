"""The coordinator's Prometheus metrics, on a registry of its own (tests run many
coordinators in one process, and the default registry would make them collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Journaled states of a migration that is not over yet (coordinator.journal.State).
OPEN_STATES = ("PLANNED", "DETACHING", "MIGRATING", "VERIFYING", "REATTACHING")
TERMINAL_STATES = ("DONE", "FAILED", "ABORTED")
# Why a VM is refused outright (not "no target": that is a plan outcome).
UNMOVABLE_REASONS = ("unknown_orchestrator", "telemetry_from_wrong_host", "opted_out", "other")
# A VM whose steal is at least this share of its vCPU time is "in pain" (the honest
# yardstick: whatever its demand, it is losing CPU it wanted).
PAIN_STEAL = 0.10


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
        for state in TERMINAL_STATES:  # zeros, not absent, before the first one ends
            self.migrations.labels(state)
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
        # A gauge, not a counter of failed writes: the first failure ends the recording
        # for good (until a restart), so "stopped now" is what an alert needs.
        self.recording_failed = Gauge(
            "stealbalancer_report_recording_failed",
            "1 once a failed write ended the service.record_reports recording, else 0",
            registry=reg,
        )  # fmt: skip
        self._controller_metrics(reg)

    def _controller_metrics(self, reg: CollectorRegistry) -> None:
        """What the migration controller and its alerts (packaging/prometheus) watch.

        Labelled series are created up front for every known label value, so a query
        on a healthy coordinator returns zeros rather than nothing."""
        self.open_by_state = Gauge(
            "stealbalancer_migrations_open", "Open migrations by journaled state",
            ["state"], registry=reg,
        )  # fmt: skip
        for state in OPEN_STATES:
            self.open_by_state.labels(state)
        self.detached_seconds_max = Gauge(
            "stealbalancer_detached_seconds_max",
            "Longest time an open migration has kept its VM detached (0 when none)",
            registry=reg,
        )  # fmt: skip
        self.detached_overdue = Gauge(
            "stealbalancer_migrations_detached_overdue",
            "Open migrations whose VM has been detached longer than workflow.max_detached_s",
            registry=reg,
        )  # fmt: skip
        self.reattach_failures = _counter(
            reg, "stealbalancer_reattach_failures", "Reattach attempts that failed (retried)"
        )
        self.step_errors = _counter(
            reg, "stealbalancer_step_errors",
            "Migration steps that failed and were scheduled for a retry", "state",
        )  # fmt: skip
        for state in OPEN_STATES:
            self.step_errors.labels(state)
        self.parked = Gauge(
            "stealbalancer_parked", "VMs and target hosts parked (quarantined) now", ["kind"],
            registry=reg,
        )  # fmt: skip
        for kind in ("vm", "host"):
            self.parked.labels(kind)
        self.unmovable = Gauge(
            "stealbalancer_vms_unmovable", "VMs the coordinator refuses to move, by reason",
            ["reason"], registry=reg,
        )  # fmt: skip
        for reason in UNMOVABLE_REASONS:
            self.unmovable.labels(reason)
        self.contended_stuck = Gauge(
            "stealbalancer_vms_contended_unplaced",
            "Contended VMs the last plan could not move (no target, limits, cooldown...)",
            registry=reg,
        )  # fmt: skip
        self.in_pain = Gauge(
            "stealbalancer_vms_in_pain",
            "VMs whose steal is at least policy.pain_steal of their vCPU time", registry=reg,
        )  # fmt: skip
        self.journal_writable = Gauge(
            "stealbalancer_journal_writable",
            "1 while the journal answered the last tick's reads and writes, else 0", registry=reg,
        )  # fmt: skip
        self.leader = Gauge(
            "stealbalancer_leader", "1 on the replica that may act (holds the lease)",
            registry=reg,
        )  # fmt: skip
        self.paused = Gauge(
            "stealbalancer_paused", "1 while automatic migration is paused", registry=reg
        )
        self.tick_errors = _counter(
            reg, "stealbalancer_tick_errors", "Controller ticks that ended in an error"
        )

    def rejected_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "stealbalancer_agent_rejected_total", {"reason": reason}
        )
        return value or 0.0
