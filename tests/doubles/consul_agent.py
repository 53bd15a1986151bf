"""A stateful Consul double: one datacenter's catalog, with one HTTP agent per node
served on 127.0.0.1, driven by tests only through the real `consul` (py-consul)
client.

Endpoints, with the real bodies and codes:
- `GET /v1/agent/self`: `Config` (its node name) and `Member` (its LAN gossip member:
  `Addr` is the address it advertises, the node's `address`, as `serf.Member` marshals)
- `PUT /v1/agent/maintenance?enable=<bool>&reason=<text>`: node maintenance, which
  (like the real agent) registers a critical `_node_maintenance` check whose Notes
  are the reason; enabling it again keeps the first reason, disabling ends it whoever
  enabled it
- `GET /v1/agent/services`, `GET /v1/agent/checks`
- `GET /v1/health/service/<svc>[?passing]`: every instance with its checks, with
  `X-Consul-Index` / `X-Consul-KnownLeader` headers and blocking queries
  (`index` + `wait`)

The health view lags the agent by `propagation_s`, as the catalog does in a real
cluster (anti-entropy). With `token` set, a request without that ACL token gets 403.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.http import Reply, Request, serving

MAINT_CHECK = "_node_maintenance"
DEFAULT_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_HEALTH = re.compile(r"^/v1/health/service/(?P<svc>[^/]+)$")


def _seconds(duration: str) -> float:
    units = {"ms": 1e-3, "s": 1.0, "m": 60.0}
    match = re.fullmatch(r"([\d.]+)(ms|s|m)", duration)
    return float(match.group(1)) * units[match.group(2)] if match else 300.0


@dataclass
class ConsulNode:
    name: str
    address: str
    services: dict[str, int]  # service name -> port
    failing: set[str] = field(default_factory=set)
    """Services whose own health check is critical (e.g. the app is down)."""
    maintenance: list[tuple[float, str | None]] = field(
        default_factory=lambda: [(float("-inf"), None)]
    )
    """History of (time, reason or None) so the lagging health view can look back.
    It starts at -inf, not 0: the view looks `propagation_s` into the past, and on a
    machine booted less than that ago `time.monotonic() - propagation_s` is negative."""

    def reason_at(self, when: float) -> str | None:
        seen = [reason for at, reason in self.maintenance if at <= when]
        return seen[-1] if seen else None


@dataclass
class ConsulCluster:
    token: str = ""
    propagation_s: float = 0.0
    # Ending maintenance answers 500 (a server without a leader) while set.
    failing_maintenance_off: bool = False
    nodes: dict[str, ConsulNode] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _index: int = 10
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def add_node(self, name: str, services: dict[str, int], address: str = "") -> None:
        """A node whose agent advertises `address` (the VM's own IP, in a test of the
        identity check); 10.0.0.<n> for the n-th node if not given."""
        with self._changed:
            address = address or f"10.0.0.{len(self.nodes) + 1}"
            self.nodes[name] = ConsulNode(name, address, dict(services))

    def in_maintenance(self, node: str) -> bool:
        with self._changed:
            return self.nodes[node].reason_at(time.monotonic()) is not None

    @contextmanager
    def serve_agent(self, node: str) -> Iterator[str]:
        """Serve the agent of `node`; yields its base URL."""
        with serving(lambda request: self.route(node, request)) as url:
            yield url

    def route(self, node: str, request: Request) -> Reply:
        with self._changed:
            self.requests.append((request.method, request.path, dict(request.query)))
        given = request.headers.get("x-consul-token") or request.query.get("token", "")
        if self.token and given != self.token:
            return Reply(403, "Permission denied")
        if request.method == "PUT" and request.path == "/v1/agent/maintenance":
            return self._maintenance(node, request)
        if request.method == "GET":
            return self._get(node, request)
        return Reply(405, f"method {request.method} not allowed")

    def _get(self, node: str, request: Request) -> Reply:
        if request.path == "/v1/agent/self":
            return Reply(200, self._agent_self(node))
        if request.path == "/v1/agent/services":
            return Reply(200, self._agent_services(node))
        if request.path == "/v1/agent/checks":
            return Reply(200, self._agent_checks(node))
        match = _HEALTH.match(request.path)
        if match:
            return self._health(match.group("svc"), request)
        return Reply(404, f"Invalid URL path: not a recognized HTTP API endpoint: {request.path}")

    def _agent_self(self, node: str) -> dict[str, Any]:
        """The parts of the real body a client reads: `Config` is the agent's identity,
        `Member` its serf LAN member (Addr a net.IP as text, Port the serf LAN port)."""
        with self._changed:
            address = self.nodes[node].address
        return {
            "Config": {"Datacenter": "dc1", "NodeName": node, "Server": False,
                       "Version": "1.18.1"},
            "Member": {"Name": node, "Addr": address, "Port": 8301,
                       "Tags": {"dc": "dc1", "role": "node", "segment": ""}, "Status": 1,
                       "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                       "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4},
        }  # fmt: skip

    def _maintenance(self, node: str, request: Request) -> Reply:
        enable = request.query.get("enable")
        if enable is None:
            return Reply(400, "Missing value for enable")
        if enable not in _TRUE | _FALSE:
            return Reply(400, f"Invalid value for enable: {enable!r}")
        reason = (request.query.get("reason") or DEFAULT_REASON) if enable in _TRUE else None
        if reason is None and self.failing_maintenance_off:
            return Reply(500, "rpc error: No cluster leader")
        with self._changed:
            entry = self.nodes[node]
            current = entry.reason_at(time.monotonic())
            # Like the agent's EnableNodeMaintenance: on a node already in maintenance an
            # enable is a no-op, the first reason stays (a second one is not recorded).
            if (current is None) != (reason is None):
                entry.maintenance.append((time.monotonic(), reason))
                self._index += 1
                self._changed.notify_all()
        return Reply(200)

    def _agent_services(self, node: str) -> dict[str, Any]:
        with self._changed:
            services = self.nodes[node].services
            return {
                name: {
                    "ID": name,
                    "Service": name,
                    "Tags": [],
                    "Port": port,
                    "Address": "",
                    "Meta": {},
                }
                for name, port in services.items()
            }

    def _checks(
        self, entry: ConsulNode, when: float, service: str | None = None
    ) -> list[dict[str, Any]]:
        """Node checks plus the checks of `service` (of every service when None)."""
        checks: list[dict[str, Any]] = [
            {
                "Node": entry.name,
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "ServiceID": "",
            }
        ]
        reason = entry.reason_at(when)
        if reason is not None:
            checks.append(
                {
                    "Node": entry.name,
                    "CheckID": MAINT_CHECK,
                    "Name": "Node Maintenance Mode",
                    "Status": "critical",
                    "Notes": reason,
                    "ServiceID": "",
                }
            )
        for name in entry.services:
            if service is None or name == service:
                checks.append(
                    {
                        "Node": entry.name,
                        "CheckID": f"service:{name}",
                        "Name": f"Service '{name}' check",
                        "Status": "critical" if name in entry.failing else "passing",
                        "Notes": "",
                        "ServiceID": name,
                        "ServiceName": name,
                    }
                )
        return checks

    def _agent_checks(self, node: str) -> dict[str, Any]:
        with self._changed:
            return {c["CheckID"]: c for c in self._checks(self.nodes[node], time.monotonic())}

    def _health(self, service: str, request: Request) -> Reply:
        with self._changed:
            if "index" in request.query and int(request.query["index"]) >= self._index:
                self._changed.wait(timeout=min(_seconds(request.query.get("wait", "5m")), 30.0))
            entries = self._health_entries(service, passing="passing" in request.query)
            headers = {
                "X-Consul-Index": str(self._index),
                "X-Consul-KnownLeader": "true",
                "X-Consul-LastContact": "0",
            }
        return Reply(200, entries, headers)

    def _health_entries(self, service: str, passing: bool) -> list[dict[str, Any]]:
        seen_at = time.monotonic() - self.propagation_s
        entries = []
        for entry in self.nodes.values():
            if service not in entry.services:
                continue
            checks = self._checks(entry, seen_at, service)
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            entries.append(
                {
                    "Node": {"Node": entry.name, "Address": entry.address, "Datacenter": "dc1"},
                    "Service": {"ID": service, "Service": service, "Port": entry.services[service]},
                    "Checks": checks,
                }
            )
        return entries
