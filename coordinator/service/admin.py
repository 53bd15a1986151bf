"""The Admin gRPC service (what coordctl talks to).

Reads come from a fresh snapshot and the journal; `Migrate` goes through the same
policy filters and caps as automatic moves (minus the cooldown) and the same
workflow. With `service.admin_token` set, every call needs the bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from coordinator import rpc
from coordinator.api.v1 import admin_pb2, admin_pb2_grpc
from coordinator.journal import PauseState, State
from coordinator.model import ClusterSnapshot, Skipped, Vm, mean_steal
from coordinator.policy import explain, is_contended, plan
from coordinator.policy.detect import is_fresh
from coordinator.service.agents import VERSION
from coordinator.service.core import Coordinator

if TYPE_CHECKING:
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AdminService(admin_pb2_grpc.AdminServicer):  # type: ignore[misc]  # generated base is untyped
    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    async def _auth(self, context: Context) -> None:
        token = self._c.config.service.admin_token
        if not token:
            return
        metadata = dict(context.invocation_metadata() or ())
        given = str(metadata.get("authorization", ""))
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad or missing bearer token")

    async def Status(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.StatusResponse:
        await self._auth(context)
        snap, cfg = self._c.snapshot(), self._c.config
        fresh = [h for h in snap.hosts.values() if is_fresh(h.last_report_at, snap.now, cfg.policy)]
        open_ = self._c.journal.open_migrations()
        # Admitted and journaled, but not yet capped and detaching.
        queued = sum(1 for r in open_ if r.state is State.PLANNED)
        detached = [
            snap.now - r.detached_at
            for r in open_
            if r.detached_at and r.state is not State.PLANNED
        ]
        pause = self._c.pause
        return admin_pb2.StatusResponse(
            hosts_total=len(snap.hosts),
            hosts_up=sum(1 for h in snap.hosts.values() if h.up and h.enabled),
            hosts_stale=len(snap.hosts) - len(fresh),
            vms_total=len(snap.vms),
            vms_contended=sum(1 for v in snap.vms.values() if is_contended(v, cfg.policy)),
            migrations_running=len(snap.in_flight) - queued,
            migrations_queued=queued,
            paused=pause.paused,
            paused_reason=pause.reason,
            paused_by=pause.who,
            paused_unix_ns=int(pause.at * 1e9),
            migrations_detached_overdue=sum(1 for d in detached if d > cfg.workflow.max_detached_s),
            detached_seconds_max=max(detached, default=0.0),
            migrations_retrying=sum(1 for r in open_ if r.retry_at > snap.now),
            vms_parked=sum(1 for v in snap.vms.values() if v.quarantined_until > snap.now),
            leader=self._c.leadership.is_leader(),
            leader_identity=getattr(self._c.leadership, "identity", ""),
            cluster_steal=mean_steal(snap.vms.values()),
            bandwidth_in_use_mib_s=snap.bandwidth_in_use,
            bandwidth_budget_mib_s=cfg.limits.bandwidth_budget_mib_s,
            snapshot_unix_ns=int(snap.now * 1e9),
            version=VERSION,
        )

    async def ListHosts(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListHostsResponse:
        await self._auth(context)
        snap = self._c.snapshot()
        hosts = [h for h in snap.hosts.values() if request.availability_zone in ("", h.az)]
        vms_on: dict[str, list[Vm]] = {}
        for vm in snap.vms.values():  # once, not once per host: 10,000 hosts × 400,000 VMs
            vms_on.setdefault(vm.host, []).append(vm)
        views = [
            rpc.host_view(h, vms_on.get(h.name, []), snap.now, self._c.config.policy)
            for h in sorted(hosts, key=lambda h: h.name)
        ]
        return admin_pb2.ListHostsResponse(hosts=views)

    async def ListVms(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListVmsResponse:
        await self._auth(context)
        snap = self._c.snapshot()
        vms = [v for v in snap.vms.values() if _matches(v, request, snap)]
        keys = {
            "load": lambda v: -v.metrics.load,
            "name": lambda v: v.name,
        }
        vms.sort(key=keys.get(request.sort_by, lambda v: -v.metrics.steal))
        if request.limit:
            vms = vms[: request.limit]
        views = [rpc.vm_view(v, snap, self._c.config.policy) for v in vms]
        return admin_pb2.ListVmsResponse(vms=views)

    async def ListMigrations(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ListMigrationsResponse:
        await self._auth(context)
        records = (
            self._c.journal.open_migrations()
            if request.running_only
            else self._c.journal.history(limit=request.limit)
        )
        return admin_pb2.ListMigrationsResponse(
            migrations=[rpc.migration_view(r, self._c.clock.now()) for r in records]
        )

    async def PreviewPlan(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PlanResponse:
        await self._auth(context)
        return rpc.plan_response(plan(self._c.snapshot(), self._c.config), self._c.pause.paused)

    async def Explain(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.ExplainResponse:
        await self._auth(context)
        snap = self._c.snapshot()
        vm = await self._find(snap, request.vm, context)
        explanation = explain(snap, self._c.config, vm.uuid)
        history = self._c.journal.history(limit=20, vm_uuid=vm.uuid)
        return rpc.explain_response(vm, vm.uuid, explanation, history)

    async def Migrate(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.MigrateResponse:
        await self._auth(context)
        vm = await self._find(self._c.snapshot(), request.vm, context)
        outcome = await self._c.migrate_now(vm.uuid, request.target_host or None, request.force)
        if isinstance(outcome, Skipped):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, outcome.reason)
            raise AssertionError("unreachable")  # abort raises
        return admin_pb2.MigrateResponse(
            migration_id=outcome.id,
            target=outcome.target,
            message=f"migration {outcome.id} started",
        )

    async def Pause(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PauseResponse:
        await self._auth(context)
        who = request.who or context.peer()
        state = PauseState(True, request.reason or "paused by operator", who, self._c.clock.now())
        await asyncio.to_thread(self._c.set_pause, state)
        return admin_pb2.PauseResponse(paused=True)

    async def Resume(  # noqa: N802  (gRPC method name)
        self, request: Any, context: Context
    ) -> admin_pb2.PauseResponse:
        await self._auth(context)
        state = PauseState(False, "", context.peer(), self._c.clock.now())
        await asyncio.to_thread(self._c.set_pause, state)
        return admin_pb2.PauseResponse(paused=False)

    async def _find(self, snap: ClusterSnapshot, key: str, context: Context) -> Vm:
        vm = snap.vms.get(key) or next((v for v in snap.vms.values() if v.name == key), None)
        if vm is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no VM {key!r}")
            raise AssertionError("unreachable")  # abort raises
        return vm


def _matches(vm: Vm, request: Any, snap: ClusterSnapshot) -> bool:
    host = snap.hosts.get(vm.host)
    az = host.az if host else ""
    return (
        request.host in ("", vm.host)
        and request.availability_zone in ("", az)
        and request.role in ("", vm.role)
    )
