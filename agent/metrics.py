"""The agent's Prometheus metrics, in a registry of its own (tests make many agents)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class AgentMetrics:
    """Collection duration, domains seen, send failures, buffer drops, connection state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.collection_seconds = Histogram(
            "stealbalancer_agent_collection_seconds",
            "Wall time of one collection cycle (all sources).",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=self.registry,
        )
        self.collection_errors = Counter(
            "stealbalancer_agent_collection_errors_total",
            "Collection cycles that failed (libvirt or /proc unreadable).",
            registry=self.registry,
        )
        self.domains_seen = Gauge(
            "stealbalancer_agent_domains",
            "Running domains seen in the last collection cycle.",
            registry=self.registry,
        )
        self.send_failures = Counter(
            "stealbalancer_agent_send_failures_total",
            "Stream sessions that ended in an error (connect, register or send).",
            registry=self.registry,
        )
        self.buffer_drops = Counter(
            "stealbalancer_agent_buffer_drops_total",
            "Reports dropped, oldest first, because the send buffer was full.",
            registry=self.registry,
        )
        self.buffered = Gauge(
            "stealbalancer_agent_buffered_reports",
            "Reports waiting in the send buffer.",
            registry=self.registry,
        )
        self.connected = Gauge(
            "stealbalancer_agent_connected",
            "1 while registered with the coordinator.",
            registry=self.registry,
        )
        self.commands = Counter(
            "stealbalancer_agent_commands_total",
            "Commands executed, by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Expose /metrics on a local port (daemon thread; lives as long as the process).
        Returns the bound port (port 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)
