"""The Consul Detacher: node maintenance on the VM's own Consul agent.

orchestrator_ref format: the agent's address, `host` or `host:port` (default port
from `consul.port`), reached with `consul.scheme` (https with `ca_file` and an
optional client certificate) and the ACL token.

The agent must be the VM's own: the ref is tenant-writable metadata, and a typo or a
lie must not take another VM's services out of rotation. Before every detach pass the
agent's own `GET /v1/agent/self` must give a `Member.Addr` (the address it advertises
to its cluster) that Nova lists for the VM (`Vm.addresses`, every network, fixed and
floating); a ref whose host is an IP literal must be one of them too, and is refused
at the join when it is not, as is a VM Nova lists no address for. An agent that cannot
be asked, or advertises another address, is refused: nothing is switched on. Where
tenant networks overlap (two VMs with the same fixed IP, both reachable from us) the
address cannot tell them apart; a ref by IP literal then still must be the VM's own.

detach: `PUT /v1/agent/maintenance?enable=true&reason=stealbalancer:<migration>`,
then (on this and later calls) whether every service the agent registers has left the
passing health view (`/v1/health/service/<svc>?passing`) for this node; the controller
gives up after `verify_timeout_s` and switches maintenance off again (reattach).
The reason carries a prefix so `detached_by` never mistakes an operator's
own `consul maint` for one of ours (and we never end an operator's maintenance).
One we cannot see: `consul maint -enable` on a node already in our maintenance is a
no-op in the agent (the first reason stays), so it ends with ours. An operator who
wants the node kept out runs `-disable` then `-enable -reason ...`: the reason is then
theirs, and the reattach leaves it alone.

An unreachable agent raises OrchestratorUnreachable: the move is skipped, never
done blind. Each call is a few short requests; callers run them in a thread.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import consul
import requests
import structlog
from consul.callback import CB

from coordinator.detach_config import ConsulConfig
from coordinator.errors import DetachError, DetachRefused, OrchestratorUnreachable
from coordinator.model import Vm

log = structlog.get_logger(__name__)

MAINT_CHECK = "_node_maintenance"
REASON_PREFIX = "stealbalancer:"


# `name[:port]` (a DNS name or an IPv4 address) or `[v6][:port]`, and nothing else.
_ADDRESS = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def split_address(ref: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare v6 address; the host comes back as
    it goes in a URL (py-consul builds `scheme://host:port`), so v6 keeps brackets.
    Anything else is refused: the ref is tenant-writable metadata, and a '/', '@', '#'
    or space in it would take our ACL token to a host or path of its choosing."""
    if _is_v6(ref):
        return f"[{ref}]", default_port
    match = _ADDRESS.fullmatch(ref)
    port = int(match["port"]) if match and match["port"] else default_port
    if match is None or not 1 <= port <= 65535 or (match["v6"] and not _is_v6(match["v6"])):
        raise DetachRefused(f"bad consul orchestrator_ref {ref[:300]!r}: want 'host[:port]'")
    return (f"[{match['v6']}]" if match["v6"] else match["name"]), port


def _is_v6(text: str) -> bool:
    """A plain IPv6 address (a zone id would need escaping in the URL: refused)."""
    try:
        return "%" not in text and isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `text` names (an IPv4-mapped v6 one as its v4), None if it is none."""
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def _ips(addresses: Iterable[str]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return {ip for ip in map(_ip, addresses) if ip is not None}


def _shown(addresses: tuple[str, ...]) -> str:
    return ", ".join(addresses[:8]) + (", ..." if len(addresses) > 8 else "")


def wrap_consul_errors(what: str, exc: Exception) -> DetachError:
    if isinstance(exc, consul.ACLPermissionDenied | consul.ACLDisabled):
        return DetachRefused(f"{what}: ACL denied: {exc}")
    if isinstance(exc, consul.ConsulException) and not str(exc).startswith("5"):
        return DetachRefused(f"{what}: {exc}")
    return OrchestratorUnreachable(f"{what}: {exc}")


@dataclass(frozen=True, slots=True)
class AgentSelf:
    """Who an agent says it is (`GET /v1/agent/self`)."""

    node: str  # Config.NodeName
    addr: str  # Member.Addr: the address it advertises to its cluster ("" if none)


class _Agent:
    """One VM's agent: py-consul calls with our errors and our timeout."""

    def __init__(self, address: str, config: ConsulConfig) -> None:
        host, port = split_address(address, config.port)
        cert = (config.cert_file, config.key_file) if config.cert_file else None
        self.address = address
        self._client = consul.Consul(
            host=host,
            port=port,
            scheme=config.scheme,
            token=config.token or None,
            verify=config.ca_file or True,
            cert=cert,
            connections_timeout=config.request_timeout_s,
        )

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (consul.ConsulException, requests.RequestException, OSError) as exc:
            raise wrap_consul_errors(f"consul agent {self.address}: {what}", exc) from exc

    def whoami(self) -> AgentSelf:
        # py-consul's agent.self() sends no ACL token, and /v1/agent/self needs
        # agent:read, so the same request goes through its HTTP client with the token.
        headers = self._client.prepare_headers()
        reply = self.call(
            "agent/self", self._client.http.get, CB.json(), "/v1/agent/self", headers=headers
        )
        member = reply.get("Member") or {}
        return AgentSelf(str(reply["Config"]["NodeName"]), str(member.get("Addr") or ""))

    def node_name(self) -> str:
        return self.whoami().node

    def services(self) -> set[str]:
        registered = self.call("agent/services", self._client.agent.services)
        return {str(s["Service"]) for s in registered.values()}

    def checks(self) -> dict[str, Any]:
        checks: dict[str, Any] = self.call("agent/checks", self._client.agent.checks)
        return checks

    def maintenance_reason(self) -> str | None:
        check = self.checks().get(MAINT_CHECK)
        return None if check is None else str(check.get("Notes", ""))

    def failing_services(self) -> set[str]:
        """Services whose own checks fail on this agent: they would not come back
        into rotation with or without maintenance, so reattach does not wait for them."""
        return {
            str(c["ServiceName"])
            for c in self.checks().values()
            if c.get("ServiceName") and c.get("Status") != "passing"
        }

    def set_maintenance(self, enable: bool, reason: str = "") -> None:
        # py-consul would send enable=True; the agent's ParseBool takes "true" and "True" alike.
        self.call(
            "agent/maintenance",
            self._client.agent.maintenance,
            "true" if enable else "false",
            reason,
        )

    def passing_nodes(self, service: str) -> set[str]:
        _, entries = self.call(
            f"health/service/{service}", self._client.health.service, service, passing=True
        )
        return {str(e["Node"]["Node"]) for e in entries}


class ConsulDetacher:
    """Detacher for VMs that run a Consul agent with services in rotation."""

    def __init__(self, config: ConsulConfig) -> None:
        self._config = config

    @property
    def detach_timeout_s(self) -> float:
        return self._config.verify_timeout_s

    def ref_problem(self, ref: str, addresses: tuple[str, ...]) -> str:
        try:
            host, _ = split_address(ref, self._config.port)
        except DetachRefused as exc:
            return str(exc)
        if not _ips(addresses):
            return "Nova lists no IP address for the VM: no Consul agent can be shown to be its own"
        literal = _ip(host)
        if literal is not None and literal not in _ips(addresses):
            return (
                f"consul orchestrator_ref {ref[:300]!r} is not one of the VM's addresses "
                f"({_shown(addresses)}): it names another machine's agent"
            )
        return ""

    def detach(self, vm: Vm, migration_id: str) -> bool:
        """One pass: confirm the agent is the VM's, switch maintenance on (once), and
        report whether the passing health view has let go of the VM's services."""
        problem = self.ref_problem(vm.orchestrator_ref, vm.addresses)
        if problem:
            raise DetachRefused(problem)
        agent = _Agent(vm.orchestrator_ref, self._config)
        node = self._own_node(agent, vm)
        current = agent.maintenance_reason()
        reason = REASON_PREFIX + migration_id
        if current is not None and current != reason:
            raise DetachRefused(f"consul node {node} is already in maintenance: {current!r}")
        if current is None:
            agent.set_maintenance(True, reason)
            log.info("consul.maintenance_on", vm=vm.uuid, node=node, migration=migration_id)
        return not self._out_of_step(agent, node, in_rotation=False)

    def reattach(self, vm: Vm, migration_id: str) -> bool:
        agent = _Agent(vm.orchestrator_ref, self._config)
        node = agent.node_name()
        holder = self._holder(agent)
        if holder is not None and holder != migration_id:
            # Not ours to end, and it never was: raising would retry this reattach for
            # ever. The controller closes it at its deadline.
            log.warning("consul.held_by_another", vm=vm.uuid, node=node,
                        migration=migration_id, holder=holder)  # fmt: skip
            return False
        if holder is not None:
            agent.set_maintenance(False)
            log.info("consul.maintenance_off", vm=vm.uuid, node=node, migration=migration_id)
        return not self._out_of_step(agent, node, in_rotation=True)

    def detached_by(self, vm: Vm) -> str | None:
        return self._holder(_Agent(vm.orchestrator_ref, self._config))

    @staticmethod
    def _own_node(agent: _Agent, vm: Vm) -> str:
        """The agent's node name, once the agent proved to run in this VM: the address
        it advertises is one Nova lists for the VM (the ref alone is tenant-writable
        metadata). Checked on every pass: after a restart any pass may be the first."""
        try:
            me = agent.whoami()
        except DetachError as exc:
            raise type(exc)(f"cannot confirm it is VM {vm.uuid}'s own agent: {exc}") from exc
        advertised = _ip(me.addr)
        if advertised is None or advertised not in _ips(vm.addresses):
            raise DetachRefused(
                f"consul agent {agent.address} (node {me.node[:100]!r}) is not VM {vm.uuid}'s: "
                f"it advertises {me.addr[:60]!r}, Nova lists {_shown(vm.addresses)} for the "
                "VM (a typo in orchestrator_ref, or another VM's agent)"
            )
        return me.node

    @staticmethod
    def _holder(agent: _Agent) -> str | None:
        reason = agent.maintenance_reason()
        if reason is None or not reason.startswith(REASON_PREFIX):
            return None
        return reason.removeprefix(REASON_PREFIX)

    @staticmethod
    def _out_of_step(agent: _Agent, node: str, in_rotation: bool) -> list[str]:
        """The node's services whose passing-view membership is not yet `in_rotation`
        (a service failing its own check is not waited for on the way back)."""
        services = agent.services()
        if in_rotation:
            services -= agent.failing_services()
        return sorted(s for s in services if (node in agent.passing_nodes(s)) != in_rotation)
