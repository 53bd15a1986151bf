"""The real Compute port: Nova through openstacksdk.

Credentials come from clouds.yaml / OS_CLOUD (`NovaCompute.connect(cloud)`), so the
coordinator holds no secrets of its own. Every SDK or keystoneauth error is wrapped
in coordinator.errors, by HTTP status where Nova gave one. Calls block: the service
runs them in a thread.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode

import openstack
from keystoneauth1 import exceptions as ks_exceptions
from openstack import exceptions as sdk_exceptions

from coordinator.errors import (
    ComputeError,
    ComputeForbidden,
    ComputeUnavailable,
    NoValidHost,
    ServerNotFound,
    TaskStateConflict,
)
from coordinator.model import GroupPolicy, ServerGroup
from coordinator.ports import HypervisorInfo, MigrationInfo, ServerInfo

# Hypervisor vcpus/memory_mb left the API in microversion 2.88 (placement holds them
# since); 2.87 is the newest that still reports them.
_HYPERVISOR_MICROVERSION = "2.87"
# 2.64: a group has one `policy` string (the `policies` list is gone).
_SERVER_GROUP_MICROVERSION = "2.64"
# Nova caps any page at its `[api] max_limit` (default 1000), whatever we ask for.
_PAGE_LIMIT = 1000
_DEFAULT_AZ = "nova"

_T = TypeVar("_T")

_BY_STATUS: Mapping[int, type[ComputeError]] = {
    400: NoValidHost,
    403: ComputeForbidden,
    404: ServerNotFound,
    409: TaskStateConflict,
}


def _error_for(exc: Exception) -> ComputeError:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "details", None) or exc)
    if isinstance(status, int) and status in _BY_STATUS:
        return _BY_STATUS[status](f"Nova {status}: {message}")
    if isinstance(exc, sdk_exceptions.ResourceNotFound):
        return ServerNotFound(f"Nova 404: {message}")
    if isinstance(status, int) and status < 500:
        return ComputeError(f"Nova {status}: {message}")
    return ComputeUnavailable(f"Nova unavailable: {message}")


@contextmanager
def _wrapped() -> Iterator[None]:
    try:
        yield
    except (sdk_exceptions.SDKException, ks_exceptions.ClientException) as exc:
        raise _error_for(exc) from exc


def _call(fn: Callable[[], _T]) -> _T:
    with _wrapped():
        return fn()


class NovaCompute:
    """Compute over an openstacksdk connection (admin credentials needed for
    hypervisors, os-migrations and live migration to a named host)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @staticmethod
    def connect(cloud: str | None = None, timeout_s: float = 30.0, **overrides: Any) -> NovaCompute:
        """Connect using clouds.yaml entry `cloud` (or OS_CLOUD / OS_* variables).

        `timeout_s` bounds every request: without it a Nova that accepts the
        connection and never answers blocks its caller (start-up, the tick) forever.
        """
        with _wrapped():
            return NovaCompute(openstack.connect(cloud=cloud, api_timeout=timeout_s, **overrides))

    def list_hypervisors(self) -> list[HypervisorInfo]:
        zones = _call(self._host_zones)
        return [_hypervisor(raw, zones) for raw in self._hypervisor_pages()]

    def list_servers(self) -> list[ServerInfo]:
        return _call(
            lambda: [
                _server(s) for s in self._conn.compute.servers(details=True, all_projects=True)
            ]
        )

    def list_server_groups(self) -> list[ServerGroup]:
        # Nova pages server groups by offset and returns no links; the SDK therefore
        # stops after the first page, and every group past it would look empty.
        groups: dict[str, ServerGroup] = {}
        offset = 0
        while page := self._server_group_page(offset):
            fresh = [g for g in map(_group, page) if g.id not in groups]
            if not fresh:
                raise ComputeUnavailable(f"Nova repeated server groups at offset {offset}")
            groups.update((g.id, g) for g in fresh)
            offset += len(page)
        return list(groups.values())

    def get_server(self, uuid: str) -> ServerInfo:
        return _server(_call(lambda: self._conn.compute.get_server(uuid)))

    def live_migrate(self, uuid: str, target_host: str) -> None:
        _call(
            lambda: self._conn.compute.live_migrate_server(
                uuid, host=target_host, block_migration="auto"
            )
        )

    def list_migrations(self, uuid: str) -> list[MigrationInfo]:
        progress = {
            m.id: m for m in _call(lambda: list(self._conn.compute.server_migrations(uuid)))
        }
        found = _call(lambda: list(self._conn.compute.migrations(instance_uuid=uuid)))
        infos = [_migration(m, progress.get(m.id), uuid) for m in found]
        return sorted(infos, key=lambda m: int(m.id), reverse=True)

    def abort_migration(self, uuid: str, migration_id: str) -> None:
        _call(
            lambda: self._conn.compute.abort_server_migration(
                migration_id, uuid, ignore_missing=False
            )
        )

    def _hypervisor_pages(self) -> Iterator[Mapping[str, Any]]:
        # Not `hypervisors_links`: Nova links only a page as long as its limit, and
        # drops a node whose service is gone from a page after cutting it, so a short
        # page may still have more after it. Only an empty page is the end.
        query: dict[str, object] = {"limit": _PAGE_LIMIT}
        path = "/os-hypervisors/detail"
        while page := self._get(path, "hypervisors", _HYPERVISOR_MICROVERSION, query):
            yield from page
            marker = str(page[-1]["id"])
            if marker == query.get("marker"):
                raise ComputeUnavailable(f"Nova repeated hypervisors after marker {marker}")
            query["marker"] = marker

    def _server_group_page(self, offset: int) -> list[Mapping[str, Any]]:
        query = {"all_projects": "True", "limit": _PAGE_LIMIT, "offset": offset}
        return self._get("/os-server-groups", "server_groups", _SERVER_GROUP_MICROVERSION, query)

    def _get(
        self, path: str, key: str, microversion: str, query: Mapping[str, object]
    ) -> list[Mapping[str, Any]]:
        url = f"{path}?{urlencode(query)}"
        response = _call(lambda: self._conn.compute.get(url, microversion=microversion))
        _raise_for_status(response)
        items: list[Mapping[str, Any]] = response.json()[key]
        return items

    def _host_zones(self) -> dict[str, str]:
        zones: dict[str, str] = {}
        for agg in self._conn.compute.aggregates():
            for host in agg.hosts or ():
                if agg.availability_zone:
                    zones[host] = agg.availability_zone
        return zones


def _raise_for_status(response: Any) -> None:
    if response.status_code >= 400:
        exc = sdk_exceptions.HttpException(
            message=response.text[:200], response=response, http_status=response.status_code
        )
        raise _error_for(exc)


def _hypervisor(raw: Mapping[str, Any], zones: Mapping[str, str]) -> HypervisorInfo:
    host = str(raw.get("service", {}).get("host") or raw["hypervisor_hostname"])
    return HypervisorInfo(
        name=host,
        az=zones.get(host, _DEFAULT_AZ),
        vcpus=int(raw.get("vcpus") or 0),
        memory_mib=int(raw.get("memory_mb") or 0),
        enabled=raw.get("status") == "enabled",
        up=raw.get("state") == "up",
    )


def _server(s: Any) -> ServerInfo:
    flavor = s.flavor
    return ServerInfo(
        uuid=s.id,
        name=s.name or "",
        host=s.compute_host or "",
        az=s.availability_zone or "",
        status=s.status or "",
        task_state=s.task_state,
        vcpus=int(flavor.vcpus or 0) if flavor else 0,
        ram_mib=int(flavor.ram or 0) if flavor else 0,
        disk_gib=float(flavor.disk or 0) if flavor else 0.0,
        metadata={str(k): str(v) for k, v in (s.metadata or {}).items()},
        # Interned: 400,000 servers share a few hundred project ids.
        project_id=sys.intern(str(s.project_id or "")),
        addresses=_addresses(s.addresses),
    )


def _addresses(by_network: Any) -> tuple[str, ...]:
    """Every address of every network (`{network: [{addr, version, OS-EXT-IPS:type}]}`),
    fixed and floating alike: an agent reached through a floating IP still advertises
    one of them. Canonical text, so a comparison is one of equal strings; an entry that
    is no IP address is left out (it could match nothing an agent advertises)."""
    found: dict[str, None] = {}  # ordered and without repeats
    for entries in (by_network or {}).values():
        for entry in entries or ():
            try:
                found[str(ipaddress.ip_address(str(entry.get("addr", ""))))] = None
            except (AttributeError, ValueError):
                continue
    return tuple(found)


def _group(raw: Mapping[str, Any]) -> ServerGroup:
    return ServerGroup(
        id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        policy=GroupPolicy(raw.get("policy") or "anti-affinity"),
        members=frozenset(str(m) for m in raw.get("members") or ()),
    )


def _migration(m: Any, progress: Any, uuid: str) -> MigrationInfo:
    return MigrationInfo(
        id=str(m.id),
        server_uuid=str(m.server_id or uuid),
        status=str(m.status or ""),
        source=str(m.source_compute or ""),
        dest=str(m.dest_compute or ""),
        memory_total_bytes=int(getattr(progress, "memory_total_bytes", 0) or 0),
        memory_processed_bytes=int(getattr(progress, "memory_processed_bytes", 0) or 0),
        memory_remaining_bytes=int(getattr(progress, "memory_remaining_bytes", 0) or 0),
        disk_total_bytes=int(getattr(progress, "disk_total_bytes", 0) or 0),
        disk_processed_bytes=int(getattr(progress, "disk_processed_bytes", 0) or 0),
    )
